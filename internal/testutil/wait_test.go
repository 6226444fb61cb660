package testutil_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

// recorder is a testing.TB that records a Fatalf instead of ending the
// test, so the failure of a wait can itself be tested.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

// run runs f against a recorder and returns the failure it reported, if
// any.
func run(t *testing.T, f func(tb testing.TB)) (failure string) {
	r := &recorder{TB: t}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		failure = r.failed
	}()
	f(r)
	return ""
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	if failure := run(t, func(tb testing.TB) {
		testutil.WaitFor(tb, 10*time.Second, "three calls", func() bool { return calls.Add(1) >= 3 })
	}); failure != "" {
		t.Fatal(failure)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("condition asked %d times, want 3 (it held on the third)", n)
	}
}

func TestWaitForFailsAfterTheTimeoutNamingWhat(t *testing.T) {
	var calls atomic.Int32
	failure := run(t, func(tb testing.TB) {
		testutil.WaitFor(tb, 20*time.Millisecond, "the impossible", func() bool { calls.Add(1); return false })
	})
	if !strings.Contains(failure, "waiting for the impossible") {
		t.Errorf("failure %q does not say what was awaited", failure)
	}
	if calls.Load() < 2 {
		t.Errorf("condition asked %d times in 20ms; want it asked again past the deadline", calls.Load())
	}
}

func TestWaitForStateReportsTheLastState(t *testing.T) {
	n := 0
	failure := run(t, func(tb testing.TB) {
		testutil.WaitForState(tb, 20*time.Millisecond, "ready replicas", func() (bool, string) {
			n++
			return false, fmt.Sprintf("%d checks", n)
		})
	})
	if want := fmt.Sprintf("last state: %d checks", n); !strings.Contains(failure, want) {
		t.Errorf("failure %q, want it to end with %q", failure, want)
	}
}

func TestWaitForValueReturnsTheValueThatHeld(t *testing.T) {
	n := 0
	var got int
	if failure := run(t, func(tb testing.TB) {
		got = testutil.WaitForValue(tb, 10*time.Second, "n to reach 5", func() (int, bool) { n++; return n, n == 5 })
	}); failure != "" {
		t.Fatal(failure)
	}
	if got != 5 {
		t.Errorf("WaitForValue = %d, want 5", got)
	}
	failure := run(t, func(tb testing.TB) {
		testutil.WaitForValue(tb, 10*time.Millisecond, "a record", func() (struct{ Status string }, bool) {
			return struct{ Status string }{"Pending"}, false
		})
	})
	if !strings.Contains(failure, "last value: {Status:Pending}") {
		t.Errorf("failure %q does not show the last value", failure)
	}
}
