package activator

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/testutil"
)

type nullTable struct{}

func (nullTable) SetTargets([]gateway.Target) {}

// instances is what a backend reports of functions' instances.
type instances struct {
	mu sync.Mutex
	m  map[string][]v1.InstanceStatus
}

func (i *instances) set(env, name string, l ...v1.InstanceStatus) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.m == nil {
		i.m = map[string][]v1.InstanceStatus{}
	}
	i.m[env+"/"+name] = l
}

func (i *instances) get(env, name string) []v1.InstanceStatus {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.m[env+"/"+name]
}

func setup(t *testing.T, maxHeld int) (*Activator, *instances, *atomic.Int64) {
	t.Helper()
	s := &instances{}
	var demands atomic.Int64
	a := New(Config{Table: nullTable{}, Instances: s.get, MaxHeld: maxHeld, Demand: func(env, name string) { demands.Add(1) }})
	a.SetTargets([]gateway.Target{
		{Environment: "default", Name: "fn", Kind: v1.KindFunction},
		{Environment: "default", Name: "svc", Kind: v1.KindService},
	})
	return a, s, &demands
}

func TestServicesAreNotWoken(t *testing.T) {
	a, _, demands := setup(t, 0)
	if err := a.Activate(context.Background(), "default", "svc"); v1.KindOf(err) != v1.ErrUnavailable {
		t.Fatalf("want Unavailable for a service without instances, got %v", err)
	}
	if demands.Load() != 0 {
		t.Fatal("a service should not signal demand")
	}
}

func TestHeldRequestIsReleasedWhenAnEndpointIsReady(t *testing.T) {
	a, _, demands := setup(t, 0)
	done := make(chan error, 1)
	go func() { done <- a.Activate(context.Background(), "default", "fn") }()
	testutil.WaitFor(t, 5*time.Second, "a demand signal", func() bool { return demands.Load() != 0 })
	select {
	case err := <-done:
		t.Fatalf("released before any endpoint was ready: %v", err)
	default:
	}
	a.SetTargets([]gateway.Target{{Environment: "default", Name: "fn", Kind: v1.KindFunction,
		Endpoints: []gateway.Endpoint{{ID: "default.fn-1", Address: "10.0.0.1:8080"}}}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not released after the endpoint became ready")
	}
	if _, cold, last := a.Stats("default", "fn"); cold != 1 || last == nil {
		t.Fatalf("cold starts %d, last %v", cold, last)
	}
}

func TestFullHoldQueueIsRefused(t *testing.T) {
	a, _, _ := setup(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Activate(ctx, "default", "fn")
	testutil.WaitFor(t, 5*time.Second, "the first request to be held", func() bool {
		held, _, _ := a.Stats("default", "fn")
		return held == 1
	})
	if err := a.Activate(ctx, "default", "fn"); v1.KindOf(err) != v1.ErrTooManyRequests {
		t.Fatalf("want TooManyRequests past the hold limit, got %v", err)
	}
}

// Through the real gateway, a request past the hold limit is answered 429
// TooManyRequests with Retry-After, while the held one still waits.
func TestFullHoldQueueAnswers429(t *testing.T) {
	gw := gateway.New(gateway.Config{})
	a := New(Config{Table: gw, Instances: (&instances{}).get, MaxHeld: 1, Demand: func(env, name string) {}})
	gw.SetActivator(a)
	a.SetTargets([]gateway.Target{{Environment: "dev", Name: "fn", Kind: v1.KindFunction}})
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)
	get := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
		req.Host = "fn.dev.berth.localhost"
		return http.DefaultClient.Do(req)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if res, err := get(ctx); err == nil {
			res.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if held, _, _ := a.Stats("dev", "fn"); held == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first request not held")
		}
	}
	res, err := get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body v1.Status
	json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != http.StatusTooManyRequests || body.Error.Kind != v1.ErrTooManyRequests {
		t.Fatalf("past the hold limit: %d %+v, want 429 TooManyRequests", res.StatusCode, body.Error)
	}
	if res.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if strings.Contains(body.Error.Message, "could not be started") {
		t.Errorf("message %q says the function could not start; it is starting, just busy", body.Error.Message)
	}
}

func TestCrashBeforeReadyIsABadGateway(t *testing.T) {
	a, s, _ := setup(t, 0)
	s.set("default", "fn", v1.InstanceStatus{Name: "fn-abcde", Revision: 1, Phase: v1.PhaseBackoff, Restarts: 1,
		LastExit: &v1.ExitInfo{Code: 3, Reason: "Error", At: time.Now()}})
	err := a.Activate(context.Background(), "default", "fn")
	if v1.KindOf(err) != v1.ErrBadGateway {
		t.Fatalf("want BadGateway, got %v", err)
	}
}

// The function's timeout comes with the routing table and bounds the wait.
func TestWaitIsBoundedByTheFunctionsTimeout(t *testing.T) {
	a, _, _ := setup(t, 0)
	a.SetTargets([]gateway.Target{{Environment: "default", Name: "fn", Kind: v1.KindFunction, Timeout: 100 * time.Millisecond}})
	done := make(chan error, 1)
	go func() { done <- a.Activate(context.Background(), "default", "fn") }()
	select {
	case err := <-done:
		if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "100ms") {
			t.Fatalf("want Unavailable naming the 100ms timeout, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait outlived the function's timeout")
	}
	if held, _, _ := a.Stats("default", "fn"); held != 0 {
		t.Fatalf("%d requests still held after the timeout", held)
	}
}
