package client

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// escapeKey escapes an object or KV key for a path, keeping its slashes.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

func stateEnvPath(env string) string { return "/api/v1/environments/" + url.PathEscape(env) }

// CreateAccessKey issues an access key pair to the client's token; the
// answer is the only one that carries the secret.
func (c *Client) CreateAccessKey(ctx context.Context) (*v1.AccessKey, error) {
	var ak v1.AccessKey
	err := c.do(ctx, http.MethodPost, "/api/v1/accesskeys", nil, "application/json", strings.NewReader("{}"), &ak)
	return &ak, err
}

// AccessKeys lists the client's token's keys (all keys for a superuser).
func (c *Client) AccessKeys(ctx context.Context) ([]v1.AccessKey, error) {
	raw, err := c.list(ctx, "/api/v1/accesskeys", nil)
	if err != nil {
		return nil, err
	}
	out := make([]v1.AccessKey, 0, len(raw))
	for _, r := range raw {
		var ak v1.AccessKey
		if err := json.Unmarshal(r, &ak); err != nil {
			return nil, err
		}
		out = append(out, ak)
	}
	return out, nil
}

// DeleteAccessKey revokes the key id.
func (c *Client) DeleteAccessKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/accesskeys/"+url.PathEscape(id), nil, "", nil, nil)
}

// StateUsage is what env's object and key-value stores hold.
func (c *Client) StateUsage(ctx context.Context, env string) (v1.StateUsage, error) {
	var u v1.StateUsage
	err := c.do(ctx, http.MethodGet, stateEnvPath(env)+"/state", nil, "", nil, &u)
	return u, err
}

// Buckets lists env's buckets.
func (c *Client) Buckets(ctx context.Context, env string) ([]v1.Bucket, error) {
	var out []v1.Bucket
	err := c.do(ctx, http.MethodGet, stateEnvPath(env)+"/buckets", nil, "", nil, &out)
	return out, err
}

// CreateBucket makes a bucket in env.
func (c *Client) CreateBucket(ctx context.Context, env, bucket string) error {
	return c.do(ctx, http.MethodPut, stateEnvPath(env)+"/buckets/"+url.PathEscape(bucket), nil, "", nil, nil)
}

// DeleteBucket removes a bucket; force removes its objects first.
func (c *Client) DeleteBucket(ctx context.Context, env, bucket string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, stateEnvPath(env)+"/buckets/"+url.PathEscape(bucket), q, "", nil, nil)
}

// ObjectListOptions select a page of objects.
type ObjectListOptions struct {
	Prefix, Delimiter, After string
	Limit                    int
}

// Objects lists a page of a bucket's objects.
func (c *Client) Objects(ctx context.Context, env, bucket string, o ObjectListOptions) (v1.ObjectList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"prefix": o.Prefix, "delimiter": o.Delimiter, "after": o.After} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out v1.ObjectList
	err := c.do(ctx, http.MethodGet, stateEnvPath(env)+"/buckets/"+url.PathEscape(bucket)+"/objects", q, "", nil, &out)
	return out, err
}

func stateObjectPath(env, bucket, key string) string {
	return stateEnvPath(env) + "/buckets/" + url.PathEscape(bucket) + "/objects/" + escapeKey(key)
}

// PutObject writes an object from body (size -1 when unknown).
func (c *Client) PutObject(ctx context.Context, env, bucket, key string, body io.Reader, size int64, contentType string) (v1.ObjectInfo, error) {
	var out v1.ObjectInfo
	if size >= 0 {
		body = &sizedReader{body, size}
	}
	err := c.do(ctx, http.MethodPut, stateObjectPath(env, bucket, key), nil, contentType, body, &out)
	return out, err
}

// sizedReader lets net/http send a Content-Length for a reader it does not
// know the size of.
type sizedReader struct {
	io.Reader
	n int64
}

func (s *sizedReader) Len() int { return int(s.n) }

// GetObject opens an object; the caller closes the body.
func (c *Client) GetObject(ctx context.Context, env, bucket, key string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, stateObjectPath(env, bucket, key), nil, "", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// DeleteObject removes an object.
func (c *Client) DeleteObject(ctx context.Context, env, bucket, key string) error {
	return c.do(ctx, http.MethodDelete, stateObjectPath(env, bucket, key), nil, "", nil, nil)
}

// KVEntry is a key of the key-value store.
type KVEntry struct {
	Key      string     `json:"key"`
	Value    []byte     `json:"value,omitempty"`
	Revision uint64     `json:"revision"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
	Op       string     `json:"op,omitempty"`
}

func stateKVPath(env, key string) string { return stateEnvPath(env) + "/kv/" + escapeKey(key) }

// KVGet reads a key.
func (c *Client) KVGet(ctx context.Context, env, key string) (KVEntry, error) {
	resp, err := c.send(ctx, http.MethodGet, stateKVPath(env, key), nil, "", nil)
	if err != nil {
		return KVEntry{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return KVEntry{}, err
	}
	e := KVEntry{Key: key, Value: b}
	e.Revision, _ = strconv.ParseUint(resp.Header.Get("X-Berth-Revision"), 10, 64)
	if t, err := time.Parse(time.RFC3339, resp.Header.Get("X-Berth-Expires")); err == nil {
		e.Expires = &t
	}
	return e, nil
}

// KVPutOptions make a put conditional or temporary.
type KVPutOptions struct {
	// IfRevision, when set, must be the key's revision (0: the key must
	// not exist).
	IfRevision *uint64
	TTL        time.Duration
}

// KVPut sets a key and returns its new revision.
func (c *Client) KVPut(ctx context.Context, env, key string, value []byte, o KVPutOptions) (uint64, error) {
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	setRevision(h, o.IfRevision)
	if o.TTL > 0 {
		h.Set("X-Berth-Ttl", o.TTL.String())
	}
	resp, err := c.request(ctx, http.MethodPut, stateKVPath(env, key), nil, h, strings.NewReader(string(value)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, c.decodeError(resp)
	}
	var out struct{ Revision uint64 }
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Revision, nil
}

func setRevision(h http.Header, rev *uint64) {
	if rev == nil {
		return
	}
	if *rev == 0 {
		h.Set("If-None-Match", "*")
	} else {
		h.Set("If-Match", strconv.FormatUint(*rev, 10))
	}
}

// KVDelete removes a key; ifRevision, when set, must be its revision.
func (c *Client) KVDelete(ctx context.Context, env, key string, ifRevision *uint64) error {
	h := http.Header{}
	setRevision(h, ifRevision)
	resp, err := c.request(ctx, http.MethodDelete, stateKVPath(env, key), nil, h, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return c.decodeError(resp)
	}
	return nil
}

// KVList lists the keys under prefix (with values when values is true).
func (c *Client) KVList(ctx context.Context, env, prefix string, values bool) ([]KVEntry, error) {
	q := url.Values{"prefix": {prefix}}
	if values {
		q.Set("values", "true")
	}
	var out struct{ Items []KVEntry }
	err := c.do(ctx, http.MethodGet, stateEnvPath(env)+"/kv", q, "", nil, &out)
	return out.Items, err
}

// KVWatch calls fn with each change under prefix until ctx ends.
func (c *Client) KVWatch(ctx context.Context, env, prefix string, fn func(KVEntry)) error {
	resp, err := c.send(ctx, http.MethodGet, stateEnvPath(env)+"/kv", url.Values{"prefix": {prefix}, "watch": {"true"}}, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e KVEntry
		if err := json.Unmarshal([]byte(line), &e); err == nil {
			fn(e)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
