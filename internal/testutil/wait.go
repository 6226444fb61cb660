package testutil

import (
	"context"
	"testing"
	"time"

	"berth.dev/berth/internal/backoff"
)

// pollEvery spaces the checks of a wait: quick at first, for what is
// nearly there, then no more often than a server under test should be
// asked.
var pollEvery = backoff.Backoff{Base: time.Millisecond, Max: 50 * time.Millisecond}

// WaitFor polls cond until it holds and fails t if it still does not after
// timeout: how a test waits for something that happens in its own time,
// instead of sleeping and hoping.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, ok := poll(timeout, func() (struct{}, bool) { return struct{}{}, cond() }); !ok {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// WaitForState is WaitFor for a cond that also says what it saw: a timeout
// then reports the last state, which is what one needs to see why.
func WaitForState(t testing.TB, timeout time.Duration, what string, cond func() (done bool, state string)) {
	t.Helper()
	state, ok := poll(timeout, func() (string, bool) {
		done, state := cond()
		return state, done
	})
	if !ok {
		t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
	}
}

// WaitForValue polls get until it says ok and returns what it got. A
// timeout fails t and shows the last value.
func WaitForValue[T any](t testing.TB, timeout time.Duration, what string, get func() (value T, ok bool)) T {
	t.Helper()
	v, ok := poll(timeout, get)
	if !ok {
		t.Fatalf("timed out after %v waiting for %s; last value: %+v", timeout, what, v)
	}
	return v
}

// poll calls get until it says ok or, past timeout, returns its last
// answer with ok false. get is asked at least once, and once more after
// the deadline, so a slow check is never cut short by its own slowness.
func poll[T any](timeout time.Duration, get func() (T, bool)) (T, bool) {
	deadline := time.Now().Add(timeout)
	every := pollEvery
	for {
		v, ok := get()
		if ok || time.Now().After(deadline) {
			return v, ok
		}
		every.Sleep(context.Background(), min(every.Next(), time.Until(deadline)+time.Millisecond))
	}
}
