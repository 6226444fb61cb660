package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// handlerTransport is an http.RoundTripper that answers with an
// http.Handler in this process: the dashboard's client/ calls reach the
// API's own handler, authentication and authorization included, as a CLI's
// do over TCP, without a connection to itself. Bodies stream (a followed
// log, a watch): the handler writes into a pipe the caller reads, and
// closing the response body cancels the handler's request.
type handlerTransport struct {
	h http.Handler
}

// remoteAddrKey carries the browser's address to the API request, so the
// API's log names who asked, and nothing on loopback is taken for the
// server itself.
type remoteAddrKey struct{}

func withRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	in := req.Clone(ctx)
	in.RequestURI = in.URL.RequestURI()
	in.RemoteAddr, _ = ctx.Value(remoteAddrKey{}).(string)
	if in.RemoteAddr == "" {
		in.RemoteAddr = "dashboard:0"
	}
	if in.Body == nil {
		in.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	rw := &pipeResponse{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			if v := recover(); v != nil {
				// The API recovers its own panics; this is the pipe's
				// http.ErrAbortHandler: the answer is cut short.
				pw.CloseWithError(fmt.Errorf("the API handler aborted: %v", v))
			} else {
				pw.Close()
			}
			rw.commit(http.StatusOK)
		}()
		t.h.ServeHTTP(rw, in)
	}()
	select {
	case <-rw.ready:
	case <-ctx.Done():
		cancel()
		pr.Close()
		return nil, ctx.Err()
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", rw.status, http.StatusText(rw.status)),
		StatusCode: rw.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        rw.sent,
		Body:          &cancelBody{ReadCloser: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}, nil
}

// cancelBody ends the handler's request when the caller is done reading.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}

// pipeResponse is the http.ResponseWriter the handler writes to.
type pipeResponse struct {
	header http.Header
	pw     *io.PipeWriter

	once   sync.Once
	ready  chan struct{}
	status int
	sent   http.Header
}

func (p *pipeResponse) Header() http.Header { return p.header }

// commit fixes the status and headers the caller sees, once.
func (p *pipeResponse) commit(status int) {
	p.once.Do(func() {
		p.status, p.sent = status, p.header.Clone()
		close(p.ready)
	})
}

func (p *pipeResponse) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		return // informational answers are not passed on
	}
	p.commit(status)
}

func (p *pipeResponse) Write(b []byte) (int, error) {
	p.commit(http.StatusOK)
	return p.pw.Write(b)
}

// Flush: every write already reaches the reader (the pipe holds nothing).
func (p *pipeResponse) Flush() { p.commit(http.StatusOK) }
