package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/testutil"
)

// The gateway's own server (Server), on loopback, fed raw bytes.

// rawConn opens a connection to addr for a test, bounded in time.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readAnswer reads one response off br, body whole.
func readAnswer(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading an answer's body: %v", err)
	}
	return res, string(b)
}

func TestServerKeepAliveAndPipelining(t *testing.T) {
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			// No length: the gateway's answer is chunked.
			io.WriteString(w, "one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "two")
		default:
			w.Header().Set("Content-Length", "5")
			if r.Method != http.MethodHead {
				io.WriteString(w, "hello")
			}
		}
	})
	_, url, _ := startGateway(t, Config{}, target("dev", "api", up))
	c, br := rawConn(t, strings.TrimPrefix(url, "http://"))
	const host = "Host: api.dev.berth.localhost\r\n"
	// Three requests in one write, then two more after the answers.
	io.WriteString(c, "GET /a HTTP/1.1\r\n"+host+"\r\nHEAD /b HTTP/1.1\r\n"+host+"\r\nGET /stream HTTP/1.1\r\n"+host+"\r\n")
	if res, body := readAnswer(t, br, "GET"); res.StatusCode != 200 || body != "hello" || res.ContentLength != 5 {
		t.Errorf("first pipelined: %d %q (length %d)", res.StatusCode, body, res.ContentLength)
	}
	if res, body := readAnswer(t, br, "HEAD"); res.StatusCode != 200 || body != "" || res.ContentLength != 5 {
		t.Errorf("HEAD: %d %q (length %d); want 200, no body, length 5", res.StatusCode, body, res.ContentLength)
	}
	res, body := readAnswer(t, br, "GET")
	if res.StatusCode != 200 || body != "one,two" || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Errorf("stream: %d %q %v; want 200 chunked one,two", res.StatusCode, body, res.TransferEncoding)
	}
	io.WriteString(c, "POST /c HTTP/1.1\r\n"+host+"Content-Length: 3\r\n\r\nabc")
	if res, body := readAnswer(t, br, "POST"); res.StatusCode != 200 || body != "hello" || res.Close {
		t.Errorf("POST on the same connection: %d %q close=%v", res.StatusCode, body, res.Close)
	}
	io.WriteString(c, "GET /d HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 200 || !res.Close {
		t.Errorf("Connection: close: %d close=%v; want 200 and the connection closed", res.StatusCode, res.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the connection is open (%v)", err)
	}
}

// What is not a plain request goes to net/http on the same connection:
// a chunked body, 100-continue, and an HTTP/1.0 client.
func TestServerHandsOff(t *testing.T) {
	up := startUpstream(t, "u", nil)
	_, url, _ := startGateway(t, Config{}, target("dev", "api", up))
	addr := strings.TrimPrefix(url, "http://")
	const host = "Host: api.dev.berth.localhost\r\n"

	c, br := rawConn(t, addr)
	// A plain request first, then one for net/http, then a plain one
	// again: net/http keeps the connection from there.
	io.WriteString(c, "GET /plain HTTP/1.1\r\n"+host+"\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 200 {
		t.Fatalf("plain: %d", res.StatusCode)
	}
	io.WriteString(c, "POST /chunked HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	res, body := readAnswer(t, br, "POST")
	var e echo
	json.Unmarshal([]byte(body), &e)
	if res.StatusCode != 200 || e.Body != "abcde" || e.Path != "/chunked" {
		t.Errorf("chunked body: %d, upstream got %q at %q", res.StatusCode, e.Body, e.Path)
	}
	io.WriteString(c, "GET /again HTTP/1.1\r\n"+host+"\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 200 {
		t.Errorf("after the hand-off: %d", res.StatusCode)
	}

	c, br = rawConn(t, addr)
	io.WriteString(c, "PUT /continue HTTP/1.1\r\n"+host+"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("Expect: 100-continue: first line %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "abc")
	res, body = readAnswer(t, br, "PUT")
	json.Unmarshal([]byte(body), &e)
	if res.StatusCode != 200 || e.Body != "abc" {
		t.Errorf("after 100 Continue: %d, upstream got %q", res.StatusCode, e.Body)
	}

	c, br = rawConn(t, addr)
	io.WriteString(c, "GET /old HTTP/1.0\r\n"+host+"\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 200 {
		t.Errorf("HTTP/1.0: %d", res.StatusCode)
	}
}

// Each bad input gets the answer net/http gives it (the gateway's answer
// before it had its own server), and the next client is served.
func TestServerBadInput(t *testing.T) {
	_, _, addr, up := startHardenedGateway(t, connlimit.Timeouts{}, connlimit.Limits{})
	const host = "Host: api.dev.berth.localhost\r\n"
	for _, tc := range []struct {
		name, req, want string
	}{
		{"CL and TE", "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"TE and CL", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"two lengths", "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "HTTP/1.1 400"},
		{"invalid chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"obsolete fold (net/http unfolds it)", "GET /ok HTTP/1.1\r\n" + host + "A: b\r\n c\r\n\r\n", "HTTP/1.1 200"},
		{"TE obfuscated and CL", "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\nabcd", "HTTP/1.1 400"},
		{"no host", "GET / HTTP/1.1\r\nA: b\r\n\r\n", "HTTP/1.1 400"},
		{"two hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", "HTTP/1.1 400"},
		{"space before colon", "GET / HTTP/1.1\r\n" + host + "A : b\r\n\r\n", "HTTP/1.1 400"},
		{"control byte", "GET / HTTP/1.1\r\n" + host + "A: b\x01c\r\n\r\n", "HTTP/1.1 400"},
		{"bad target", "GET /%zz HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 400"},
		{"headers over 1 MiB", "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-Big: "+strings.Repeat("a", 1000)+"\r\n", 1100) + "\r\n", "HTTP/1.1 431"},
		{"headers over the plain buffer", "GET /ok HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", "HTTP/1.1 200"},
		{"body over the limit", "POST / HTTP/1.1\r\n" + host + "Content-Length: 2000000\r\n\r\n" + strings.Repeat("a", 100000), "HTTP/1.1 413"},
		{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "HTTP/1.1 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.list())
			resp := rawExchange(t, addr, tc.req, 5*time.Second)
			if got := statusLine(resp); !strings.HasPrefix(got, tc.want) {
				t.Errorf("answered %q; want %s", got, tc.want)
			}
			if n := len(up.list()) - before; !strings.HasSuffix(tc.want, "200") && n != 0 {
				t.Errorf("the upstream was sent %d requests", n)
			}
			healthy(t, addr)
		})
	}
}

