package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/logs"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/wasm/wasmtest"
)

// goModule is the Go handler of wasmtest, built once for the package's
// tests (go build for wasip1 takes seconds).
var (
	goOnce   sync.Once
	goModule []byte
	goErr    error
)

func goHandler(t testing.TB) []byte {
	t.Helper()
	goOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-wasm-test-")
		if err != nil {
			goErr = err
			return
		}
		defer os.RemoveAll(dir)
		goModule, goErr = wasmtest.BuildGoHandler(dir)
	})
	if goErr != nil {
		t.Fatalf("build the Go handler: %v", goErr)
	}
	return goModule
}

func newHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func apply(t testing.TB, h *Host, name string, mod []byte, edit func(*Function)) {
	t.Helper()
	f := Function{
		Environment: "default", Name: name, Revision: 1, Digest: digestOf(mod),
		Module:  func(context.Context) ([]byte, error) { return mod, nil },
		Timeout: 10 * time.Second,
	}
	if edit != nil {
		edit(&f)
	}
	if err := h.Apply(context.Background(), f); err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t testing.TB, h *Host, name, method, target, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://"+name+".default.berth.localhost"+target, r)
	res, err := h.Transport("default", name).RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

// errMessage reads the API's error shape.
func errMessage(t testing.TB, a answer) string {
	t.Helper()
	var st v1.Status
	if err := json.Unmarshal([]byte(a.body), &st); err != nil {
		t.Fatalf("status %d, body %q: not an API error: %v", a.status, a.body, err)
	}
	return st.Error.Message
}

func TestHelloSmallModule(t *testing.T) {
	h := newHost(t, Config{})
	apply(t, h, "hello", wasmtest.Hello(), nil)
	a := call(t, h, "hello", "GET", "/", "")
	if a.status != 200 || a.body != "hello\n" || a.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("got %d %q %v", a.status, a.body, a.header)
	}
	if running, started := h.Stats("default", "hello"); running != 0 || started != 1 {
		t.Fatalf("stats: running %d started %d, want 0 and 1", running, started)
	}
}

func TestGoHandler(t *testing.T) {
	mod := goHandler(t)
	logDir := t.TempDir()
	h := newHost(t, Config{LogDir: logDir})
	apply(t, h, "fn", mod, func(f *Function) {
		f.Env = []string{"GREETING=ahoy"}
		f.Files = map[string][]byte{"/etc/config/colour": []byte("blue")}
	})

	if a := call(t, h, "fn", "GET", "/world", ""); a.status != 200 || a.body != "hello from wasm world" {
		t.Fatalf("hello: %d %q", a.status, a.body)
	}
	a := call(t, h, "fn", "POST", "/echo?x=1", "the body")
	if a.status != 200 || a.body != "POST /echo?x=1 the body" || a.header.Get("X-Method") != "POST" {
		t.Fatalf("echo: %d %q %v", a.status, a.body, a.header)
	}
	if a := call(t, h, "fn", "GET", "/status", ""); a.status != http.StatusTeapot || a.body != "short and stout" {
		t.Fatalf("status: %d %q", a.status, a.body)
	}
	if a := call(t, h, "fn", "GET", "/env?name=GREETING", ""); a.body != "ahoy" {
		t.Fatalf("env: %d %q", a.status, a.body)
	}
	if a := call(t, h, "fn", "GET", "/file?path=/etc/config/colour", ""); a.status != 200 || a.body != "blue" {
		t.Fatalf("config file: %d %q", a.status, a.body)
	}
	// The module sees the files it is given and nothing of the host.
	if a := call(t, h, "fn", "GET", "/ls?path=/", ""); strings.TrimSpace(a.body) != "etc" {
		t.Fatalf("root holds %q, want only etc", a.body)
	}
	if a := call(t, h, "fn", "GET", "/file?path=/etc/passwd", ""); a.status != 404 {
		t.Fatalf("/etc/passwd: %d %q, want 404", a.status, a.body)
	}
	if a := call(t, h, "fn", "GET", "/log?msg=written-to-stderr", ""); a.body != "logged" {
		t.Fatalf("log: %d %q", a.status, a.body)
	}
	var out strings.Builder
	if err := logs.Read(context.Background(), logDir, logs.Query{Environment: "default", Owner: "fn"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "log: written-to-stderr") {
		t.Fatalf("the module's stderr is not in its log: %q", out.String())
	}
}

func TestFailuresAreAnswered(t *testing.T) {
	mod := goHandler(t)
	h := newHost(t, Config{})
	apply(t, h, "fn", mod, func(f *Function) {
		f.Timeout = time.Second
		f.MemoryBytes = 64 << 20
	})
	apply(t, h, "trap", wasmtest.Trap(), nil)
	apply(t, h, "loop", wasmtest.Loop(), func(f *Function) { f.Timeout = 300 * time.Millisecond })
	apply(t, h, "silent", wasmtest.Respond(""), nil)
	apply(t, h, "garbled", wasmtest.Respond("no headers here"), nil)

	cases := []struct {
		name, fn, path string
		status         int
		says           string
	}{
		{"trap", "trap", "/", 502, "unreachable"},
		{"go panic", "fn", "/panic", 502, "exited with code 2"},
		{"memory exhausted", "fn", "/oom", 502, "out of memory"},
		{"go loop", "fn", "/loop", 504, "did not answer within its timeout of 1s"},
		{"go sleep", "fn", "/sleep?d=1h", 504, "did not answer within its timeout of 1s"},
		{"tiny loop", "loop", "/", 504, "timeout of 300ms"},
		{"no output", "silent", "/", 502, "wrote nothing"},
		{"not CGI", "garbled", "/", 502, "CGI"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := call(t, h, c.fn, "GET", c.path, "")
			if a.status != c.status {
				t.Fatalf("status %d (%s), want %d", a.status, a.body, c.status)
			}
			if msg := errMessage(t, a); !strings.Contains(msg, c.says) {
				t.Fatalf("message %q does not say %q", msg, c.says)
			}
		})
	}
	// Nothing of that harmed the function or the host.
	if a := call(t, h, "fn", "GET", "/still-here", ""); a.status != 200 || a.body != "hello from wasm still-here" {
		t.Fatalf("after the failures: %d %q", a.status, a.body)
	}
	if running, _ := h.Stats("default", "fn"); running != 0 {
		t.Fatalf("%d instances still running", running)
	}
}

