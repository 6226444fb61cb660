package queue

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// call is one Invoke the fake saw.
type call struct {
	env, fn string
	body    string
	header  http.Header
	at      time.Time
}

// fakeInvoker behaves like a function behind the gateway: it answers 200
// with "ok:"+body, or fails as configured, and remembers every call.
type fakeInvoker struct {
	mu    sync.Mutex
	calls []call
	// failFirst[fn] is how many attempts of each invocation of fn fail
	// (HTTP 500) before one succeeds; -1 fails every attempt.
	failFirst map[string]int
	// gate, when set for fn, holds each call until the channel is closed
	// (or the context ends).
	gate map[string]chan struct{}
	// block holds every call until its context ends, like a function that
	// never answers.
	block bool
}

func newFake() *fakeInvoker {
	return &fakeInvoker{failFirst: map[string]int{}, gate: map[string]chan struct{}{}}
}

func (f *fakeInvoker) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{env: env, fn: fn, body: string(body), header: header.Clone(), at: time.Now()})
	fail := f.failFirst[fn]
	gate := f.gate[fn]
	block := f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return 0, nil, nil, ctx.Err()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, nil, nil, ctx.Err()
		}
	}
	attempt, _ := strconv.Atoi(header.Get(HeaderAttempt))
	if fail < 0 || attempt <= fail {
		return http.StatusInternalServerError, nil, []byte("boom"), nil
	}
	return http.StatusOK, http.Header{"Content-Type": {"text/plain"}}, []byte("ok:" + string(body)), nil
}

// callsFor returns the calls of env/fn, in order.
func (f *fakeInvoker) callsFor(env, fn string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.env == env && c.fn == fn {
			out = append(out, c)
		}
	}
	return out
}

// callsOf returns the calls that carried invocation id.
func (f *fakeInvoker) callsOf(id string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.header.Get(HeaderInvocationID) == id {
			out = append(out, c)
		}
	}
	return out
}

// fakeClock is a settable clock for cron and timestamps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openQueue opens a queue on dir and closes it when the test ends.
func openQueue(t testing.TB, dir string, inv Invoker, mutate func(*Config)) *Queue {
	t.Helper()
	cfg := Config{Dir: dir, Invoker: inv, Logger: testLogger(t), Egress: anyURL{}, CallbackAttempts: 3, CallbackBackoff: 10 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// waitStatus waits for invocation id to reach status and returns it.
func waitStatus(t testing.TB, q *Queue, env, id, status string, timeout time.Duration) v1.Invocation {
	t.Helper()
	return testutil.WaitForValue(t, timeout, fmt.Sprintf("invocation %s to be %s", id, status), func() (v1.Invocation, bool) {
		inv, err := q.Get(context.Background(), env, id)
		return inv, err == nil && inv.Status == status
	})
}

func mustSet(t testing.TB, q *Queue, fns ...Function) {
	t.Helper()
	if err := q.SetFunctions(fns); err != nil {
		t.Fatalf("SetFunctions: %v", err)
	}
}

// anyURL is an egress that lets callbacks go anywhere: the queue's own
// tests post to loopback. The policy itself is package egress's, and the
// tests with it are marked so.
type anyURL struct{}

func (anyURL) Client(string) *http.Client    { return http.DefaultClient }
func (anyURL) CheckURL(string, string) error { return nil }
