//go:build linux

package gateway

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/testutil"
)

// startLoopGateway serves g as the berth server does and returns the
// server, to read its loops' counters.
func startLoopGateway(t *testing.T, ts ...Target) (*Gateway, *Server, string) {
	t.Helper()
	if !loopsEnabled() {
		t.Skip("BERTH_GATEWAY_LOOPS=0: the event loops are off")
	}
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g := New(Config{Logger: logger, Timeout: 5 * time.Second})
	g.SetTargets(ts)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(g, connlimit.DefaultTimeouts, logger)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	testutil.WaitFor(t, 5*time.Second, "the event loops", func() bool { return srv.eventLoops() != nil })
	return g, srv, ln.Addr().String()
}

// The plain request is the loops' own; a protocol switch, 100-continue or
// a large body goes to Server's goroutines, with the bytes already read,
// and is answered as before.
func TestLoopsServePlainRequestsAndHandOffTheRest(t *testing.T) {
	up := startUpstream(t, "u", nil)
	_, srv, addr := startLoopGateway(t, target("dev", "api", up))
	lp := srv.eventLoops()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	reused := 0
	for i := range 20 {
		req := mustRequest(t, http.MethodPost, "http://"+addr+"/p?i="+strconv.Itoa(i), strings.NewReader("body"))
		req.Host = "api.dev.berth.localhost"
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			},
		}))
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"Body":"body"`) || !strings.Contains(string(b), `"RawQuery":"i=`+strconv.Itoa(i)+`"`) {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, b)
		}
		if v := res.Header["Via"]; len(v) != 1 || v[0] != "1.1 berth" || res.Header.Get("Date") == "" {
			t.Fatalf("answer's headers: %v", res.Header)
		}
	}
	if reused != 19 {
		t.Errorf("%d of 19 requests reused the connection", reused)
	}
	if n, h := lp.served.Load(), lp.handedOff.Load(); n != 20 || h != 0 {
		t.Fatalf("loops served %d and handed off %d; want 20 and 0", n, h)
	}

	// 100-continue and a body over 64 KiB: Server's, on the same
	// connection, answered as before.
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"expect 100-continue", func() *http.Request {
			r := mustRequest(t, http.MethodPost, "http://"+addr+"/e", strings.NewReader("body"))
			r.Header.Set("Expect", "100-continue")
			return r
		}},
		{"body over 64 KiB", func() *http.Request {
			return mustRequest(t, http.MethodPost, "http://"+addr+"/big", strings.NewReader(strings.Repeat("x", 100<<10)))
		}},
	} {
		before := lp.handedOff.Load()
		req := tc.req()
		req.Host = "api.dev.berth.localhost"
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"Upstream":"u"`) {
			t.Fatalf("%s: %d %s", tc.name, res.StatusCode, b)
		}
		if lp.handedOff.Load() != before+1 {
			t.Fatalf("%s: not handed off (%d hand-offs)", tc.name, lp.handedOff.Load())
		}
		tr.CloseIdleConnections()
	}
}

// rawUpstream answers each path with the bytes of a canned answer, as a
// workload whose HTTP is not Go's might: HTTP/1.0, chunked with
// trailers, interim answers, hop-by-hop fields, a broken chunk.
func rawUpstream(t *testing.T) string {
	t.Helper()
	answers := map[string]string{
		"/len":      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"/chunked":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/http10":   "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold school",
		"/early":    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/hop":      "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\nok",
		"/head":     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
		"/badchunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
		"/garbage":  "NOT HTTP AT ALL\r\n\r\n",
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					a, ok := answers[req.URL.Path]
					if !ok {
						a = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
					}
					if _, err := io.WriteString(c, a); err != nil {
						return
					}
					if strings.HasPrefix(a, "HTTP/1.0") || req.URL.Path == "/badchunk" || req.URL.Path == "/garbage" {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestLoopsRelayAnswersOfEveryFraming(t *testing.T) {
	addr := rawUpstream(t)
	_, srv, gw := startLoopGateway(t, Target{Environment: "dev", Name: "raw", Kind: "Service",
		Endpoints: []Endpoint{{ID: "raw", Address: addr, Revision: 1}}})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do := func(method, path string, trace *httptrace.ClientTrace) (*http.Response, string, error) {
		req := mustRequest(t, method, "http://"+gw+path, nil)
		req.Host = "raw.dev.berth.localhost"
		if trace != nil {
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, string(b), err
	}

	res, body, err := do(http.MethodGet, "/len", nil)
	if err != nil || body != "hello" || res.ContentLength != 5 {
		t.Fatalf("/len: %v %q", err, body)
	}
	res, body, err = do(http.MethodGet, "/chunked", nil)
	if err != nil || body != "hello world" || res.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("/chunked: %v %q trailer %v", err, body, res.Trailer)
	}
	// HTTP/1.0 to the end of the connection: chunked to the client, whose
	// connection lasts.
	var reused bool
	res, body, err = do(http.MethodGet, "/http10", nil)
	if err != nil || body != "old school" || res.ProtoMinor != 1 || len(res.TransferEncoding) != 1 || res.Header.Get("Via") != "1.0 berth" {
		t.Fatalf("/http10: %v %q %v %v", err, body, res.TransferEncoding, res.Header)
	}
	if _, body, err = do(http.MethodGet, "/len", &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}); err != nil || body != "hello" || !reused {
		t.Fatalf("after /http10 the client's connection was not kept (reused %v): %v %q", reused, err, body)
	}
	var hints []string
	res, body, err = do(http.MethodGet, "/early", &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}})
	if err != nil || body != "ok" || len(hints) != 1 || hints[0] != "103 </a.css>; rel=preload" {
		t.Fatalf("/early: %v %q hints %q", err, body, hints)
	}
	res, body, err = do(http.MethodGet, "/hop", nil)
	if err != nil || body != "ok" || res.Header.Get("X-Secret") != "" || res.Header.Get("Keep-Alive") != "" || res.Header.Get("X-Kept") != "k" {
		t.Fatalf("/hop: %v %q %v", err, body, res.Header)
	}
	res, body, err = do(http.MethodHead, "/head", nil)
	if err != nil || body != "" || res.ContentLength != 1234 {
		t.Fatalf("HEAD /head: %v %q %d", err, body, res.ContentLength)
	}
	// A broken chunk cuts the client's answer; the next request is
	// answered on a new connection.
	if _, _, err = do(http.MethodGet, "/badchunk", nil); err == nil {
		t.Fatal("/badchunk: the broken answer arrived as if whole")
	}
	res, body, err = do(http.MethodGet, "/garbage", nil)
	if err != nil || res.StatusCode != http.StatusBadGateway || !strings.Contains(body, "malformed HTTP response") {
		t.Fatalf("/garbage: %v %d %q", err, res.StatusCode, body)
	}
	if _, body, err = do(http.MethodGet, "/len", nil); err != nil || body != "hello" {
		t.Fatalf("/len at the end: %v %q", err, body)
	}
	if h := srv.eventLoops().handedOff.Load(); h != 0 {
		t.Errorf("%d connections handed off; the loops should answer all of these", h)
	}
}

