package activator

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
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
	for deadline := time.Now().Add(5 * time.Second); demands.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no demand signalled")
		}
	}
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
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if held, _, _ := a.Stats("default", "fn"); held == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first request not held")
		}
	}
	if err := a.Activate(ctx, "default", "fn"); v1.KindOf(err) != v1.ErrTooManyRequests {
		t.Fatalf("want TooManyRequests past the hold limit, got %v", err)
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
