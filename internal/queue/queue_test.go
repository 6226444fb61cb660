package queue

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

func TestAsyncRetriesThenSucceeds(t *testing.T) {
	inv := newFake()
	inv.failFirst["flaky"] = 2
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q, Function{Environment: "dev", Name: "flaky", Timeout: 5 * time.Second, MaxRetries: 3, Backoff: 20 * time.Millisecond})

	ctx := context.Background()
	id, err := q.Enqueue(ctx, "dev", "flaky", []byte("hello"), http.Header{"X-Custom": {"yes"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 26 {
		t.Errorf("id %q: want 26 characters", id)
	}
	got := waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 20*time.Second)
	if got.Attempts != 3 || got.StatusCode != 200 || got.Body != "ok:hello" || got.Source != "async" || got.Finished.IsZero() || got.Error != "" {
		t.Errorf("invocation = %+v; want Succeeded after 3 attempts with the response body", got)
	}

	calls := inv.callsOf(id)
	if len(calls) != 3 {
		t.Fatalf("%d calls; want 3", len(calls))
	}
	for i, c := range calls {
		if a := c.header.Get(HeaderAttempt); a != strconv.Itoa(i+1) {
			t.Errorf("call %d: %s = %q", i+1, HeaderAttempt, a)
		}
		if c.header.Get("X-Custom") != "yes" || c.body != "hello" {
			t.Errorf("call %d lost the request: body %q header %v", i+1, c.body, c.header)
		}
	}
	// Backoff doubles: at least 20 ms before the 2nd attempt, 40 ms before the 3rd.
	if d := calls[1].at.Sub(calls[0].at); d < 20*time.Millisecond {
		t.Errorf("2nd attempt %s after the 1st; want ≥ 20ms", d)
	}
	if d := calls[2].at.Sub(calls[1].at); d < 40*time.Millisecond {
		t.Errorf("3rd attempt %s after the 2nd; want ≥ 40ms", d)
	}
	testutil.WaitFor(t, 5*time.Second, "depth 0", func() bool { return q.Depth("dev", "flaky") == 0 })
}

func TestDeadLetterReachesSubscriber(t *testing.T) {
	inv := newFake()
	inv.failFirst["broken"] = -1
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q,
		Function{Environment: "dev", Name: "broken", MaxRetries: 1, Backoff: 10 * time.Millisecond, DeadLetterTopic: "dead"},
		Function{Environment: "dev", Name: "janitor", Topics: []string{"dead"}},
	)
	id, err := q.Enqueue(context.Background(), "dev", "broken", []byte("payload"), http.Header{"X-Custom": {"1"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, q, "dev", id, v1.InvocationFailed, 20*time.Second)
	if got.Attempts != 2 || got.StatusCode != 500 || got.Error == "" || got.Finished.IsZero() {
		t.Errorf("invocation = %+v; want Failed after 2 attempts with the error", got)
	}

	var dl call
	testutil.WaitFor(t, 20*time.Second, "the dead letter at janitor", func() bool {
		calls := inv.callsFor("dev", "janitor")
		if len(calls) > 0 {
			dl = calls[0]
		}
		return len(calls) > 0
	})
	h := dl.header
	if dl.body != "payload" || h.Get("X-Custom") != "1" {
		t.Errorf("dead letter lost the original request: body %q header %v", dl.body, h)
	}
	if h.Get(HeaderFunction) != "broken" || h.Get(HeaderFailedInvocationID) != id || !strings.Contains(h.Get(HeaderError), "500") {
		t.Errorf("dead letter headers = %v", h)
	}
	if h.Get(HeaderSource) != "topic:dead" {
		t.Errorf("%s = %q; want topic:dead", HeaderSource, h.Get(HeaderSource))
	}
	// The subscriber's delivery is an invocation of its own.
	own := h.Get(HeaderInvocationID)
	if own == id {
		t.Fatalf("the subscriber's invocation id is the failed one's")
	}
	j := waitStatus(t, q, "dev", own, v1.InvocationSucceeded, 10*time.Second)
	if j.Function != "janitor" || j.Source != "topic:dead" {
		t.Errorf("subscriber invocation = %+v", j)
	}
}

func TestPublishFansOutOncePerFunction(t *testing.T) {
	inv := newFake()
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q,
		Function{Environment: "dev", Name: "a", Topics: []string{"orders"}},
		Function{Environment: "dev", Name: "b", Topics: []string{"orders", "orders"}},
		Function{Environment: "dev", Name: "c", Topics: []string{"other"}},
		Function{Environment: "prod", Name: "a", Topics: []string{"orders"}},
	)
	ctx := context.Background()
	var bodies []string
	for i := range 5 {
		body := "order-" + strconv.Itoa(i)
		bodies = append(bodies, body)
		if _, err := q.Publish(ctx, "dev", "orders", []byte(body), http.Header{"X-Order": {body}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, fn := range []string{"a", "b"} {
		testutil.WaitFor(t, 20*time.Second, fn+" to get 5 messages", func() bool { return len(inv.callsFor("dev", fn)) >= 5 })
		testutil.WaitFor(t, 10*time.Second, fn+" depth 0", func() bool { return q.Depth("dev", fn) == 0 })
		var got []string
		for _, c := range inv.callsFor("dev", fn) {
			got = append(got, c.body)
			if c.header.Get("X-Order") != c.body || c.header.Get(HeaderSource) != "topic:orders" {
				t.Errorf("%s: delivery headers %v", fn, c.header)
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, bodies) {
			t.Errorf("%s got %v; want each of %v once", fn, got, bodies)
		}
	}
	if n := len(inv.callsFor("dev", "c")) + len(inv.callsFor("prod", "a")); n != 0 {
		t.Errorf("%d deliveries to functions not subscribed to dev/orders", n)
	}
}

func TestLimitsAndNotFound(t *testing.T) {
	q := openQueue(t, t.TempDir(), newFake(), func(c *Config) { c.MaxPayload = 1024 })
	mustSet(t, q, Function{Environment: "dev", Name: "fn"})
	ctx := context.Background()

	_, err := q.Enqueue(ctx, "dev", "fn", make([]byte, 1025), nil, "")
	if v1.KindOf(err) != v1.ErrTooLarge || !strings.Contains(err.Error(), "1024") {
		t.Errorf("Enqueue of 1025 bytes: %v (kind %s); want TooLarge naming the 1024 limit", err, v1.KindOf(err))
	}
	_, err = q.Publish(ctx, "dev", "t", make([]byte, 1025), nil)
	if v1.KindOf(err) != v1.ErrTooLarge {
		t.Errorf("Publish of 1025 bytes: %v; want TooLarge", err)
	}
	if _, err := q.Enqueue(ctx, "dev", "nope", nil, nil, ""); !v1.IsNotFound(err) {
		t.Errorf("Enqueue to an unknown function: %v; want NotFound", err)
	}
	if _, err := q.Enqueue(ctx, "dev", "fn", nil, nil, "ftp://x"); !v1.IsInvalid(err) {
		t.Errorf("Enqueue with a bad callback URL: %v; want Invalid", err)
	}
	for _, id := range []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV", "../../etc", "*", ""} {
		if _, err := q.Get(ctx, "dev", id); !v1.IsNotFound(err) {
			t.Errorf("Get(%q): %v; want NotFound", id, err)
		}
	}
	id, err := q.Enqueue(ctx, "dev", "fn", make([]byte, 1024), nil, "")
	if err != nil {
		t.Fatalf("Enqueue at the limit: %v", err)
	}
	if _, err := q.Get(ctx, "prod", id); !v1.IsNotFound(err) {
		t.Errorf("Get from another environment: %v; want NotFound", err)
	}
	waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 10*time.Second)
}

func TestCallbackPostsResult(t *testing.T) {
	var mu sync.Mutex
	var posts []v1.Invocation
	var failing int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var inv v1.Invocation
		if err := json.Unmarshal(b, &inv); err != nil || r.Method != http.MethodPost {
			t.Errorf("callback %s %q: %v", r.Method, b, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/fail" {
			failing++
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		posts = append(posts, inv)
	}))
	defer srv.Close()

	inv := newFake()
	inv.failFirst["bad"] = -1
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q,
		Function{Environment: "dev", Name: "fn"},
		Function{Environment: "dev", Name: "bad", MaxRetries: 0},
	)
	ctx := context.Background()
	ok, err := q.Enqueue(ctx, "dev", "fn", []byte("in"), nil, srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := q.Enqueue(ctx, "dev", "bad", []byte("in"), nil, srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	unlucky, err := q.Enqueue(ctx, "dev", "fn", []byte("in"), nil, srv.URL+"/fail")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "two callbacks and three tries of the failing one", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posts) == 2 && failing == 3
	})
	mu.Lock()
	byID := map[string]v1.Invocation{}
	for _, p := range posts {
		byID[p.ID] = p
	}
	mu.Unlock()
	if p := byID[ok]; p.Status != v1.InvocationSucceeded || p.Body != "ok:in" || p.StatusCode != 200 {
		t.Errorf("success callback = %+v", p)
	}
	if p := byID[bad]; p.Status != v1.InvocationFailed || p.Attempts != 1 || p.Error == "" {
		t.Errorf("failure callback = %+v", p)
	}
	// A callback that fails does not change the invocation.
	if got, _ := q.Get(ctx, "dev", unlucky); got.Status != v1.InvocationSucceeded {
		t.Errorf("invocation with a failing callback = %+v; want Succeeded", got)
	}
}

