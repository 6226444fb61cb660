package wasm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/egress"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/wasm/wasmtest"
)

var (
	outcallOnce   sync.Once
	outcallModule []byte
	outcallErr    error
	// outcallCache is the tests' shared compilation cache: the module is
	// 10 MB, compiled once.
	outcallCache string
)

// outcallFn is internal/wasm/testdata/outcall, built once: a Go handler
// that calls the URL of its query through sdk/wasmhttp.
func outcallFn(t testing.TB) []byte {
	t.Helper()
	outcallOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-wasm-outcall-")
		if err != nil {
			outcallErr = err
			return
		}
		defer os.RemoveAll(dir)
		outcallModule, outcallErr = wasmtest.BuildGoOutcall(dir)
		outcallCache, _ = os.MkdirTemp("", "berth-wasm-outcall-cache-")
	})
	if outcallErr != nil {
		t.Fatalf("build the outcall function: %v", outcallErr)
	}
	return outcallModule
}

func TestMain(m *testing.M) {
	code := m.Run()
	if outcallCache != "" {
		os.RemoveAll(outcallCache)
	}
	os.Exit(code)
}

type subnets map[string]netip.Prefix

func (s subnets) Subnets() map[string]netip.Prefix { return s }

type doors map[string]string

func (d doors) Addr(env string) string { return d[env] }

// door stands for environment default's gateway listener: it answers the
// names it is asked for as the gateway would, with what it saw.
type door struct {
	srv      *httptest.Server
	canceled atomic.Int64
}

func newDoor(t *testing.T) *door {
	d := &door{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(make([]byte, MaxCallResponseBytes+1))
			return
		case "/slow":
			<-r.Context().Done()
			d.canceled.Add(1)
			return
		case "/outside":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", r.Header.Get("Traceparent"))
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s %s %s %s", r.Host, r.Method, r.URL.Path, b)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// outcallHost is a host whose functions' calls go through a real egress
// policy: environments default (10.250.0.0/24, its gateway listener the
// door) and other (10.250.1.0/24).
func outcallHost(t *testing.T, d *door) *Host {
	eg, err := egress.New(egress.Config{
		Networks:  subnets{"default": netip.MustParsePrefix("10.250.0.0/24"), "other": netip.MustParsePrefix("10.250.1.0/24")},
		Doors:     doors{"default": d.srv.Listener.Addr().String()},
		HostAddrs: func() ([]netip.Addr, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return newHost(t, Config{Egress: eg, CacheDir: outcallCache})
}

func TestOutgoingCalls(t *testing.T) {
	d := newDoor(t)
	var outsideHits atomic.Int64
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outsideHits.Add(1)
		fmt.Fprint(w, "reached the host")
	}))
	defer outside.Close()

	h := outcallHost(t, d)
	apply(t, h, "fn", outcallFn(t), func(f *Function) { f.Timeout = 2 * time.Second })
	get := func(target string) answer {
		t.Helper()
		return call(t, h, "fn", "GET", "/get?url="+url.QueryEscape(target), "")
	}

	t.Run("the environment's own service by name, through its gateway", func(t *testing.T) {
		for _, name := range []string{"svc", "svc.default", "svc.default.berth.localhost"} {
			a := get("http://" + name + "/hello")
			if a.status != 200 || a.header.Get("X-Upstream-Status") != "202" || a.body != name+" GET /hello " {
				t.Fatalf("%s: %d %v %q", name, a.status, a.header, a.body)
			}
		}
		a := call(t, h, "fn", "POST", "/post?url="+url.QueryEscape("http://svc/in"), "the payload")
		if a.status != 200 || a.body != "svc POST /in the payload" {
			t.Fatalf("post: %d %q", a.status, a.body)
		}
	})

	for _, c := range []struct {
		name, url, kind, says string
	}{
		{"another environment's instance", "http://10.250.1.7/", "refused", `in environment "other"'s network`},
		{"the host, on loopback", outside.URL + "/", "refused", "loopback"},
		{"a cloud metadata service", "http://169.254.169.254/latest/meta-data/", "refused", "link-local"},
		{"a platform name on another port", "http://svc:8080/", "refused", "port 80"},
		{"a redirect to the host", "http://svc/outside?to=" + url.QueryEscape(outside.URL+"/"), "refused", "loopback"},
		{"not http", "ftp://example.com/", "invalid", "not an absolute http or https URL"},
		{"a response over the bound", "http://svc/big", "too large", "the most a Wasm function may receive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := get(c.url)
			want := "call error (" + c.kind + "): "
			if a.status != 502 || !strings.HasPrefix(a.body, want) || !strings.Contains(a.body, c.says) {
				t.Fatalf("%d %q, want 502 %q…%q", a.status, a.body, want, c.says)
			}
		})
	}
	if n := outsideHits.Load(); n != 0 {
		t.Fatalf("the host's own server was reached %d times", n)
	}

	t.Run("a call outliving the function's timeout", func(t *testing.T) {
		a := get("http://svc/slow")
		if a.status != http.StatusGatewayTimeout || !strings.Contains(errMessage(t, a), "timeout of 2s") {
			t.Fatalf("%d %q, want 504", a.status, a.body)
		}
		testutil.WaitForState(t, 10*time.Second, "the call to be cut when the function was stopped", func() (bool, string) {
			return d.canceled.Load() == 1, fmt.Sprint(d.canceled.Load())
		})
	})

	// The function and the host are unharmed.
	if a := get("http://svc/again"); a.status != 200 || a.body != "svc GET /again " {
		t.Fatalf("after the failures: %d %q", a.status, a.body)
	}
	if running, _ := h.Stats("default", "fn"); running != 0 {
		t.Fatalf("%d instances still running", running)
	}
}

// Without an egress policy (a host not given one) every call is refused
// with a reason, and the module still loads.
func TestOutgoingCallsUnavailable(t *testing.T) {
	mod := outcallFn(t)
	h := newHost(t, Config{CacheDir: outcallCache})
	apply(t, h, "fn", mod, nil)
	a := call(t, h, "fn", "GET", "/get?url="+url.QueryEscape("http://svc/"), "")
	if a.status != 502 || !strings.HasPrefix(a.body, "call error (unavailable): ") {
		t.Fatalf("%d %q", a.status, a.body)
	}
}

func TestHostModuleImportsChecked(t *testing.T) {
	h := newHost(t, Config{})
	for name, c := range map[string]struct {
		mod  []byte
		says string
	}{
		"unknown function": {wasmtest.Importing("berth_http", "listen", 1, 1), "has only send, read and close"},
		"wrong signature":  {wasmtest.Importing("berth_http", "send", 2, 1), "wrong signature"},
	} {
		t.Run(name, func(t *testing.T) {
			err := h.Apply(context.Background(), Function{
				Environment: "default", Name: "x", Revision: 1, Digest: digestOf(c.mod),
				Module: func(context.Context) ([]byte, error) { return c.mod, nil },
			})
			if !v1.IsInvalid(err) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("err = %v, want Invalid saying %q", err, c.says)
			}
		})
	}
	ok := wasmtest.Importing("berth_http", "close", 1, 1)
	if err := h.Apply(context.Background(), Function{
		Environment: "default", Name: "ok", Revision: 1, Digest: digestOf(ok),
		Module: func(context.Context) ([]byte, error) { return ok, nil },
	}); err != nil {
		t.Fatalf("a module importing berth_http.close: %v", err)
	}
}
