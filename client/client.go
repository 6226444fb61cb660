package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// Client calls one Berth server. It is safe for concurrent use.
type Client struct {
	base    string
	token   string
	gateway string
	http    *http.Client
}

// New returns a client for cfg. Addr may be a URL or host:port.
func New(cfg Config) *Client {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: normalizeAddr(cfg.Addr), token: cfg.Token, gateway: cfg.Gateway, http: hc}
}

// Addr is the base URL the client talks to.
func (c *Client) Addr() string { return c.base }

// Gateway is the gateway host:port from the client config, or "".
func (c *Client) Gateway() string { return c.gateway }

// Plural is the path name of a kind ("Service" → "services"). It accepts
// the plural itself too.
func Plural(kind string) (string, error) {
	switch strings.ToLower(kind) {
	case "environment", "environments":
		return "environments", nil
	case "service", "services":
		return "services", nil
	case "function", "functions":
		return "functions", nil
	case "topic", "topics":
		return "topics", nil
	case "workflow", "workflows":
		return "workflows", nil
	case "revision", "revisions":
		return "revisions", nil
	case "instance", "instances":
		return "instances", nil
	case "event", "events":
		return "events", nil
	}
	return "", v1.Invalid("unknown kind %q", kind)
}

// objectPath is where one object lives: environments are not scoped to an
// environment, everything else is.
func objectPath(kind, env, name string) (string, error) {
	plural, err := Plural(kind)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", v1.FieldError("metadata.name", "must not be empty")
	}
	if plural == "environments" {
		return "/api/v1/environments/" + url.PathEscape(name), nil
	}
	if env == "" {
		return "", v1.FieldError("metadata.environment", "must not be empty")
	}
	return "/api/v1/environments/" + url.PathEscape(env) + "/" + plural + "/" + url.PathEscape(name), nil
}

// ApplyResult values, as the server reports them.
const (
	ResultCreated    = "created"
	ResultConfigured = "configured"
	ResultUnchanged  = "unchanged"
)

type applyResponse struct {
	Result string          `json:"result"`
	Object json.RawMessage `json:"object"`
}

// Apply creates or updates obj (an Environment, Service, Function or
// Topic). The object's metadata.environment says where it goes. Result is one of the
// Result* values; stored is the object as the server keeps it.
func (c *Client) Apply(ctx context.Context, obj v1.Object, dryRun bool) (result string, stored json.RawMessage, err error) {
	meta := obj.GetMetadata()
	path, err := objectPath(obj.GetTypeMeta().Kind, meta.Environment, meta.Name)
	if err != nil {
		return "", nil, err
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s/%s: %w", obj.GetTypeMeta().Kind, meta.Name, err)
	}
	q := url.Values{}
	if dryRun {
		q.Set("dryRun", "1")
	}
	var resp applyResponse
	if err := c.do(ctx, http.MethodPut, path, q, "application/json", bytes.NewReader(body), &resp); err != nil {
		return "", nil, err
	}
	return resp.Result, resp.Object, nil
}

// Get reads one object into into (a *v1.Service, *json.RawMessage, …).
// Environments ignore env.
func (c *Client) Get(ctx context.Context, kind, env, name string, into any) error {
	path, err := objectPath(kind, env, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodGet, path, nil, "", nil, into)
}

// List returns the objects of kind in env, or in every environment when env
// is "". Environments ignore env.
func (c *Client) List(ctx context.Context, kind, env string) ([]json.RawMessage, error) {
	plural, err := Plural(kind)
	if err != nil {
		return nil, err
	}
	var path string
	switch {
	case plural == "environments":
		path = "/api/v1/environments"
	case env == "":
		path = "/api/v1/" + plural
	default:
		path = "/api/v1/environments/" + url.PathEscape(env) + "/" + plural
	}
	return c.list(ctx, path, nil)
}

