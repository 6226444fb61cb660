package connlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

// serve runs h behind a Listener with lim and a server with t on loopback
// and returns the listener and its address.
func serve(t *testing.T, lim Limits, to Timeouts, h http.Handler) (*Listener, string) {
	t.Helper()
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, "test", lim, slog.New(slog.NewTextHandler(t.Output(), nil)))
	srv := NewServer(h, to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln, raw.Addr().String()
}

// dialFrom connects from a loopback source address of the caller's
// choosing, so tests can play several clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// statusOf sends a GET on c and returns the status line, or the error that
// ended the connection instead.
func statusOf(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestCaps: one client address holds at most MaxConnsPerClient, the
// listener at most MaxConns; those over are refused at once (not queued),
// and a closed connection gives its slot back.
func TestCaps(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	ln, addr := serve(t, Limits{MaxConns: 4, MaxConnsPerClient: 2}, Timeouts{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	hold := func(src string) net.Conn {
		c := dialFrom(t, src, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection of %s was not served", src)
		}
		return c
	}
	a1, _ := hold("127.0.0.1"), hold("127.0.0.1")
	if got, _ := statusOf(dialFrom(t, "127.0.0.1", addr)); strings.Contains(got, "200") {
		t.Errorf("a third connection of 127.0.0.1 was served: %q", got)
	} else {
		t.Logf("third connection of 127.0.0.1: %q", got)
	}
	hold("127.0.0.2")
	hold("127.0.0.2")
	if got, _ := statusOf(dialFrom(t, "127.0.0.3", addr)); strings.Contains(got, "200") {
		t.Errorf("a fifth connection was served: %q", got)
	}
	if n := ln.Active(); n != 4 {
		t.Errorf("Active = %d; want 4", n)
	}
	if n := ln.Rejected(); n != 2 {
		t.Errorf("Rejected = %d; want 2", n)
	}
	// The first client lets go of one: it may connect again.
	a1.Close()
	testutil.WaitFor(t, 10*time.Second, "the slot given back", func() bool { return ln.Active() == 3 })
	close(release)
	c := dialFrom(t, "127.0.0.1", addr)
	if got, err := statusOf(c); got != "HTTP/1.1 200 OK" {
		t.Errorf("after a slot was freed: %q, %v", got, err)
	}
}

// TestSlowBodyIsCut: a body trickled slower than the minimum rate fails
// its read with ErrBodyTooSlow, and the connection is closed, freeing the
// slot.
func TestSlowBodyIsCut(t *testing.T) {
	got := make(chan error, 1)
	ln, addr := serve(t, Limits{}, Timeouts{BodyGrace: 200 * time.Millisecond, MinBodyRate: 1000, BodyStall: time.Second},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			got <- err
		}))
	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	select {
	case err := <-got:
		if !errors.Is(err, ErrBodyTooSlow) {
			t.Errorf("reading a trickled body: %v; want ErrBodyTooSlow", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a trickled body was never cut")
	}
	testutil.WaitFor(t, 10*time.Second, "the connection closed", func() bool { return ln.Active() == 0 })
}

// TestUnreadSlowBodyIsCut: a handler that answers without reading the body
// (an unauthenticated request) does not leave net/http draining a trickled
// body for ever: the connection goes once the body's allowance is spent.
func TestUnreadSlowBodyIsCut(t *testing.T) {
	ln, addr := serve(t, Limits{}, Timeouts{BodyGrace: 200 * time.Millisecond, MinBodyRate: 1000, BodyStall: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "who are you", http.StatusUnauthorized)
		}))
	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	testutil.WaitFor(t, 10*time.Second, "the connection closed", func() bool { return ln.Active() == 0 })
}

// TestHandlerTimeIsNotTheClients: a client that sent its body at once is
// not cut because the handler reads it slowly, and a handler that works
// long after reading the whole body keeps its request (the body's deadline
// must not outlive it).
func TestHandlerTimeIsNotTheClients(t *testing.T) {
	to := Timeouts{BodyGrace: 100 * time.Millisecond, MinBodyRate: 1000, BodyStall: 200 * time.Millisecond}
	_, addr := serve(t, Limits{}, to, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 100)
		n := 0
		for {
			// 10 reads of 100 bytes, 150 ms apart: 1.5 s for 1000 bytes,
			// slower than the minimum rate if the handler's time counted.
			time.Sleep(150 * time.Millisecond)
			m, err := r.Body.Read(buf)
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestTimeout)
				return
			}
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "request cancelled", http.StatusInternalServerError)
			return
		case <-time.After(3 * to.BodyStall):
		}
		fmt.Fprintf(w, "read %d", n)
	}))
	res, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "read 1000" {
		t.Errorf("%d %q; want 200 read 1000", res.StatusCode, b)
	}
}