func TestRefusesWhatCannotRun(t *testing.T) {
	h := newHost(t, Config{})
	imports := wasmtest.Hello()
	// Rename the import's module: "wasi_snapshot_preview1" → "wasi_snapshot_preview9".
	imports = []byte(strings.Replace(string(imports), "wasi_snapshot_preview1", "wasi_snapshot_preview9", 1))
	for name, c := range map[string]struct {
		mod  []byte
		says string
	}{
		"garbage":  {[]byte("#!/bin/sh\necho hi\n"), "not a WebAssembly module"},
		"truncate": {wasmtest.Hello()[:40], "invalid WebAssembly module"},
		"library":  {wasmtest.Library(), "exports no _start"},
		"imports":  {imports, "may import only wasi_snapshot_preview1"},
	} {
		t.Run(name, func(t *testing.T) {
			err := h.Apply(context.Background(), Function{
				Environment: "default", Name: name, Revision: 1, Digest: digestOf(c.mod),
				Module: func(context.Context) ([]byte, error) { return c.mod, nil },
			})
			if !v1.IsInvalid(err) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("err = %v, want Invalid saying %q", err, c.says)
			}
			if _, ok := h.Ready("default", name); ok {
				t.Fatal("a module that cannot run is ready")
			}
		})
	}
}

func TestNewRevisionReplacesOld(t *testing.T) {
	h := newHost(t, Config{})
	var told []string
	h.Watch(func(env, name string) { told = append(told, env+"/"+name) })
	apply(t, h, "fn", wasmtest.Respond("Content-Type: text/plain\n\nv1"), nil)
	apply(t, h, "fn", wasmtest.Respond("Content-Type: text/plain\n\nv2"), func(f *Function) { f.Revision = 2 })
	if a := call(t, h, "fn", "GET", "/", ""); a.body != "v2" {
		t.Fatalf("got %q, want v2", a.body)
	}
	if rev, ok := h.Ready("default", "fn"); !ok || rev != 2 {
		t.Fatalf("ready %v at revision %d, want 2", ok, rev)
	}
	h.Remove(context.Background(), "default", "fn")
	if a := call(t, h, "fn", "GET", "/", ""); a.status != 503 {
		t.Fatalf("after remove: %d %q, want 503", a.status, a.body)
	}
	if len(told) != 3 {
		t.Fatalf("watchers told %v, want three changes", told)
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	h := newHost(t, Config{CacheDir: dir})
	apply(t, h, "fn", wasmtest.Hello(), nil)
	var files int
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Fatal("the compilation cache directory is empty after a compile")
	}
	// A second host on the same directory (a restarted server) serves.
	h2 := newHost(t, Config{CacheDir: dir})
	apply(t, h2, "fn", wasmtest.Hello(), nil)
	if a := call(t, h2, "fn", "GET", "/", ""); a.body != "hello\n" {
		t.Fatalf("from the cache: %d %q", a.status, a.body)
	}
}