func (c *Client) list(ctx context.Context, path string, q url.Values) ([]json.RawMessage, error) {
	var l v1.List
	if err := c.do(ctx, http.MethodGet, path, q, "", nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Delete removes one object. Deleting a Service drains and stops its
// instances and removes its revisions.
func (c *Client) Delete(ctx context.Context, kind, env, name string) error {
	path, err := objectPath(kind, env, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, nil, "", nil, nil)
}

// Revisions returns a service's revisions, oldest first.
func (c *Client) Revisions(ctx context.Context, env, service string) ([]v1.Revision, error) {
	return c.RevisionsOf(ctx, v1.KindService, env, service)
}

// RevisionsOf returns the revisions of a workload of kind Service or
// Function, oldest first.
func (c *Client) RevisionsOf(ctx context.Context, kind, env, name string) ([]v1.Revision, error) {
	path, err := workloadPath(kind, env, name)
	if err != nil {
		return nil, err
	}
	items, err := c.list(ctx, path+"/revisions", nil)
	if err != nil {
		return nil, err
	}
	return decodeItems[v1.Revision](items)
}

// Rollback points a service back at an earlier revision: toRevision, or the
// previous one when toRevision is 0. It answers the updated Service.
func (c *Client) Rollback(ctx context.Context, env, service string, toRevision int64) (*v1.Service, error) {
	var svc v1.Service
	if err := c.RollbackOf(ctx, v1.KindService, env, service, toRevision, &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// RollbackOf is Rollback for a workload of kind Service or Function; the
// updated object is decoded into into (nil: discarded).
func (c *Client) RollbackOf(ctx context.Context, kind, env, name string, toRevision int64, into any) error {
	path, err := workloadPath(kind, env, name)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]int64{"toRevision": toRevision})
	return c.do(ctx, http.MethodPost, path+"/rollback", nil, "application/json", bytes.NewReader(body), into)
}

// Canary promotes ("promote") or rolls back ("abort") the canary in
// progress of a service or function; Conflict when there is none.
func (c *Client) Canary(ctx context.Context, kind, env, name, action string) error {
	path, err := workloadPath(kind, env, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path+"/"+action, nil, "application/json", nil, nil)
}

func workloadPath(kind, env, name string) (string, error) {
	plural, err := Plural(kind)
	if err != nil {
		return "", err
	}
	if plural != "services" && plural != "functions" {
		return "", v1.Invalid("%s have no revisions; only services and functions do", plural)
	}
	return objectPath(plural, env, name)
}

// Events returns env's events, oldest first; object ("Service/web")
// narrows them to one object when not empty.
func (c *Client) Events(ctx context.Context, env, object string) ([]v1.Event, error) {
	if env == "" {
		return nil, v1.FieldError("metadata.environment", "must not be empty")
	}
	q := url.Values{}
	if object != "" {
		q.Set("object", object)
	}
	items, err := c.list(ctx, "/api/v1/environments/"+url.PathEscape(env)+"/events", q)
	if err != nil {
		return nil, err
	}
	return decodeItems[v1.Event](items)
}

// LogOptions narrow a logs request. The zero value asks for every kept line
// of every instance, without following.
type LogOptions struct {
	Follow bool
	// Since is an RFC 3339 time or a Go duration ("5m": that long ago).
	Since string
	// Tail, when positive, asks for only the last Tail lines (before
	// following).
	Tail int
	// Instance narrows the logs to one instance; lines are then not
	// prefixed with the instance name.
	Instance   string
	Timestamps bool
	// Until is an RFC 3339 time or a duration ago; lines after it are
	// left out. It cannot be combined with Follow.
	Until string
	// Revision > 0 narrows the logs to the instances of that revision,
	// gone ones included.
	Revision int64
	// Grep is a regular expression (Go syntax) the server keeps lines by.
	Grep string
}

// Logs streams a service's logs as text, one line per log line. With Follow
// the stream stays open until ctx ends or the server closes it; the caller
// closes the reader.
func (c *Client) Logs(ctx context.Context, env, service string, opts LogOptions) (io.ReadCloser, error) {
	return c.WorkloadLogs(ctx, env, v1.KindService, service, opts)
}

// ImportImage loads an OCI image layout tar or docker-save tar into the
// node's image store and answers the images it held.
func (c *Client) ImportImage(ctx context.Context, r io.Reader) ([]v1.Image, error) {
	var images []v1.Image
	if err := c.do(ctx, http.MethodPost, "/api/v1/images/import", nil, "application/x-tar", r, &images); err != nil {
		return nil, err
	}
	return images, nil
}

// ListImages returns the images on the node.
func (c *Client) ListImages(ctx context.Context) ([]v1.Image, error) {
	var images []v1.Image
	if err := c.do(ctx, http.MethodGet, "/api/v1/images", nil, "", nil, &images); err != nil {
		return nil, err
	}
	return images, nil
}

// PullImage pulls ref from its registry onto the node. docs/api.md does
// not fix the answer's shape; the server is expected to answer the pulled
// v1.Image, and a one-element array of them is accepted too.
func (c *Client) PullImage(ctx context.Context, ref string) (v1.Image, error) {
	body, _ := json.Marshal(map[string]string{"ref": ref})
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/api/v1/images/pull", nil, "application/json", bytes.NewReader(body), &raw); err != nil {
		return v1.Image{}, err
	}
	var img v1.Image
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var imgs []v1.Image
		if err := json.Unmarshal(trimmed, &imgs); err != nil {
			return v1.Image{}, v1.Errorf(v1.ErrInternal, "decode pull answer: %v", err)
		}
		if len(imgs) > 0 {
			img = imgs[0]
		}
	} else if len(trimmed) > 0 {
		if err := json.Unmarshal(trimmed, &img); err != nil {
			return v1.Image{}, v1.Errorf(v1.ErrInternal, "decode pull answer: %v", err)
		}
	}
	if img.Name == "" {
		img.Name = ref
	}
	return img, nil
}