// TestStreamsOutliveTheWriteBound: a response that pauses between writes
// longer than WriteStall is not cut; a client that stops reading is.
func TestStreamsOutliveTheWriteBound(t *testing.T) {
	const stall = 200 * time.Millisecond
	writeErr := make(chan error, 1)
	_, addr := serve(t, Limits{WriteStall: stall}, Timeouts{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(2 * stall)
			}
		case "/big":
			chunk := make([]byte, 1<<20)
			for {
				if _, err := w.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
		}
	}))
	res, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || strings.Count(string(b), "data:") != 3 {
		t.Errorf("event stream with pauses: %q, %v; want 3 events", b, err)
	}

	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// …and never read.
	select {
	case err := <-writeErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("write to a client that stopped reading: %v; want a deadline exceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write to a client that stopped reading never failed")
	}
}

// TestSlowHeadersAreCut: headers that do not arrive in ReadHeader end the
// connection.
func TestSlowHeadersAreCut(t *testing.T) {
	ln, addr := serve(t, Limits{}, Timeouts{ReadHeader: 200 * time.Millisecond}, http.NotFoundHandler())
	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	testutil.WaitFor(t, 10*time.Second, "the connection with unfinished headers closed", func() bool { return ln.Active() == 0 })
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5":                 "127.0.0.1",
		"[::ffff:10.0.0.1]:5":         "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:5":    "2001:db8:1:2::",
		"[2001:db8:1:2:ffff::1]:80":   "2001:db8:1:2::",
		"[fe80::1%eth0]:80":           "fe80::",
		"[2001:db8:1:3:3:4:5:6]:5":    "2001:db8:1:3::",
		"[::1]:8080":                  "::",
		"[2001:db8:0:0:0:0:0:1]:1234": "2001:db8::",
	} {
		ta, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := clientKey(ta).String(); got != want {
			t.Errorf("clientKey(%s) = %s; want %s", in, got, want)
		}
	}
}

// TestGRPCStreamMayPause: over HTTP/2, a gRPC stream's body may pause
// longer than a body may stall (a bidirectional stream waits on its
// server); any other body is still cut.
func TestGRPCStreamMayPause(t *testing.T) {
	const stall = 200 * time.Millisecond
	got := make(chan error, 2)
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	}), Timeouts{BodyGrace: stall, MinBodyRate: 1 << 20, BodyStall: stall})
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(raw)
	t.Cleanup(func() { srv.Close() })
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)

	for _, ct := range []string{"application/grpc", "application/octet-stream"} {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, "http://"+raw.Addr().String()+"/", pr)
		req.Header.Set("Content-Type", ct)
		go func() {
			pw.Write([]byte("first"))
			time.Sleep(4 * stall) // the pause under test
			pw.Write([]byte("second"))
			pw.Close()
		}()
		res, err := tr.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		}
		select {
		case err := <-got:
			if ct == "application/grpc" && err != nil {
				t.Errorf("a gRPC stream that paused was cut: %v", err)
			}
			if ct != "application/grpc" && !errors.Is(err, ErrBodyTooSlow) {
				t.Errorf("a %s body that stalled: %v, want ErrBodyTooSlow", ct, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the handler never finished reading", ct)
		}
	}
}
