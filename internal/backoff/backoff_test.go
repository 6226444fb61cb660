package backoff_test

import (
	"context"
	"math"
	"testing"
	"time"

	"berth.dev/berth/internal/backoff"
)

func TestDelay(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name      string
		base, max time.Duration
		n         int
		want      time.Duration
	}{
		{"first is base", 100 * ms, 5 * time.Second, 0, 100 * ms},
		{"doubles", 100 * ms, 5 * time.Second, 3, 800 * ms},
		{"stops at max", 100 * ms, 5 * time.Second, 6, 5 * time.Second},
		{"stays at max", 100 * ms, 5 * time.Second, 1000, 5 * time.Second},
		{"max below base bounds base", time.Second, 500 * ms, 0, 500 * ms},
		{"no max doubles on", time.Second, 0, 10, 1024 * time.Second},
		{"no max saturates instead of overflowing", time.Second, 0, 200, math.MaxInt64},
		{"negative n is the first", time.Second, 0, -3, time.Second},
		{"zero base never waits", 0, time.Second, 5, 0},
	} {
		b := backoff.Backoff{Base: c.base, Max: c.max}
		if got := b.Delay(c.n); got != c.want {
			t.Errorf("%s: Delay(%d) of base %s max %s = %s, want %s", c.name, c.n, c.base, c.max, got, c.want)
		}
	}
}

func TestNextDoublesUntilReset(t *testing.T) {
	b := backoff.Backoff{Base: 500 * time.Millisecond, Max: 3 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 500 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}

func TestJitterShortensWithinItsFraction(t *testing.T) {
	b := backoff.Backoff{Base: time.Second, Max: time.Second, Jitter: 0.25}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := b.Next()
		if d > time.Second || d < 750*time.Millisecond {
			t.Fatalf("jittered delay %s outside [750ms, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Fatalf("200 jittered delays were all %v", seen)
	}
}

func TestWaitUsesTheTimerAndCounts(t *testing.T) {
	var asked []time.Duration
	fire := func(d time.Duration) <-chan time.Time {
		asked = append(asked, d)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	b := backoff.Backoff{Base: time.Hour, Max: 4 * time.Hour, After: fire}
	for range 3 {
		if !b.Wait(t.Context()) {
			t.Fatal("Wait returned false with a live context and a timer that fired")
		}
	}
	if len(asked) != 3 || asked[0] != time.Hour || asked[1] != 2*time.Hour || asked[2] != 4*time.Hour {
		t.Fatalf("timer asked for %v, want [1h 2h 4h]", asked)
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	never := func(time.Duration) <-chan time.Time { return nil }
	b := backoff.Backoff{Base: time.Hour, After: never}

	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if b.Wait(ended) {
		t.Fatal("Wait on an ended context returned true")
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan bool)
	go func() { done <- b.Wait(ctx) }()
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("Wait cancelled mid-way returned true")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when its context ended")
	}
}

func TestSleepOnARealTimer(t *testing.T) {
	var b backoff.Backoff
	if !b.Sleep(t.Context(), time.Millisecond) {
		t.Fatal("Sleep of 1ms on a live context returned false")
	}
}
