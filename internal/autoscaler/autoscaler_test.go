package autoscaler

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// source is a gateway stand-in: in-flight and request counts set by the
// test, and instances that are ready as soon as OnChange asks for them.
type source struct {
	mu       sync.Mutex
	inFlight map[key]int
	requests map[key]int64
	ready    map[key]int
}

func newSource() *source {
	return &source{inFlight: map[key]int{}, requests: map[key]int64{}, ready: map[key]int{}}
}

func (s *source) set(env, name string, inFlight int, newRequests int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[key{env, name}] = inFlight
	s.requests[key{env, name}] += newRequests
}

func (s *source) Load(env, name string) (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight[key{env, name}], s.requests[key{env, name}]
}

func (s *source) Ready(env, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready[key{env, name}]
}

var _ ReadySource = (*source)(nil)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type change struct {
	env, name string
	desired   int
}

// harness runs an Autoscaler whose every tick the test drives.
type harness struct {
	t     *testing.T
	a     *Autoscaler
	src   *source
	clock *clock
	ticks chan time.Time

	mu      sync.Mutex
	changes []change
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func start(t *testing.T) *harness {
	h := &harness{t: t, src: newSource(), clock: &clock{now: t0}, ticks: make(chan time.Time)}
	h.a = New(Config{
		Source: h.src,
		Clock:  h.clock.Now,
		Ticks:  h.ticks,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnChange: func(env, name string, desired int) {
			h.mu.Lock()
			h.changes = append(h.changes, change{env, name, desired})
			h.mu.Unlock()
			h.src.mu.Lock()
			h.src.ready[key{env, name}] = desired
			h.src.mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// run advances the clock by one tick at a time for d. A send on the
// unbuffered channel returns once Run took it; the extra send at the end
// (same time, one more sample) makes sure the last real tick was handled.
func (h *harness) run(d time.Duration) {
	for i := 0; i < int(d/DefaultTick); i++ {
		h.clock.advance(DefaultTick)
		h.ticks <- h.clock.Now()
	}
	h.ticks <- h.clock.Now()
}

func (h *harness) all() []change {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]change(nil), h.changes...)
}

func (h *harness) last(env, name string) (int, bool) {
	cs := h.all()
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].env == env && cs[i].name == name {
			return cs[i].desired, true
		}
	}
	return 0, false
}

func TestDemandAtZeroFiresAtOnce(t *testing.T) {
	h := start(t)
	h.a.Set("default", "hello", Params{Concurrency: 10}, 0)
	h.run(time.Second)
	if cs := h.all(); len(cs) != 0 {
		t.Fatalf("no traffic, yet OnChange: %v", cs)
	}

	// No tick in between: Demand alone must wake the function.
	h.a.Demand("default", "hello")
	if got, ok := h.last("default", "hello"); !ok || got != 1 {
		t.Fatalf("after Demand: OnChange %v, want (default, hello, 1) before Demand returned", h.all())
	}
	if d := h.a.Desired("default", "hello"); d != 1 {
		t.Errorf("Desired = %d, want 1", d)
	}
	h.a.Demand("default", "hello")
	if n := len(h.all()); n != 1 {
		t.Errorf("a second Demand called OnChange again: %v", h.all())
	}
}

// A request can reach the activator before the controller's first Set: the
// demand must not be lost, and Set then brings the real parameters.
func TestDemandBeforeSet(t *testing.T) {
	h := start(t)
	h.a.Demand("default", "new")
	if got, ok := h.last("default", "new"); !ok || got != 1 {
		t.Fatalf("Demand before Set: OnChange %v, want (default, new, 1)", h.all())
	}
	h.a.Set("default", "new", Params{Min: 2}, 0)
	h.run(DefaultTick)
	if got, _ := h.last("default", "new"); got != 2 {
		t.Errorf("after Set with min 2: desired %d", got)
	}

	// Demand for a function nobody registers idles out and is forgotten.
	h.a.Demand("default", "stray")
	h.run(DefaultIdleTimeout + time.Second)
	if got, _ := h.last("default", "stray"); got != 0 {
		t.Errorf("stray demand: desired %d after the idle timeout, want 0", got)
	}
	if _, ok := h.a.Status("default", "stray"); ok {
		t.Error("stray demand still registered after going back to zero")
	}
}

func TestSustainedLoadScalesUpThenDownToZero(t *testing.T) {
	h := start(t)
	p := Params{Concurrency: 2, TargetUtilization: 1, Max: 20, StableWindow: 10 * time.Second, IdleTimeout: 5 * time.Second}
	h.a.Set("shop", "resize", p, 0)

	h.src.set("shop", "resize", 12, 100)
	h.run(15 * time.Second)
	if got, _ := h.last("shop", "resize"); got != 6 {
		t.Fatalf("under 12 in flight at concurrency 2: desired %d, want 6 (changes %v)", got, h.all())
	}
	st, ok := h.a.Status("shop", "resize")
	if !ok || st.Desired != 6 || st.StableAverage != 12 || st.Ready != 6 {
		t.Errorf("Status = %+v", st)
	}

	// Load drops to 4 in flight: down to 2 within a stable window (plus the
	// panic the cold start began, which lasts a stable window too).
	h.src.set("shop", "resize", 4, 50)
	h.run(25 * time.Second)
	if got, _ := h.last("shop", "resize"); got != 2 {
		t.Fatalf("under 4 in flight: desired %d, want 2 (changes %v)", got, h.all())
	}

	// No more traffic: zero after the idle timeout.
	h.src.set("shop", "resize", 0, 0)
	h.run(4800 * time.Millisecond)
	if got := h.a.Desired("shop", "resize"); got == 0 {
		t.Fatalf("zero before the idle timeout")
	}
	h.run(400 * time.Millisecond)
	if got, _ := h.last("shop", "resize"); got != 0 {
		t.Fatalf("idle for the idle timeout: desired %d, want 0 (changes %v)", got, h.all())
	}

	t.Logf("changes: %v", h.all())
	// The way up and down never went backwards.
	cs := h.all()
	peak := 0
	for i, c := range cs {
		if c.desired > cs[peak].desired {
			peak = i
		}
	}
	for i := 1; i < len(cs); i++ {
		if up := cs[i].desired > cs[i-1].desired; up != (i <= peak) {
			t.Errorf("changes %v are not up then down", cs)
			break
		}
	}
}

func TestFloodNeverExceedsMax(t *testing.T) {
	h := start(t)
	h.a.Set("default", "flood", Params{Max: 4}, 0)
	h.a.Set("default", "calm", Params{}, 0)
	h.src.set("default", "flood", 100000, 100000)
	h.run(20 * time.Second)
	cs := h.all()
	if len(cs) == 0 {
		t.Fatal("no OnChange under a flood")
	}
	for _, c := range cs {
		if c.name != "flood" {
			t.Errorf("OnChange for a function without traffic: %v", c)
		}
		if c.desired > 4 {
			t.Errorf("desired %d > max 4", c.desired)
		}
	}
	if got, _ := h.last("default", "flood"); got != 4 {
		t.Errorf("desired %d, want max 4", got)
	}
	// Lowering max takes effect at the next tick.
	h.a.Set("default", "flood", Params{Max: 2}, 0)
	h.run(DefaultTick)
	if got, _ := h.last("default", "flood"); got != 2 {
		t.Errorf("after max lowered to 2: desired %d", got)
	}
}

func TestRemoveStopsDecisions(t *testing.T) {
	h := start(t)
	h.a.Set("default", "gone", Params{IdleTimeout: time.Second}, 0)
	h.src.set("default", "gone", 5, 5)
	h.run(2 * time.Second)
	n := len(h.all())
	if n == 0 {
		t.Fatal("no decision under load")
	}
	h.a.Remove("default", "gone")
	h.src.set("default", "gone", 50, 50)
	h.run(5 * time.Second)
	if cs := h.all(); len(cs) != n {
		t.Errorf("OnChange after Remove: %v", cs[n:])
	}
	if d := h.a.Desired("default", "gone"); d != 0 {
		t.Errorf("Desired after Remove = %d", d)
	}
	if _, ok := h.a.Status("default", "gone"); ok {
		t.Error("Status after Remove still found")
	}
}

func TestRestartKeepsBusyFunction(t *testing.T) {
	h := start(t)
	// The server restarted: 6 instances are running, 1 request in flight.
	p := Params{Concurrency: 1, TargetUtilization: 1, StableWindow: 10 * time.Second, IdleTimeout: 5 * time.Second}
	h.src.set("default", "busy", 1, 0)
	h.src.ready[key{"default", "busy"}] = 6
	h.a.Set("default", "busy", p, 6)
	if d := h.a.Desired("default", "busy"); d != 6 {
		t.Fatalf("Desired after Set with 6 ready = %d", d)
	}
	h.run(9800 * time.Millisecond)
	if cs := h.all(); len(cs) != 0 {
		t.Fatalf("within the first stable window: OnChange %v, want the 6 kept", cs)
	}
	h.run(time.Second)
	if got, _ := h.last("default", "busy"); got != 1 {
		t.Errorf("after a full window: desired %d, want 1 (changes %v)", got, h.all())
	}
}

// Demand and ticks race; whatever the order, the last OnChange carries the
// last decision. Run with -race.
func TestConcurrentDemandAndTicks(t *testing.T) {
	h := start(t)
	p := Params{IdleTimeout: 200 * time.Millisecond, StableWindow: time.Second}
	h.a.Set("default", "f", p, 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				h.a.Demand("default", "f")
				_ = h.a.Desired("default", "f")
				_, _ = h.a.Status("default", "f")
			}
		}
	})
	h.run(5 * time.Second)
	close(stop)
	wg.Wait()
	got, _ := h.last("default", "f")
	if d := h.a.Desired("default", "f"); got != d {
		t.Errorf("last OnChange %d, Desired %d", got, d)
	}
}

// The real ticker and clock, briefly: load is seen within a few ticks.
func TestRunWithRealTicker(t *testing.T) {
	src := newSource()
	changed := make(chan int, 16)
	a := New(Config{Source: src, Tick: 5 * time.Millisecond, OnChange: func(_, _ string, d int) { changed <- d }})
	a.Set("default", "f", Params{Concurrency: 1, TargetUtilization: 1}, 0)
	src.set("default", "f", 3, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case d := <-changed:
		if d != 3 {
			t.Errorf("first decision %d, want 3", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no decision within 5 s")
	}
}

func TestRunWithoutSource(t *testing.T) {
	if err := New(Config{}).Run(context.Background()); !v1.IsInvalid(err) {
		t.Errorf("Run without a Source: %v, want invalid", err)
	}
}
