package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"unicode/utf8"

	v1 "berth.dev/berth/api/v1"
)

// MaxInvokeResponseBytes bounds the function answer Invoke reads.
const MaxInvokeResponseBytes = 64 << 20

// Invoke calls a function and waits for its answer, waking it from zero if
// need be. A function's own answer, whatever its status, is not an error:
// status, header and body are the function's. err is for the platform's
// refusals (no such function, payload too large, no instance in time).
// contentType "" sends JSON's or text's when body looks like one.
func (c *Client) Invoke(ctx context.Context, env, fn string, body []byte, contentType string) (status int, header http.Header, respBody []byte, err error) {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return c.InvokeWithHeader(ctx, env, fn, body, h)
}

// InvokeWithHeader is Invoke with the request header the function sees
// (the token and hop-by-hop headers are never passed on).
func (c *Client) InvokeWithHeader(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	path, err := objectPath(v1.KindFunction, env, fn)
	if err != nil {
		return 0, nil, nil, err
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", sniffContentType(body))
	}
	resp, err := c.request(ctx, http.MethodPost, path+"/invoke", nil, h, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	// The API's own errors share status codes with what a function may
	// answer; the server marks the function's answers.
	if resp.Header.Get("X-Berth-Origin") != "function" && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		return 0, nil, nil, c.decodeError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxInvokeResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, nil, ctx.Err()
		}
		return 0, nil, nil, v1.Unavailable("read the function's answer: %v", err)
	}
	if len(b) > MaxInvokeResponseBytes {
		return 0, nil, nil, v1.Errorf(v1.ErrTooLarge, "the function's answer is larger than %d bytes", MaxInvokeResponseBytes)
	}
	return resp.StatusCode, resp.Header, b, nil
}

// InvokeAsync queues an invocation and returns its id at once; Invocation
// reports how it went. callbackURL, when not "", receives the result.
func (c *Client) InvokeAsync(ctx context.Context, env, fn string, body []byte, callbackURL string) (id string, err error) {
	return c.InvokeAsyncWithHeader(ctx, env, fn, body, nil, callbackURL)
}

// InvokeAsyncWithHeader is InvokeAsync with the request header the
// function will see.
func (c *Client) InvokeAsyncWithHeader(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	path, err := objectPath(v1.KindFunction, env, fn)
	if err != nil {
		return "", err
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Accept", "application/json")
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", sniffContentType(body))
	}
	if callbackURL != "" {
		h.Set("X-Callback-Url", callbackURL)
	}
	return c.accepted(ctx, path+"/invocations", h, body)
}

// Invocation returns the state of an asynchronous invocation.
func (c *Client) Invocation(ctx context.Context, env, id string) (v1.Invocation, error) {
	if env == "" {
		return v1.Invocation{}, v1.FieldError("metadata.environment", "must not be empty")
	}
	if id == "" {
		return v1.Invocation{}, v1.Invalid("the invocation id must not be empty")
	}
	var inv v1.Invocation
	err := c.do(ctx, http.MethodGet, "/api/v1/environments/"+url.PathEscape(env)+"/invocations/"+url.PathEscape(id), nil, "", nil, &inv)
	return inv, err
}

// Publish sends a message to a topic and returns its id once the queue
// holds it.
func (c *Client) Publish(ctx context.Context, env, topic string, body []byte) (id string, err error) {
	path, err := objectPath(v1.KindTopic, env, topic)
	if err != nil {
		return "", err
	}
	h := http.Header{"Accept": {"application/json"}, "Content-Type": {sniffContentType(body)}}
	return c.accepted(ctx, path+"/messages", h, body)
}

// accepted POSTs body and reads a 202's {"id": "..."}.
func (c *Client) accepted(ctx context.Context, path string, h http.Header, body []byte) (string, error) {
	resp, err := c.request(ctx, http.MethodPost, path, nil, h, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", c.decodeError(resp)
	}
	var a struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.ID == "" {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", v1.Errorf(v1.ErrInternal, "POST %s: the answer has no id (%v)", path, err)
	}
	return a.ID, nil
}

// sniffContentType names what body looks like, so a function reading
// Content-Type sees JSON as JSON when the caller did not say.
func sniffContentType(body []byte) string {
	switch {
	case len(bytes.TrimSpace(body)) > 0 && json.Valid(body):
		return "application/json"
	case utf8.Valid(body):
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}
