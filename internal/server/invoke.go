package server

import (
	"bytes"
	"context"
	"net/http"
	"strings"
)

// gatewayInvoker calls a function through the gateway in-process, so an
// invocation from the API, the queue or a workflow is routed, balanced,
// counted and woken from zero exactly like a request from outside.
type gatewayInvoker struct {
	gateway http.Handler
	domain  string
}

func (g *gatewayInvoker) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	return post(ctx, g.gateway, fn+"."+env+"."+g.domain, "/", body, header)
}

// serviceCaller POSTs to a service's path through the gateway (workflow
// tasks "service:NAME/PATH").
type serviceCaller struct {
	gateway http.Handler
	domain  string
}

func (s *serviceCaller) CallService(ctx context.Context, env, name, path string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return post(ctx, s.gateway, name+"."+env+"."+s.domain, path, body, header)
}

// post sends one request through the gateway in-process.
func post(ctx context.Context, gateway http.Handler, host, path string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Host = host
	req.RemoteAddr = "127.0.0.1:0"
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("Content-Type") == "" && len(body) > 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	rec := &recorder{header: http.Header{}}
	gateway.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.header, rec.body.Bytes(), ctx.Err()
}

// recorder is the smallest http.ResponseWriter that keeps what it is given.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) Flush() {}