// A client that does not read holds its endpoint back: the loop stops
// reading the endpoint rather than buffer the answer, and the answer
// still arrives whole once the client reads.
func TestLoopsHoldASlowClientsEndpointBack(t *testing.T) {
	const size = 64 << 20
	var written atomic.Int64
	up := startUpstream(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 32<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	})
	_, _, gw := startLoopGateway(t, target("dev", "big", up))
	conn, err := net.Dial("tcp4", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: big.dev.berth.localhost\r\n\r\n")
	// Wait until the upstream's writes stop moving: every buffer on the
	// way is full.
	var last int64 = -1
	stable := 0
	testutil.WaitFor(t, 20*time.Second, "the upstream's writes to stop", func() bool {
		n := written.Load()
		if n == last && n > 0 {
			stable++
		} else {
			stable = 0
		}
		last = n
		return stable >= 10 || n == size
	})
	if n := written.Load(); n > 24<<20 {
		t.Fatalf("the upstream wrote %d MiB of %d to a client that read nothing: the gateway buffered it", n>>20, size>>20)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || n != size {
		t.Fatalf("read %d of %d bytes: %v", n, size, err)
	}
}

// A request pipelined behind a large answer, which the loops do not take
// (here: a miss), is handed off once that answer is out, and answered
// after it, in order. The answer is relayed whole (the high-water mark
// raised above it) long before the client reads it, so the second
// request is read while the answer is still going: its hand-off must
// wait for it (a loop that did not stop there went round for ever).
func TestLoopsHandOffBehindAnAnswerStillGoing(t *testing.T) {
	const size = 8 << 20 // more than the socket buffers on the way hold
	prior := loopHighWater
	loopHighWater = 2 * size
	t.Cleanup(func() { loopHighWater = prior })
	up := startUpstream(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(make([]byte, size))
	})
	_, srv, gw := startLoopGateway(t, target("dev", "big", up))
	conn, err := net.Dial("tcp4", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: big.dev.berth.localhost\r\n\r\n"+
		"GET / HTTP/1.1\r\nHost: nothing.dev.berth.localhost\r\n\r\n")
	// The first answer fills the buffers on the way before anyone reads.
	testutil.WaitFor(t, 10*time.Second, "the first answer to be relayed", func() bool {
		return srv.eventLoops().served.Load() == 1
	})
	if h := srv.eventLoops().handedOff.Load(); h != 0 {
		t.Fatalf("handed off (%d) while the first answer was still going", h)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, res.Body); err != nil || n != size {
		t.Fatalf("first answer: %d of %d bytes: %v", n, size, err)
	}
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("second answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "no service nothing in environment dev") {
		t.Fatalf("second answer: %d %s", res.StatusCode, b)
	}
	if h := srv.eventLoops().handedOff.Load(); h != 1 {
		t.Fatalf("%d hand-offs, want 1", h)
	}
}

// A request that says Connection: close is the connection's last: a
// request pipelined after it is not served, and the connection closes
// after the answer.
func TestLoopsCloseAfterConnectionClose(t *testing.T) {
	up := startUpstream(t, "u", nil)
	_, srv, gw := startLoopGateway(t, target("dev", "api", up))
	out := rawExchange(t, gw, "GET /first HTTP/1.1\r\nHost: api.dev.berth.localhost\r\nConnection: close\r\n\r\n"+
		"GET /second HTTP/1.1\r\nHost: api.dev.berth.localhost\r\n\r\n", 10*time.Second)
	if n := strings.Count(out, "HTTP/1.1 "); n != 1 || !strings.Contains(out, `"Path":"/first"`) || !strings.Contains(out, "Connection: close") {
		t.Fatalf("%d answers: %q", n, out)
	}
	if up.hits.Load() != 1 || srv.eventLoops().served.Load() != 1 {
		t.Fatalf("upstream hits %d, served %d; want 1 and 1", up.hits.Load(), srv.eventLoops().served.Load())
	}
}
