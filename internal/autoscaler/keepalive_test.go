package autoscaler

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func gapsOf(ds ...time.Duration) *gaps {
	g := &gaps{}
	for _, d := range ds {
		g.add(d)
	}
	return g
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestLearnedKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name              string
		gaps              []time.Duration
		userIdle          time.Duration
		idle, standbyIdle time.Duration
		learned           bool
		reason            string
	}{
		{name: "too few gaps keep the defaults", gaps: repeat(30*time.Second, 9),
			idle: DefaultIdleTimeout, standbyIdle: DefaultStandbyIdle, reason: "learning: 9 of 10"},
		{name: "short gaps keep an instance across them", gaps: repeat(30*time.Second, 12),
			idle: 33 * time.Second, standbyIdle: DefaultStandbyIdle, learned: true, reason: "99% of the last 12 gaps were under 30s"},
		{name: "very short gaps keep it at least the floor", gaps: repeat(2*time.Second, 12),
			idle: minLearnedIdle, standbyIdle: DefaultStandbyIdle, learned: true},
		{name: "long gaps go to zero at once and keep the standby past them", gaps: repeat(2*time.Hour, 12),
			idle: minLearnedIdle, standbyIdle: 4 * time.Hour, learned: true, reason: "gaps are long (median 2h0m0s"},
		{name: "mixed gaps follow the 90th percentile", gaps: append(repeat(time.Minute, 10), 3*time.Hour),
			idle: 66 * time.Second, standbyIdle: 6 * time.Hour, learned: true, reason: "90% of the last 11 gaps"},
		{name: "a set idle timeout wins", gaps: repeat(30*time.Second, 12), userIdle: 5 * time.Second,
			idle: 5 * time.Second, standbyIdle: DefaultStandbyIdle, learned: true, reason: "idle timeout set in the spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := learn(gapsOf(tc.gaps...), tc.userIdle)
			if k.IdleTimeout != tc.idle || k.StandbyIdle != tc.standbyIdle || k.Learned != tc.learned || !strings.Contains(k.Reason, tc.reason) {
				t.Errorf("learn: %+v; want idle %v, standby %v, learned %v, reason containing %q", k, tc.idle, tc.standbyIdle, tc.learned, tc.reason)
			}
		})
	}
}

func TestGapHistoryIsBounded(t *testing.T) {
	g := gapsOf(repeat(time.Hour, gapHistory)...)
	for range gapHistory {
		g.add(time.Second)
	}
	if g.n != gapHistory || g.percentile(1) != time.Second {
		t.Fatalf("after %d newer gaps of 1s: %d held, largest %v; want the old ones gone", gapHistory, g.n, g.percentile(1))
	}
}

// A function called every 30 s learns to keep its instance across the
// gaps: the autoscaler's idle timeout becomes 33 s, not the default 60 s.
func TestAutoscalerLearnsFromGaps(t *testing.T) {
	src := newSource()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	a := New(Config{Source: src, Clock: c.Now})
	a.Set("dev", "fn", Params{}, 0)
	for range 12 {
		src.set("dev", "fn", 0, 1) // one short request since the last tick
		a.tick()
		for range 150 { // 30 s of quiet ticks
			c.advance(DefaultTick)
			a.tick()
		}
	}
	st, _ := a.Status("dev", "fn")
	if !st.KeepAlive.Learned || st.Params.IdleTimeout != 33*time.Second || st.KeepAlive.Gaps < 10 {
		t.Fatalf("status %+v: want the idle timeout learned from 30 s gaps (33s)", st.KeepAlive)
	}

	// A set idle timeout wins over what was learned.
	a.Set("dev", "fn", Params{IdleTimeout: 5 * time.Second}, 0)
	if st, _ := a.Status("dev", "fn"); st.Params.IdleTimeout != 5*time.Second || !st.KeepAlive.UserIdleTimeout {
		t.Fatalf("status %+v: want the spec's 5s", st.KeepAlive)
	}
}

// A function idle at zero for longer than its keep-alive gives its
// standby back (the controller is told), and the next request wants one
// again.
func TestIdleFunctionGivesItsStandbyBack(t *testing.T) {
	src := newSource()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	var changes atomic.Int32
	a := New(Config{Source: src, Clock: c.Now, OnChange: func(string, string, int) { changes.Add(1) }})
	a.Set("dev", "fn", Params{}, 0)
	if !a.WantsStandby("dev", "fn") {
		t.Fatal("a new function wants no standby")
	}
	// One request, then silence: to zero after the idle timeout.
	a.Demand("dev", "fn")
	src.set("dev", "fn", 0, 1)
	a.tick()
	c.advance(DefaultIdleTimeout + time.Second)
	a.tick()
	if a.Desired("dev", "fn") != 0 {
		t.Fatal("not at zero after the idle timeout")
	}
	changes.Store(0)
	c.advance(DefaultStandbyIdle - DefaultIdleTimeout - 2*time.Second)
	a.tick()
	if !a.WantsStandby("dev", "fn") || changes.Load() != 0 {
		t.Fatalf("standby given back before %v idle", DefaultStandbyIdle)
	}
	c.advance(2 * time.Second)
	a.tick()
	if a.WantsStandby("dev", "fn") || changes.Load() != 1 {
		t.Fatalf("after %v idle: wants standby %v, %d changes told; want it given back, and told once", DefaultStandbyIdle, a.WantsStandby("dev", "fn"), changes.Load())
	}
	a.Demand("dev", "fn")
	if !a.WantsStandby("dev", "fn") || a.Desired("dev", "fn") != 1 {
		t.Fatal("a request did not bring the standby back")
	}
	if st, _ := a.Status("dev", "fn"); st.KeepAlive.Gaps != 1 {
		t.Fatalf("the hour of silence was not recorded as a gap: %+v", st.KeepAlive)
	}
}