func TestConcurrentInstances(t *testing.T) {
	h := newHost(t, Config{})
	apply(t, h, "hello", wasmtest.Hello(), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", fmt.Sprintf("http://x/%d", i), nil)
			res, err := h.Transport("default", "hello").RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(res.Body)
			if string(b) != "hello\n" {
				errs <- errors.New(string(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkHelloInstance(b *testing.B) {
	h := newHost(b, Config{})
	apply(b, h, "hello", wasmtest.Hello(), nil)
	tr := h.Transport("default", "hello")
	b.ReportAllocs()
	for b.Loop() {
		res, err := tr.RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
		if err != nil || res.StatusCode != 200 {
			b.Fatal(err)
		}
	}
}

func BenchmarkGoInstance(b *testing.B) {
	h := newHost(b, Config{})
	apply(b, h, "fn", goHandler(b), nil)
	tr := h.Transport("default", "fn")
	for b.Loop() {
		res, err := tr.RoundTrip(httptest.NewRequest("GET", "http://x/", nil))
		if err != nil || res.StatusCode != 200 {
			b.Fatal(err)
		}
	}
}

// Instances that wait (a Go time.Sleep is WASI poll_oneoff) run side by
// side: one blocked instance holds no other back.
func TestWaitingInstancesRunTogether(t *testing.T) {
	h := newHost(t, Config{})
	apply(t, h, "fn", goHandler(t), nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if a := call(t, h, "fn", "GET", "/sleep?d=300ms", ""); a.body != "slept" {
				t.Errorf("sleep: %d %q", a.status, a.body)
			}
		})
	}
	wg.Wait()
}

// New settings of the same module share its compiled code; a request
// running on an older revision finishes on it whatever is swapped in
// meanwhile, and the code is freed only after the last revision using it.
func TestSettingsChangeUnderARunningRequest(t *testing.T) {
	h := newHost(t, Config{})
	mod := goHandler(t)
	apply(t, h, "fn", mod, func(f *Function) { f.Env = []string{"V=1"} })
	done := make(chan answer)
	go func() { done <- call(t, h, "fn", "GET", "/sleep?d=500ms", "") }()
	testutil.WaitForState(t, 10*time.Second, "the request running", func() (bool, string) {
		running, _ := h.Stats("default", "fn")
		return running == 1, fmt.Sprint(running)
	})
	apply(t, h, "fn", mod, func(f *Function) { f.Revision, f.Env = 2, []string{"V=2"} })
	apply(t, h, "fn", mod, func(f *Function) { f.Revision, f.Env = 3, []string{"V=3"} })
	if a := <-done; a.status != 200 || a.body != "slept" {
		t.Fatalf("the request on revision 1: %d %q", a.status, a.body)
	}
	if a := call(t, h, "fn", "GET", "/env?name=V", ""); a.body != "3" {
		t.Fatalf("V = %q, want 3", a.body)
	}
}

// Instances that compute for long hold their start slot for one slice
// only: more of them than there are slots all run, and another function's
// request is still answered meanwhile.
func TestLongRunningInstancesHoldNoOneBack(t *testing.T) {
	h := newHost(t, Config{})
	apply(t, h, "loop", wasmtest.Loop(), func(f *Function) { f.Timeout = time.Minute })
	apply(t, h, "hello", wasmtest.Hello(), nil)
	n := 3 * cap(h.admission.slots)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range n {
		wg.Go(func() {
			req := httptest.NewRequest("GET", "http://loop/", nil).WithContext(ctx)
			if res, err := h.Transport("default", "loop").RoundTrip(req); err == nil {
				res.Body.Close()
			}
		})
	}
	testutil.WaitForState(t, 30*time.Second, fmt.Sprintf("%d looping instances running", n), func() (bool, string) {
		running, _ := h.Stats("default", "loop")
		return running == n, fmt.Sprint(running)
	})
	if a := call(t, h, "hello", "GET", "/", ""); a.status != 200 || a.body != "hello\n" {
		t.Fatalf("beside %d looping instances: %d %q", n, a.status, a.body)
	}
}

// An instance that waits (a Go time.Sleep is WASI poll_oneoff) gives its
// start slot up at once: more sleeping instances than there are slots run
// together even when no slot would ever time out.
func TestWaitingInstancesGiveUpTheirStartSlot(t *testing.T) {
	h := newHost(t, Config{})
	h.admission.slice = time.Hour
	apply(t, h, "fn", goHandler(t), nil)
	n := 3 * cap(h.admission.slots)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range n {
		wg.Go(func() {
			req := httptest.NewRequest("GET", "http://fn/sleep?d=1m", nil).WithContext(ctx)
			if res, err := h.Transport("default", "fn").RoundTrip(req); err == nil {
				res.Body.Close()
			}
		})
	}
	testutil.WaitForState(t, 60*time.Second, fmt.Sprintf("%d sleeping instances running", n), func() (bool, string) {
		running, _ := h.Stats("default", "fn")
		return running == n, fmt.Sprint(running)
	})
}