// RemoveImage removes ref from the node.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/images/"+url.PathEscape(ref), nil, "", nil, nil)
}

// Health answers nil once the server is serving.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/healthz", nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Ready answers nil once the server serves traffic: its gateway has its
// first routing table (GET /readyz).
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/readyz", nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func decodeItems[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(items))
	for _, raw := range items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, v1.Errorf(v1.ErrInternal, "decode list item: %v", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// do sends a request and decodes a 2xx JSON answer into into (nil: discard).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader, into any) error {
	resp, err := c.send(ctx, method, path, q, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if into == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return v1.Errorf(v1.ErrInternal, "%s %s: decode answer: %v", method, path, err)
	}
	return nil
}

// send performs the request and turns transport failures and non-2xx
// answers into *v1.Error. On success the caller owns resp.Body.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader) (*http.Response, error) {
	h := http.Header{"Accept": {"application/json"}}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	resp, err := c.request(ctx, method, path, q, h, body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.decodeError(resp)
}

// request performs the request with header (and the token) and answers
// whatever came back; only a transport failure is an error.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, v1.Invalid("build request: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// A cancelled or expired ctx is the caller's doing, not the
		// server's absence; keep it recognisable as such.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &v1.Error{
			Kind:    v1.ErrUnavailable,
			Message: fmt.Sprintf("cannot reach the Berth API at %s (%v); is the server running? Start it with `berth server`, or point --addr/BERTH_ADDR at it", c.base, unwrapURLError(err)),
		}
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeError reads the API's {"error": {...}} body. A body that is not one
// (a proxy's page, a server from another product) still yields the kind its
// status code stands for.
func (c *Client) decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st v1.Status
	if err := json.Unmarshal(data, &st); err != nil || st.Error.Kind == "" {
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = resp.Status
		}
		st.Error = v1.ErrorBody{Kind: kindForStatus(resp.StatusCode), Message: msg}
	}
	e := &v1.Error{
		Kind:     st.Error.Kind,
		Message:  st.Error.Message,
		Field:    st.Error.Field,
		File:     st.Error.File,
		Document: st.Error.Document,
	}
	if e.Kind == v1.ErrUnauthorized && c.token == "" {
		e.Message += " (no token found: pass --token, set BERTH_TOKEN, or make the client.json that `berth server` writes readable)"
	}
	return e
}

func kindForStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return v1.ErrInvalid
	case http.StatusUnauthorized:
		return v1.ErrUnauthorized
	case http.StatusForbidden:
		return v1.ErrForbidden
	case http.StatusNotFound:
		return v1.ErrNotFound
	case http.StatusConflict:
		return v1.ErrConflict
	case http.StatusRequestEntityTooLarge:
		return v1.ErrTooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return v1.ErrUnavailable
	}
	return v1.ErrInternal
}