// Over the node's cap, the functions least recently active give their
// standbys back; a request brings one back (taking it from the next
// least recent).
func TestStandbysAreCapped(t *testing.T) {
	src := newSource()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	a := New(Config{Source: src, Clock: c.Now, MaxStandbys: 2})
	for _, name := range []string{"a", "b", "c"} {
		a.Set("dev", name, Params{IdleTimeout: time.Second}, 0)
		c.advance(time.Second)
	}
	a.tick()
	if a.WantsStandby("dev", "a") || !a.WantsStandby("dev", "b") || !a.WantsStandby("dev", "c") {
		t.Fatalf("standbys a=%v b=%v c=%v; want the least recent (a) without one", a.WantsStandby("dev", "a"), a.WantsStandby("dev", "b"), a.WantsStandby("dev", "c"))
	}
	// A request to a: it is the most recent now; b is the least.
	c.advance(time.Second)
	a.Demand("dev", "a")
	src.set("dev", "a", 0, 1)
	a.tick()
	if !a.WantsStandby("dev", "a") || a.WantsStandby("dev", "b") || !a.WantsStandby("dev", "c") {
		t.Fatalf("after a request to a: standbys a=%v b=%v c=%v; want b without one", a.WantsStandby("dev", "a"), a.WantsStandby("dev", "b"), a.WantsStandby("dev", "c"))
	}
}

// After a burst scaled a function out and back to zero, it keeps as many
// standbys as the burst wanted instances, so the next burst wakes them all
// at once; past the standby keep-alive it gives them all back.
func TestStandbysFollowTheRecentPeak(t *testing.T) {
	src := newSource()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	a := New(Config{Source: src, Clock: c.Now})
	a.Set("dev", "fn", Params{Concurrency: 1, Max: 20}, 0)
	if n := a.Standbys("dev", "fn"); n != 1 {
		t.Fatalf("a new function keeps %d standbys, want 1", n)
	}
	a.Demand("dev", "fn")
	src.set("dev", "fn", 4, 4)
	a.tick()
	peak := a.Desired("dev", "fn")
	if peak < 4 {
		t.Fatalf("the burst wanted %d instances, want at least 4", peak)
	}
	if n := a.Standbys("dev", "fn"); n != 1 {
		t.Fatalf("at its peak it keeps %d standbys, want 1 beside what runs", n)
	}
	src.set("dev", "fn", 0, 0)
	c.advance(DefaultIdleTimeout + time.Second)
	a.tick()
	if a.Desired("dev", "fn") != 0 {
		t.Fatal("not at zero after the idle timeout")
	}
	if n := a.Standbys("dev", "fn"); n != min(peak, MaxStandbysPerFunction) {
		t.Fatalf("back at zero after a burst of %d it keeps %d standbys, want %d", peak, n, min(peak, MaxStandbysPerFunction))
	}
	c.advance(DefaultStandbyIdle)
	a.tick()
	if n := a.Standbys("dev", "fn"); n != 0 {
		t.Fatalf("idle past the standby keep-alive it keeps %d standbys, want 0", n)
	}
	a.Demand("dev", "fn")
	if n := a.Standbys("dev", "fn"); n != 1 {
		t.Fatalf("after a long idle a request brings back %d standbys, want 1 (the old peak forgotten)", n)
	}
}

// The gaps a server learned are handed to the next one: a function
// registered after a restart keeps its learned keep-alive.
func TestGapsSurviveARestart(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	a := New(Config{Source: newSource(), Clock: c.Now})
	a.Set("dev", "fn", Params{}, 0)
	for range minGaps + 2 {
		c.advance(30 * time.Second)
		a.Demand("dev", "fn")
	}
	before, _ := a.Status("dev", "fn")
	if !before.KeepAlive.Learned {
		t.Fatalf("after %d gaps nothing learned: %+v", minGaps+2, before.KeepAlive)
	}
	saved := a.Gaps()
	if len(saved["dev/fn"]) != minGaps+1 {
		t.Fatalf("saved gaps %v, want the %d recorded", saved, minGaps+1)
	}

	b := New(Config{Source: newSource(), Clock: c.Now})
	b.RestoreGaps(saved)
	b.Set("dev", "fn", Params{}, 0)
	after, _ := b.Status("dev", "fn")
	if after.KeepAlive.IdleTimeout != before.KeepAlive.IdleTimeout || !after.KeepAlive.Learned || after.KeepAlive.Gaps != before.KeepAlive.Gaps {
		t.Fatalf("after a restart the keep-alive is %+v, want what was learned: %+v", after.KeepAlive, before.KeepAlive)
	}
	if got := b.Gaps()["dev/fn"]; !slices.Equal(got, saved["dev/fn"]) {
		t.Fatalf("gaps after the restart %v, want %v in order", got, saved["dev/fn"])
	}
}