// The upstream sees the same request through Server as through net/http's
// server: the headers the gateway adds (X-Forwarded-*, Via) and the
// client's.
func TestServerForwardsAsNetHTTP(t *testing.T) {
	up := startUpstream(t, "u", nil)
	g, url, _ := startGateway(t, Config{}, target("dev", "api", up))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	std := connlimit.NewServer(g, connlimit.DefaultTimeouts)
	go std.Serve(ln)
	t.Cleanup(func() { std.Close() })
	seen := func(base string) echo {
		req := mustRequest(t, http.MethodPost, base+"/p/a?q=1", strings.NewReader("body"))
		req.Host = "api.dev.berth.localhost"
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set("Via", "1.1 edge")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "dropped")
		req.Header.Add("X-Multi", "a")
		req.Header.Add("X-Multi", "b")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var e echo
		if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	lean, std2 := seen(url), seen("http://"+ln.Addr().String())
	for _, e := range []*echo{&lean, &std2} {
		e.Header.Del("Accept-Encoding")
	}
	a, _ := json.Marshal(lean)
	b, _ := json.Marshal(std2)
	if string(a) != string(b) {
		t.Errorf("upstream saw through Server:\n%s\nthrough net/http:\n%s", a, b)
	}
	if lean.Header.Get("X-Forwarded-For") != "10.0.0.1, 127.0.0.1" || strings.Join(lean.Header["Via"], ", ") != "1.1 edge, 1.1 berth" || lean.Header.Get("X-Hop") != "" {
		t.Errorf("forwarded headers: %v", lean.Header)
	}
}

// Shutdown waits for a request in flight and closes idle connections.
func TestServerShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	g := New(Config{Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	g.SetTargets([]Target{target("dev", "api", up)})
	t.Cleanup(g.CloseIdleConnections)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(g, connlimit.DefaultTimeouts, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()
	idle, idleBr := rawConn(t, addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: api.dev.berth.localhost\r\nX: idle\r\n\r\n")
	// The idle one's request is the one held: wait for it, then hold a
	// second, busy connection.
	<-entered
	busy, busyBr := rawConn(t, addr)
	_ = busy
	close(release)
	if res, body := readAnswer(t, idleBr, "GET"); res.StatusCode != 200 || body != "done" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not close idle connections")
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v", err)
	}
	if _, err := idleBr.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection stayed open after Shutdown: %v", err)
	}
	// Closed, or reset when it was still in the listener's backlog.
	if _, err := busyBr.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("a fresh connection stayed open after Shutdown: %v", err)
	}
}

// A client that leaves a request the upstream holds (a long poll, a cold
// start) frees the upstream, as a stream's client does: the request's
// context ends, and the endpoint has nothing in flight.
func TestServerClientLeavingAHeldRequest(t *testing.T) {
	entered, left := make(chan struct{}), make(chan struct{})
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // answers nothing until the gateway goes
		close(left)
	})
	g, url, _ := startGateway(t, Config{}, target("dev", "poll", up))
	c, _ := rawConn(t, strings.TrimPrefix(url, "http://"))
	io.WriteString(c, "GET /poll HTTP/1.1\r\nHost: poll.dev.berth.localhost\r\n\r\n")
	<-entered
	c.Close()
	select {
	case <-left:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream still holds the request of a client that left")
	}
	testutil.WaitFor(t, 10*time.Second, "the request to leave the in-flight count", func() bool { return g.InFlight("u") == 0 })
}
