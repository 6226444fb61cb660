package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// fastPath reports whether r is proxied by the gateway's own HTTP/1.1
// client (serveH1). Protocol switches (WebSockets) and gRPC, which needs
// HTTP/2 to the workload, go through httputil.ReverseProxy.
func fastPath(r *http.Request) bool {
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	return !isGRPC(r)
}

// isGRPC reports a gRPC call: HTTP/2 with a gRPC content type. It is
// forwarded over HTTP/2 (h2c) to the workload, as gRPC needs trailers and
// full-duplex streams.
func isGRPC(r *http.Request) bool {
	if r.ProtoMajor != 2 {
		return false
	}
	ct := r.Header["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc")
}

// idempotent reports a request that may be sent twice (RFC 9110 9.2.2), or
// that its client marked so.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// outURI is the request target sent upstream: what the client sent, less
// the route's prefix when the target strips it.
func outURI(rt *route, r *http.Request) string {
	if rt.strip && rt.path != "" && rt.path != "/" && matchPath(rt.path, r.URL.Path) {
		u := *r.URL
		u.Scheme, u.Host = "", ""
		u.Path = strings.TrimPrefix(r.URL.Path, rt.path)
		if raw := r.URL.RawPath; raw != "" && strings.HasPrefix(raw, rt.path) {
			u.RawPath = strings.TrimPrefix(raw, rt.path)
		} else {
			u.RawPath = ""
		}
		if u.Path == "" {
			u.Path, u.RawPath = "/", ""
		}
		return u.RequestURI()
	}
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// forwardHeaders turns the client's headers into the upstream's, in place:
// the handler owns r and nothing reads its headers after this.
func forwardHeaders(r *http.Request, h http.Header) {
	removeHopHeaders(h)
	delete(h, "Content-Length")
	// The client gets its 100 Continue from the gateway, when the body
	// is read to be forwarded.
	delete(h, "Expect")
	// One backing array for the values set here: fewer allocations.
	vals := make([]string, 2)
	// Append to the client's chain, as nginx's $proxy_add_x_forwarded_for.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		vals[0] = ip
		h["X-Forwarded-For"] = vals[0:1:1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	vals[1] = r.Host
	h["X-Forwarded-Host"] = vals[1:2:2]
	if r.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	if _, ok := h["User-Agent"]; !ok {
		// Send none rather than a made-up one.
		h["User-Agent"] = nil
	}
	h["Via"] = appendVia(h["Via"], r.ProtoMajor, r.ProtoMinor)
}

// appendVia adds the gateway to a Via header, sharing one read-only slice
// when it is the only entry (the common case).
func appendVia(vs []string, major, minor int) []string {
	if len(vs) == 0 {
		switch {
		case major == 1 && minor == 1:
			return via11
		case major == 2:
			return via2
		}
	}
	return append(vs[:len(vs):len(vs)], via(major, minor))
}

var (
	via11 = []string{"1.1 berth"}
	via2  = []string{"2 berth"}
)

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// serveH1 proxies r over the gateway's own HTTP/1.1 client.
func (g *Gateway) serveH1(w http.ResponseWriter, r *http.Request, c *call) {
	uri := outURI(c.route, r)
	forwardHeaders(r, r.Header)
	res, err := g.roundTrip(c.ctx, c, func(e *endpoint, deadline time.Time, attempt int) (*http.Response, bool, error) {
		return g.tryH1(r, c, e, deadline, attempt, uri)
	})
	if err != nil {
		g.proxyError(w, r, c, err)
		return
	}
	g.copyResponse(w, r, c, res)
}

// tryH1 sends r to e, which the caller has acquired. On success c holds
// the connection, e and the attempt's span until copyResponse is done
// with them; on error e is released here. retryable reports that the
// request may be sent to another endpoint.
func (g *Gateway) tryH1(r *http.Request, c *call, e *endpoint, deadline time.Time, attempt int, uri string) (*http.Response, bool, error) {
	var span trace.Span
	if g.tracer != nil {
		span = g.startUpstreamSpan(c.ctx, r.Header, c, e, attempt)
	}
	fail := func(err error, retryable bool) (*http.Response, bool, error) {
		e.release(g)
		if span != nil {
			endUpstreamSpan(span, 0, err)
		}
		return nil, retryable, err
	}
	ctx := c.ctx
	// A request that may be sent twice can go on a pooled connection
	// without a look at it first: if the endpoint closed it, nothing was
	// answered and the request goes again on a fresh one.
	resend := c.replayable && idempotent(r)
	for fresh := !c.replayable; ; fresh = true {
		var uc *upConn
		if !fresh {
			uc = e.pool.get(g.idleTimeout, resend)
		}
		if uc == nil {
			var err error
			if uc, err = g.dialH1(e, deadline); err != nil {
				e.failed(g)
				return fail(err, ctx.Err() == nil)
			}
		}
		uc.read = 0
		stop := context.AfterFunc(ctx, uc.abort)
		// A body is written within the wait for the answer's head, as
		// http.Transport did: an endpoint that stops reading it cannot
		// hold the request for ever. (A head alone fits the socket's
		// buffer.)
		withBody := c.body != nil || r.ContentLength > 0
		if withBody {
			uc.nc.SetWriteDeadline(deadline)
		}
		err := writeRequest(uc.bw, r, uri, c)
		if withBody && err == nil {
			uc.nc.SetWriteDeadline(time.Time{})
		}
		if err == nil {
			uc.nc.SetReadDeadline(deadline)
			var res *http.Response
			if res, err = readResponse(uc, r); err == nil {
				if res.ContentLength < 0 || int64(uc.br.Buffered()) < res.ContentLength {
					// The body is still to come: it may take as long as
					// it takes. (One already buffered whole needs no
					// read, and the next request sets its own deadline.)
					uc.nc.SetReadDeadline(time.Time{})
				}
				e.succeeded()
				c.conn, c.stop, c.ep, c.upSpn, c.revision = uc, stop, e, span, e.revision.Load()
				return res, false, nil
			}
		}
		stop()
		uc.close()
		switch {
		case ctx.Err() != nil:
			return fail(ctx.Err(), false)
		case errors.As(err, new(*bodyReadError)):
			return fail(err, false)
		case errors.Is(err, os.ErrDeadlineExceeded):
			e.failed(g)
			return fail(errUpstreamTimeout, false)
		case uc.reuse && uc.read == 0 && resend:
			// The endpoint closed the pooled connection as it was
			// taken: not its answer. A fresh connection decides.
			continue
		}
		e.failed(g)
		return fail(err, uc.read == 0 && c.replayable && idempotent(r))
	}
}

// readResponse reads the endpoint's answer, forwarding 103 Early Hints
// and skipping other interim answers.
func readResponse(uc *upConn, r *http.Request) (*http.Response, error) {
	for {
		if res, ok, err := uc.readPlainResponse(r); ok || err != nil {
			return res, err
		}
		res, err := http.ReadResponse(uc.br, r)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			if res.StatusCode == http.StatusSwitchingProtocols {
				return nil, errors.New("endpoint switched protocols unasked")
			}
			return res, nil
		}
	}
}

// abort unblocks the connection's reads and writes: the client went away.
func (uc *upConn) abort() { uc.nc.SetDeadline(aLongTimeAgo) }

var aLongTimeAgo = time.Unix(1, 0)

// copyResponse sends the endpoint's answer to the client and hands the
// connection back to the pool when the body was read whole.
func (g *Gateway) copyResponse(w http.ResponseWriter, r *http.Request, c *call, res *http.Response) {
	uc, e := c.conn, c.ep
	reusable := false
	defer func() {
		stopped := c.stop()
		if reusable && stopped && !res.Close && uc.br.Buffered() == 0 {
			e.pool.put(uc, g.cfg.MaxIdleConnsPerHost, g.idleTimeout)
		} else {
			uc.close()
		}
		e.release(g)
		if c.upSpn != nil {
			endUpstreamSpan(c.upSpn, res.StatusCode, nil)
		}
	}()
	c.status = res.StatusCode
	removeHopHeaders(res.Header)
	h := w.Header()
	for k, vs := range res.Header {
		h[k] = vs
	}
	h["Via"] = appendVia(h["Via"], res.ProtoMajor, res.ProtoMinor)
	if c.stick {
		h["Set-Cookie"] = append(h["Set-Cookie"], c.cookie())
	}
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	// A body of unknown length is a stream (server-sent events, a long
	// poll): each piece goes to the client as it arrives.
	flush := res.ContentLength < 0
	if ct := res.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
		flush = true
	}
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	bp := copyBuffers.Get().(*[]byte)
	buf := *bp
	var rerr, werr error
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr != nil {
				break
			}
			if flush {
				if werr = rc.Flush(); werr != nil {
					break
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	copyBuffers.Put(bp)
	switch {
	case werr != nil || r.Context().Err() != nil:
		c.status = 499
		return
	case rerr != nil:
		g.log.Warn("upstream broke its answer off", "host", r.Host, "path", r.URL.Path, "endpoint", e.id, "err", rerr)
		// The client sees its response cut, as the endpoint cut it.
		panic(http.ErrAbortHandler)
	}
	for k, vs := range res.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
	reusable = true
}
