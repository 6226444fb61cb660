package connlimit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Timeouts bound how slowly a client may send.
type Timeouts struct {
	// ReadHeader is the time a request's headers have to arrive.
	ReadHeader time.Duration
	// Idle is how long a keep-alive connection waits for the next request.
	Idle time.Duration
	// BodyGrace is the time a body has before MinBodyRate applies.
	BodyGrace time.Duration
	// MinBodyRate is the average a body must keep up, in bytes per second
	// of waiting for the client.
	MinBodyRate int
	// BodyStall is the longest a single body read may wait.
	BodyStall time.Duration
}

// DefaultTimeouts: a body must average 1 KiB/s after 10 s (a 10 MiB body
// may take up to ~2.8 hours on that account; BodyStall cuts any one pause
// over 30 s).
var DefaultTimeouts = Timeouts{
	ReadHeader:  10 * time.Second,
	Idle:        60 * time.Second,
	BodyGrace:   10 * time.Second,
	MinBodyRate: 1024,
	BodyStall:   30 * time.Second,
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	if t.ReadHeader <= 0 {
		t.ReadHeader = d.ReadHeader
	}
	if t.Idle <= 0 {
		t.Idle = d.Idle
	}
	if t.BodyGrace <= 0 {
		t.BodyGrace = d.BodyGrace
	}
	if t.MinBodyRate <= 0 {
		t.MinBodyRate = d.MinBodyRate
	}
	if t.BodyStall <= 0 {
		t.BodyStall = d.BodyStall
	}
	return t
}

// ErrBodyTooSlow is what a body read returns when the client sends slower
// than the Timeouts allow. It wraps os.ErrDeadlineExceeded.
var ErrBodyTooSlow = fmt.Errorf("request body arrives too slowly: %w", os.ErrDeadlineExceeded)

// NewServer returns an http.Server for h with t's bounds: header and idle
// timeouts, and every request body held to the minimum rate. It sets no
// ReadTimeout or WriteTimeout, which would cut long streams; a Listener
// bounds write stalls.
func NewServer(h http.Handler, t Timeouts) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           Handler(h, t),
		ReadHeaderTimeout: t.ReadHeader,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    1 << 20,
	}
}

// Handler holds every request body h reads to t's minimum rate, except a
// gRPC call's over HTTP/2: a stream whose client may rightly send nothing
// for minutes (a bidirectional stream waiting on the server), as a
// WebSocket may. Its connection stays bounded by the listener's caps and
// HTTP/2's own flow control and stream limits.
func Handler(h http.Handler, t Timeouts) http.Handler {
	t = t.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || grpcStream(r) {
			h.ServeHTTP(w, r)
			return
		}
		b := &body{ReadCloser: r.Body, rc: http.NewResponseController(w), t: t}
		r.Body = b
		h.ServeHTTP(w, r)
		switch {
		case b.failed != nil:
			// Too slow: nothing more is read from this client, and
			// net/http closes the connection.
			_ = b.rc.SetReadDeadline(time.Now())
		case !b.eof:
			// net/http reads what is left of a small body to reuse the
			// connection, with no deadline of its own: the body keeps
			// its allowance, no more.
			_ = b.rc.SetReadDeadline(time.Now().Add(max(0, min(b.allowance(), t.BodyStall))))
		}
	})
}

// body enforces the minimum rate on one request body.
type body struct {
	io.ReadCloser
	rc *http.ResponseController
	t  Timeouts

	n      int64         // bytes read so far
	waited time.Duration // time spent inside Read: the client's share
	eof    bool
	failed error
}

func (b *body) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	if b.eof {
		return 0, io.EOF
	}
	allowed := b.allowance()
	if allowed <= 0 {
		b.failed = ErrBodyTooSlow
		return 0, b.failed
	}
	start := time.Now()
	_ = b.rc.SetReadDeadline(start.Add(min(allowed, b.t.BodyStall)))
	n, err := b.ReadCloser.Read(p)
	b.waited += time.Since(start)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		// net/http now reads in the background to notice the client
		// going away, and a deadline left over would cancel the request
		// when it passed. net/http clears it as it starts that read;
		// clearing here too keeps that true whatever net/http does next.
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.failed = ErrBodyTooSlow
		return n, b.failed
	}
	return n, err
}

// allowance is how much longer the client may take: the grace, plus the
// time its bytes so far are worth at the minimum rate, minus what it took.
func (b *body) allowance() time.Duration {
	return b.t.BodyGrace + time.Duration(float64(b.n)/float64(b.t.MinBodyRate)*float64(time.Second)) - b.waited
}

// grpcStream reports a gRPC call: HTTP/2 with a gRPC content type.
func grpcStream(r *http.Request) bool {
	if r.ProtoMajor != 2 {
		return false
	}
	ct := r.Header["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc")
}