func TestRemovedFunctionKeepsPendingInvocations(t *testing.T) {
	inv := newFake()
	gate := make(chan struct{})
	inv.gate["gated"] = gate
	q := openQueue(t, t.TempDir(), inv, nil)
	f := Function{Environment: "dev", Name: "gated", Timeout: 10 * time.Second}
	mustSet(t, q, f)
	ctx := context.Background()
	var ids []string
	for range 12 {
		id, err := q.Enqueue(ctx, "dev", "gated", []byte("x"), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	testutil.WaitFor(t, 10*time.Second, "8 calls in flight", func() bool { return len(inv.callsFor("dev", "gated")) == inFlightPerFunction })
	mustSet(t, q) // removes it
	if _, err := q.Enqueue(ctx, "dev", "gated", nil, nil, ""); !v1.IsNotFound(err) {
		t.Errorf("Enqueue to a removed function: %v; want NotFound", err)
	}
	close(gate) // the calls in flight finish and are recorded
	testutil.WaitFor(t, 10*time.Second, "8 finished, 4 pending", func() bool {
		succeeded := 0
		for _, id := range ids {
			if got, _ := q.Get(ctx, "dev", id); got.Status == v1.InvocationSucceeded {
				succeeded++
			}
		}
		return succeeded == inFlightPerFunction && q.Depth("dev", "gated") == 4
	})
	mustSet(t, q, f)
	for _, id := range ids {
		waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 20*time.Second)
	}
	if n := len(inv.callsFor("dev", "gated")); n != 12 {
		t.Errorf("%d calls; want 12, one per invocation", n)
	}
}

func TestEnqueueLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measures fsync latency")
	}
	q := openQueue(t, t.TempDir(), newFake(), nil)
	mustSet(t, q, Function{Environment: "dev", Name: "fn"})
	ctx := context.Background()
	const n = 300
	lat := make([]time.Duration, 0, n)
	body := make([]byte, 256)
	for range n {
		start := time.Now()
		if _, err := q.Enqueue(ctx, "dev", "fn", body, http.Header{"Content-Type": {"application/json"}}, ""); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("enqueue latency over %d (fsync on, workers running): p50 %s p99 %s max %s",
		n, lat[n/2], lat[n*99/100], lat[n-1])
	testutil.WaitFor(t, 30*time.Second, "every invocation to finish", func() bool { return q.Depth("dev", "fn") == 0 })
}

