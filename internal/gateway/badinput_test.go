package gateway

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/testutil"
)

// The gateway as the server runs it (connlimit's listener and server in
// front), fed bad input on loopback: each bad client gets its clear status
// or is closed on a timeout, and everyone else keeps being served.

// seen records what the upstream received, to compare with what the
// gateway meant to send.
type seen struct {
	mu   sync.Mutex
	reqs []string // "METHOD PATH body"
}

func (s *seen) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func startHardenedGateway(t *testing.T, to connlimit.Timeouts, lim connlimit.Limits) (*Gateway, *connlimit.Listener, string, *seen) {
	t.Helper()
	var s seen
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+" "+string(body))
		s.mu.Unlock()
		io.WriteString(w, "ok")
	})
	g := New(Config{Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), MaxBodyBytes: 1 << 20})
	g.SetTargets([]Target{target("dev", "api", up)})
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := connlimit.NewListener(raw, "gateway", lim, nil)
	srv := NewServer(g, to, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); g.CloseIdleConnections() })
	return g, ln, raw.Addr().String(), &s
}

// rawExchange writes raw bytes on a fresh connection and returns what came
// back until the server closed it or within.
func rawExchange(t *testing.T, addr, req string, within time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(within))
	io.WriteString(c, req)
	out, _ := io.ReadAll(c)
	return string(out)
}

// healthy checks that an ordinary request is still served.
func healthy(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/ok", nil)
	req.Host = "api.dev.berth.localhost"
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("an ordinary client was not served: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("an ordinary client got %d", res.StatusCode)
	}
}

func statusLine(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return line
}

func TestBadInput(t *testing.T) {
	to := connlimit.Timeouts{ReadHeader: 500 * time.Millisecond, Idle: 500 * time.Millisecond}
	lim := connlimit.Limits{MaxConns: 4096, MaxConnsPerClient: 4096}
	_, ln, addr, up := startHardenedGateway(t, to, lim)
	const host = "Host: api.dev.berth.localhost\r\n"

	t.Run("oversized headers", func(t *testing.T) {
		big := "X-Big: " + strings.Repeat("a", 2<<20) + "\r\n"
		resp := rawExchange(t, addr, "GET / HTTP/1.1\r\n"+host+big+"\r\n", 10*time.Second)
		if got := statusLine(resp); got != "HTTP/1.1 431 Request Header Fields Too Large" {
			t.Errorf("2 MiB of headers: %q, want 431", got)
		}
		healthy(t, addr)
	})

	t.Run("body over the limit", func(t *testing.T) {
		resp := rawExchange(t, addr, "POST / HTTP/1.1\r\n"+host+"Content-Length: 2000000\r\nConnection: close\r\n\r\n", 10*time.Second)
		if got := statusLine(resp); got != "HTTP/1.1 413 Request Entity Too Large" || !strings.Contains(resp, `"kind":"TooLarge"`) {
			t.Errorf("declared 2 MB body: %q, want 413 TooLarge", resp)
		}
		healthy(t, addr)
	})

	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "GET / HTTP/1.1\r\n" + host + "X-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n"
		start := time.Now()
		closed := false
		// One byte every 50 ms: ten times slower than the headers may take.
		for i := 0; i < len(head) && time.Since(start) < 10*time.Second; i++ {
			if _, err := c.Write([]byte{head[i]}); err != nil {
				closed = true
				break
			}
			healthy(t, addr) // everyone else is served meanwhile
			time.Sleep(50 * time.Millisecond)
		}
		if !closed {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed = err != nil && !isTimeout(err)
		}
		if !closed {
			t.Error("a client trickling its headers was not cut")
		}
	})

	t.Run("smuggling", func(t *testing.T) {
		// Each sends a request whose body, read by the other framing,
		// would hide a second request. The gateway re-frames what it
		// forwards, so the upstream sees what the gateway routed, no more.
		attacks := map[string]string{
			"CL.TE":         "POST /a HTTP/1.1\r\n" + host + "Content-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y",
			"TE.CL":         "POST /a HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n1e\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n0\r\n\r\n",
			"TE obfuscated": "POST /a HTTP/1.1\r\n" + host + "Content-Length: 30\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y",
			"two lengths":   "POST /a HTTP/1.1\r\n" + host + "Content-Length: 0\r\nContent-Length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n",
			"TE list":       "POST /a HTTP/1.1\r\n" + host + "Content-Length: 30\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y",
		}
		for name, attack := range attacks {
			before := len(up.list())
			resp := rawExchange(t, addr, attack, 2*time.Second)
			for _, r := range up.list()[before:] {
				if strings.HasPrefix(r, "GET /smuggled") {
					t.Errorf("%s: the upstream received a smuggled request (gateway answered %q)", name, statusLine(resp))
				}
			}
			if n := strings.Count(resp, "HTTP/1.1 "); n > 1 && strings.Contains(resp, "smuggled") {
				t.Errorf("%s: answered twice: %q", name, resp)
			}
			t.Logf("%s: %s; upstream saw %q", name, statusLine(resp), up.list()[before:])
		}
		healthy(t, addr)
	})

	t.Run("1000 idle connections", func(t *testing.T) {
		base := ln.Active()
		conns := make([]net.Conn, 0, 1000)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 1000 {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatalf("after %d connections: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		healthy(t, addr)
		// Each idle connection is closed by the server on the header
		// timeout, without a byte from the client.
		var wg sync.WaitGroup
		var mu sync.Mutex
		open := 0
		for _, c := range conns {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := c.Read(make([]byte, 1))
				if err == nil || isTimeout(err) {
					mu.Lock()
					open++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if open > 0 {
			t.Errorf("%d of 1000 idle connections still open after 10 s", open)
		}
		testutil.WaitFor(t, 10*time.Second, "the listener to give back the idle connections' slots", func() bool { return ln.Active() <= base })
		healthy(t, addr)
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
