package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// countingUpstream serves h and counts the connections it accepted, to see
// the gateway reuse them.
func countingUpstream(t *testing.T, h http.HandlerFunc) (*upstream, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	u := &upstream{id: "u"}
	u.srv = httptest.NewUnstartedServer(h)
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u, &conns
}

// The answers whose framing differs (no body, a body of unknown length,
// trailers, a large body) all arrive whole, and the connection to the
// endpoint is reused after each.
func TestAnswersOfEveryShapeArriveWholeOnReusedConnections(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	up, conns := countingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "42")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/chunked":
			for i := range 5 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc")
		case "/big":
			w.Write(big)
		case "/upload":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		}
	})
	_, url, c := startGateway(t, Config{}, target("dev", "api", up))
	hc := hostClient(c, "api.dev.berth.localhost")
	for round := range 3 {
		req := mustRequest(t, http.MethodHead, url+"/head", nil)
		res, body := do(t, hc, req)
		if res.StatusCode != 200 || res.ContentLength != 42 || len(body) != 0 {
			t.Errorf("HEAD: %d, length %d, body %q", res.StatusCode, res.ContentLength, body)
		}
		for _, code := range []int{204, 304} {
			res, body := get(t, hc, fmt.Sprintf("%s/%d", url, code), "")
			if res.StatusCode != code || len(body) != 0 {
				t.Errorf("%d: got %d with %q", code, res.StatusCode, body)
			}
		}
		res, body = get(t, hc, url+"/chunked", "")
		if want := "part 0\npart 1\npart 2\npart 3\npart 4\n"; string(body) != want {
			t.Errorf("chunked body %q", body)
		}
		res, body = get(t, hc, url+"/trailers", "")
		if string(body) != "body" || res.Trailer.Get("X-Checksum") != "abc" {
			t.Errorf("trailers: body %q, trailer %v", body, res.Trailer)
		}
		res, body = get(t, hc, url+"/big", "")
		if !bytes.Equal(body, big) {
			t.Errorf("1 MiB body arrived as %d bytes", len(body))
		}
		// A body over the replay buffer streams to the endpoint.
		upload := bytes.Repeat([]byte{byte(round)}, 3<<20)
		res, body = do(t, hc, mustRequest(t, http.MethodPut, url+"/upload", bytes.NewReader(upload)))
		if sum := sha256.Sum256(upload); string(body) != fmt.Sprintf("%d %x", len(upload), sum) {
			t.Errorf("3 MiB upload arrived as %q", body)
		}
	}
	// 3 rounds of 8 requests, one at a time: one connection serves them,
	// except that a body too large to be sent again goes on a fresh one
	// (a pooled connection the endpoint closed could not be retried),
	// which is then pooled in turn.
	if n := conns.Load(); n != 1+3 {
		t.Errorf("the endpoint saw %d connections for 24 sequential requests, want 4", n)
	}
}

// An endpoint that stops reading a body does not hold the request past
// the timeout: 504, not a gateway stuck writing.
func TestEndpointThatStopsReadingTheBody(t *testing.T) {
	const timeout = 500 * time.Millisecond
	stuck := make(chan struct{})
	up := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		<-stuck // never reads: net/http cannot see the gateway leave
	})
	_, url, _ := startGateway(t, Config{Timeout: timeout}, target("dev", "api", up))
	t.Cleanup(func() { close(stuck) }) // before the servers close

	// 8 MiB: more than the sockets between them hold.
	c := &http.Client{Timeout: 10 * time.Second}
	req := mustRequest(t, http.MethodPut, url+"/never-reads", io.LimitReader(zeros{}, 8<<20))
	req.Host = "api.dev.berth.localhost"
	req.ContentLength = 8 << 20
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	decodeError(t, res, body, http.StatusGatewayTimeout, v1.ErrGatewayTimeout)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Right after a start the table is not loaded: a request waits for it
// (WaitForTable) rather than getting a 404 for a workload that exists.
func TestRequestWaitsForTheFirstTable(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "here") }))
	t.Cleanup(up.Close)
	g := New(Config{WaitForTable: 10 * time.Second})
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.CloseIdleConnections)
	type answer struct {
		code int
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.Host = "web.dev.berth.localhost"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- answer{code: res.StatusCode, body: string(b)}
	}()
	// The request is held until the table comes (no 404 before it).
	select {
	case a := <-got:
		t.Fatalf("answered before the table was loaded: %+v", a)
	case <-time.After(50 * time.Millisecond):
	}
	g.SetTargets([]Target{{Environment: "dev", Name: "web", Kind: "Service",
		Endpoints: []Endpoint{{ID: "web-1", Address: up.Listener.Addr().String(), Revision: 1}}}})
	if a := <-got; a.err != nil || a.code != 200 || a.body != "here" {
		t.Fatalf("after the table: %+v; want 200 here", a)
	}
	// Once loaded, an unknown host is a 404 at once.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "nope.dev.berth.localhost"
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 404 {
		t.Fatalf("unknown host after the table: %v %v; want 404", res, err)
	}
	res.Body.Close()
}