func TestGracefulRestartKeepsPendingAndResults(t *testing.T) {
	dir := t.TempDir()
	f := Function{Environment: "dev", Name: "fn", Timeout: time.Minute}
	ctx := context.Background()

	first := newFake()
	q := openQueue(t, dir, first, nil)
	mustSet(t, q, f)
	done, err := q.Enqueue(ctx, "dev", "fn", []byte("a"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, q, "dev", done, v1.InvocationSucceeded, 10*time.Second)
	first.mu.Lock()
	first.block = true
	first.mu.Unlock()
	held, err := q.Enqueue(ctx, "dev", "fn", []byte("b"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the second call in flight", func() bool { return len(first.callsOf(held)) == 1 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	second := newFake()
	q = openQueue(t, dir, second, nil)
	if got, err := q.Get(ctx, "dev", done); err != nil || got.Status != v1.InvocationSucceeded || got.Body != "ok:a" {
		t.Errorf("finished invocation after restart = %+v, %v", got, err)
	}
	if got, err := q.Get(ctx, "dev", held); err != nil || got.Status != v1.InvocationPending || got.Attempts != 0 {
		t.Errorf("interrupted invocation after restart = %+v, %v; want Pending with the cut attempt not counted", got, err)
	}
	mustSet(t, q, f)
	got := waitStatus(t, q, "dev", held, v1.InvocationSucceeded, 10*time.Second)
	if got.Attempts != 1 || got.Body != "ok:b" {
		t.Errorf("resumed invocation = %+v", got)
	}
}

func TestDefaultLimitAcceptsOneMiB(t *testing.T) {
	q := openQueue(t, t.TempDir(), newFake(), nil)
	mustSet(t, q, Function{Environment: "dev", Name: "fn"})
	ctx := context.Background()
	body := []byte(strings.Repeat("x", 1<<20))
	id, err := q.Enqueue(ctx, "dev", "fn", body, http.Header{"X-A": {"b"}}, "")
	if err != nil {
		t.Fatalf("Enqueue of 1 MiB: %v", err)
	}
	got := waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 10*time.Second)
	if len(got.Body) != maxStoredBody {
		t.Errorf("stored response body is %d bytes; want it capped at %d", len(got.Body), maxStoredBody)
	}
	if _, err := q.Publish(ctx, "dev", "t", body, nil); err != nil {
		t.Errorf("Publish of 1 MiB: %v", err)
	}
	if _, err := q.Enqueue(ctx, "dev", "fn", append(body, 'x'), nil, ""); v1.KindOf(err) != v1.ErrTooLarge {
		t.Errorf("Enqueue of 1 MiB + 1: %v; want TooLarge", err)
	}
}
