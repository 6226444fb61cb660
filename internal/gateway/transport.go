package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

var (
	errNoEndpoints     = errors.New("no ready endpoints")
	errUpstreamTimeout = errors.New("upstream timeout")
)

// upstreamError says which endpoints a request was tried on and why each
// failed; its text is the 502/504 body a user reads.
type upstreamError struct {
	attempts []string
	timeout  bool
	all      bool  // every endpoint of the target was tried
	last     error // the last attempt's error, for errors.As
}

func (e *upstreamError) Error() string {
	msg := strings.Join(e.attempts, "; ")
	if e.all && len(e.attempts) > 1 {
		msg = fmt.Sprintf("all %d endpoints failed: %s", len(e.attempts), msg)
	}
	return msg
}

func (e *upstreamError) Unwrap() error { return e.last }

// transport picks an endpoint per attempt and retries connection failures
// on other endpoints of the same target. ReverseProxy sees one RoundTrip.
type transport struct {
	g *Gateway
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, ok := req.Context().Value(callKey{}).(*call)
	if !ok {
		return nil, errors.New("gateway: request without a routing decision")
	}
	return t.g.roundTrip(req.Context(), c, func(e *endpoint, deadline time.Time, attempt int) (*http.Response, bool, error) {
		return t.try(req, c, e, deadline, attempt)
	})
}

// testHookNonePicked runs when a pick found no endpoint: a test frees a
// slot there, as a request finishing at that moment does.
var testHookNonePicked atomic.Pointer[func()]

// attemptFunc sends a request to e, which the caller has acquired, and
// releases e on error. retryable reports that the request may be sent to
// another endpoint.
type attemptFunc func(e *endpoint, deadline time.Time, attempt int) (res *http.Response, retryable bool, err error)

// roundTrip picks an endpoint per attempt and retries connection failures
// on other endpoints of the same target, waiting for a free slot when
// every endpoint is at its concurrency cap.
func (g *Gateway) roundTrip(ctx context.Context, c *call, try attemptFunc) (*http.Response, error) {
	deadline := time.Now().Add(g.cfg.Timeout)
	var tried []*endpoint
	var failed []string
	var lastErr error
	for {
		e, full := c.route.pick(g, tried, c.want)
		if e == nil {
			if h := testHookNonePicked.Load(); h != nil {
				(*h)()
			}
		}
		for e == nil && full {
			// Every endpoint is at its concurrency cap: wait for a slot
			// (or a new endpoint) instead of overloading one.
			free := c.route.stats.waitFree()
			if e, full = c.route.pick(g, tried, c.want); e != nil || !full {
				break
			}
			select {
			case <-free:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Until(deadline)):
				return nil, &upstreamError{attempts: append(failed, fmt.Sprintf("no endpoint had a free slot within %s", g.cfg.Timeout)), timeout: true, last: errUpstreamTimeout}
			}
			if r := g.currentRoute(c.route); r != nil {
				c.route = r
			}
			e, full = c.route.pick(g, tried, c.want)
		}
		if e == nil {
			if len(tried) == 0 {
				return nil, errNoEndpoints
			}
			return nil, &upstreamError{attempts: failed, last: lastErr, all: len(tried) >= len(c.route.endpoints)}
		}
		tried = append(tried, e)
		res, retryable, err := try(e, deadline, len(tried))
		if err == nil {
			return res, nil
		}
		lastErr = err
		if errors.Is(err, errUpstreamTimeout) {
			failed = append(failed, fmt.Sprintf("endpoint %s (%s) sent no response headers within %s",
				e.id, e.address, g.cfg.Timeout))
			return nil, &upstreamError{attempts: failed, timeout: true, last: err}
		}
		failed = append(failed, fmt.Sprintf("endpoint %s (%s) failed: %v", e.id, e.address, err))
		if !retryable || !c.replayable || len(tried) > g.cfg.MaxRetries || ctx.Err() != nil {
			return nil, &upstreamError{attempts: failed, last: err, all: len(tried) >= len(c.route.endpoints)}
		}
		g.log.Debug("retrying on another endpoint", "environment", c.route.env, "name", c.route.name,
			"endpoint", e.id, "err", err)
	}
}

// try sends req to e, which the caller has acquired; e is released when the
// response body is closed, or at once on error. retryable reports that the
// request certainly never reached the endpoint.
func (t *transport) try(req *http.Request, c *call, e *endpoint, deadline time.Time, attempt int) (res *http.Response, retryable bool, err error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	// A timer rather than a context deadline: only the wait for headers is
	// bounded, a streaming body may take as long as it needs.
	timer := time.AfterFunc(time.Until(deadline), func() { cancel(errUpstreamTimeout) })

	out := req.WithContext(ctx)
	u := *req.URL
	u.Host = e.address
	out.URL = &u
	if c.body != nil {
		out.ContentLength = int64(len(c.body))
		if len(c.body) == 0 {
			out.Body = nil
		} else {
			body := c.body
			out.Body = io.NopCloser(bytes.NewReader(body))
			// Lets http.Transport itself replay on a stale pooled connection.
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
	}

	var span trace.Span
	if t.g.tracer != nil {
		span = t.g.startUpstreamSpan(req.Context(), out.Header, c, e, attempt)
	}

	var rt http.RoundTripper = t.g.upstream
	switch {
	case e.transport != nil:
		rt = e.transport
	case c.h2:
		rt = t.g.upstreamH2
	}
	res, err = rt.RoundTrip(out)
	fired := !timer.Stop()
	if err == nil && fired {
		res.Body.Close()
		err = errUpstreamTimeout
	}
	if err != nil {
		if context.Cause(ctx) == errUpstreamTimeout {
			err = errUpstreamTimeout
		}
		cancel(nil)
		if req.Context().Err() == nil {
			e.failed(t.g)
		}
		e.release(t.g)
		if span != nil {
			endUpstreamSpan(span, 0, err)
		}
		return nil, isDialError(err) || (!wrote.Load() && req.Context().Err() == nil && err != errUpstreamTimeout), err
	}
	e.succeeded()
	c.revision = e.revision.Load()
	status := res.StatusCode
	res.Body = wrapBody(res.Body, func() {
		cancel(nil)
		e.release(t.g)
		if span != nil {
			endUpstreamSpan(span, status, nil)
		}
	})
	return res, false, nil
}

// isDialError reports a failure to connect: nothing was sent, so the
// request is safe to send elsewhere.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// wrapBody calls done once when the body is closed. A protocol switch (101)
// body is also the upgraded connection's writer, which ReverseProxy needs.
func wrapBody(b io.ReadCloser, done func()) io.ReadCloser {
	rb := &releasingBody{ReadCloser: b, done: done}
	if w, ok := b.(io.Writer); ok {
		return &releasingRWBody{releasingBody: rb, w: w}
	}
	return rb
}

type releasingBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

type releasingRWBody struct {
	*releasingBody
	w io.Writer
}

func (b *releasingRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }
