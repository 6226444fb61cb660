package history

import (
	"context"
	"maps"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// fakePlane is the gateway, backend and collectors as the recorder sees
// them, set by the test between ticks.
type fakePlane struct {
	mu        sync.Mutex
	targets   []Target
	inFlight  map[Workload]int
	arrivals  map[Workload]int64
	instances map[string][]v1.InstanceStatus // kind/env/name
	usage     map[string]map[string]Usage
	totals    map[Workload]Totals
}

func newFakePlane() *fakePlane {
	return &fakePlane{
		inFlight: map[Workload]int{}, arrivals: map[Workload]int64{},
		instances: map[string][]v1.InstanceStatus{}, usage: map[string]map[string]Usage{},
		totals: map[Workload]Totals{},
	}
}

func (p *fakePlane) Targets() []Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Target(nil), p.targets...)
}

func (p *fakePlane) Load(env, name string) (int, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight[Workload{env, name}], p.arrivals[Workload{env, name}]
}

func (p *fakePlane) Instances(kind, env, name string) []v1.InstanceStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]v1.InstanceStatus(nil), p.instances[kind+"/"+env+"/"+name]...)
}

func (p *fakePlane) Usage(_ context.Context, kind, env, name string) (map[string]Usage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.usage[kind+"/"+env+"/"+name]), nil
}

func (p *fakePlane) Totals() (map[Workload]Totals, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.totals), nil
}

func (p *fakePlane) set(f func(p *fakePlane)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

var durBounds = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// observe adds n observations of d seconds to a cumulative histogram.
func observe(h Histogram, n int, d float64) Histogram {
	if h.Bounds == nil {
		h.Bounds = durBounds
		h.Counts = make([]uint64, len(durBounds))
	} else {
		h.Counts = append([]uint64(nil), h.Counts...)
	}
	h.Count += uint64(n)
	h.Sum += float64(n) * d
	for i, b := range h.Bounds {
		if d <= b {
			h.Counts[i] += uint64(n)
		}
	}
	return h
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestRecorderMinute drives one function through a minute on a fake clock:
// a cold start at second 10, ten seconds of traffic, an instance that
// stays; then checks the minute written and that it survives a restart.
func TestRecorderMinute(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plane := newFakePlane()
	w := Workload{"prod", "thumbs"}
	plane.targets = []Target{{Kind: v1.KindFunction, Environment: "prod", Name: "thumbs", ImageDigest: "sha256:aa"}}
	clk := &testClock{now: t0.Add(-100 * time.Millisecond)}
	rec := NewRecorder(Config{DB: db, Source: plane, Usage: plane, Totals: plane, Clock: clk.Now})
	ctx := context.Background()

	rec.Sample(ctx) // the baseline, in the minute before
	inst := v1.InstanceStatus{Name: "thumbs-1", Phase: v1.PhaseRunning}
	for tick := range 60 * 5 {
		now := t0.Add(time.Duration(tick) * 200 * time.Millisecond)
		sec := tick / 5
		plane.set(func(p *fakePlane) {
			switch {
			case sec == 10 && tick%5 == 0:
				// A request arrives at zero; the instance starts 20 ms later
				// (the agent's StartedAt) and is ready at the next sample.
				p.arrivals[w]++
				p.inFlight[w] = 1
				inst.StartedAt = now.Add(20 * time.Millisecond)
				p.instances["Function/prod/thumbs"] = []v1.InstanceStatus{inst}
			case sec == 10 && tick%5 == 1:
				inst.Ready = true
				p.instances["Function/prod/thumbs"] = []v1.InstanceStatus{inst}
				t := p.totals[w]
				t.ColdStart = observe(t.ColdStart, 1, 0.04)
				p.totals[w] = t
			case sec > 10 && sec < 20 && tick%5 == 0:
				p.arrivals[w] += 2
				p.inFlight[w] = 2
			case sec == 20:
				p.inFlight[w] = 0
			}
			if tick == 100 {
				p.usage["Function/prod/thumbs"] = map[string]Usage{"thumbs-1": {CPUNanos: 3e9, MemoryBytes: 10 << 20}}
			}
			if tick == 200 {
				p.usage["Function/prod/thumbs"] = map[string]Usage{"thumbs-1": {CPUNanos: 5e9, MemoryBytes: 30 << 20}}
			}
		})
		clk.set(now)
		rec.Sample(ctx)
	}
	plane.set(func(p *fakePlane) {
		t := p.totals[w]
		t.Answered, t.Errors = 19, 1
		t.Duration = observe(observe(t.Duration, 18, 0.2), 1, 0.9)
		p.totals[w] = t
	})
	clk.set(t0.Add(time.Minute + 100*time.Millisecond))
	rec.Sample(ctx) // writes the minute of t0
	db.Close()

	// A new server opens the same file: the minute is there.
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := db.Range("prod", "thumbs", t0.Add(-time.Minute), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("got %d minutes, want the partial one before and t0's: %+v", len(ms), ms)
	}
	if ms[0].Covered != 1 {
		t.Errorf("the minute the recorder started in covers %d s, want 1", ms[0].Covered)
	}
	m := ms[1]
	if !m.At.Equal(t0) || m.Covered != 60 || m.Kinds != RanAsFunction {
		t.Errorf("minute %v covered %d kinds %v", m.At, m.Covered, m.Kinds)
	}
	if m.Requests != 19 {
		t.Errorf("requests = %d, want 19", m.Requests)
	}
	var wantActive uint64
	for s := 10; s < 20; s++ {
		wantActive |= 1 << s
	}
	if m.Active != wantActive {
		t.Errorf("active seconds = %060b, want %060b", m.Active, wantActive)
	}
	if m.InFlightMax != 2 {
		t.Errorf("in-flight max = %d, want 2", m.InFlightMax)
	}
	if m.Answered != 19 || m.Errors != 1 {
		t.Errorf("answered %d, errors %d; want 19, 1", m.Answered, m.Errors)
	}
	if !near(m.BusySeconds, 18*0.2+0.9, 1e-6) {
		t.Errorf("busy seconds = %v, want 4.5", m.BusySeconds)
	}
	if m.P50 <= 0.1 || m.P50 > 0.25 || m.P99 <= 0.5 || m.P99 > 1 {
		t.Errorf("p50 %v p99 %v: want within the buckets of 0.2 s and 0.9 s", m.P50, m.P99)
	}
	if m.ColdStarts != 1 || !near(m.ColdStartSeconds, 0.04, 1e-6) {
		t.Errorf("cold starts %d (%v s), want 1 (0.04 s)", m.ColdStarts, m.ColdStartSeconds)
	}
	// Running from second 10.0 to the end: 50 s, to the sample.
	if !near(m.InstanceSeconds, 50, 0.21) || m.InstancesMax != 1 {
		t.Errorf("instance-seconds %v (max %d), want 50 (1)", m.InstanceSeconds, m.InstancesMax)
	}
	// From the sample that first saw it starting to the one that saw it
	// ready.
	if m.Starts != 1 || !near(m.StartSeconds, 0.2, 1e-6) {
		t.Errorf("starts %d taking %v s, want 1 taking 0.2 s", m.Starts, m.StartSeconds)
	}
	// The instance started after the recorder: all its CPU counts. Memory
	// is read at 10, 20, 30, 40 and 50 s: 0, 10, 10, 30, 30 MiB.
	if !near(m.CPUSeconds, 5, 1e-3) || !near(m.MemoryMaxBytes, 30<<20, 1024) || !near(m.MemoryBytes, 16<<20, 1024) {
		t.Errorf("cpu %v s, memory mean %v max %v", m.CPUSeconds, m.MemoryBytes, m.MemoryMaxBytes)
	}
	img, err := db.Image("sha256:aa")
	if err != nil || img.ColdStarts != 1 || img.Starts != 1 {
		t.Errorf("image figures %+v %v", img, err)
	}
}

// TestRecorderAfterRestart: instances found running when the recorder
// starts are a baseline for CPU, and a gateway whose counters restarted
// from zero does not make negative minutes.
func TestRecorderAfterRestart(t *testing.T) {
	db := openTest(t, Options{})
	plane := newFakePlane()
	w := Workload{"prod", "api"}
	plane.targets = []Target{{Kind: v1.KindService, Environment: "prod", Name: "api"}}
	old := v1.InstanceStatus{Name: "api-1", Phase: v1.PhaseRunning, Ready: true, StartedAt: t0.Add(-time.Hour)}
	plane.instances["Service/prod/api"] = []v1.InstanceStatus{old}
	plane.usage["Service/prod/api"] = map[string]Usage{"api-1": {CPUNanos: 3600e9, MemoryBytes: 50 << 20}}
	plane.arrivals[w] = 1000
	plane.totals[w] = Totals{Answered: 1000}
	clk := &testClock{now: t0}
	rec := NewRecorder(Config{DB: db, Source: plane, Usage: plane, Totals: plane, Clock: clk.Now, UsageEvery: 10 * time.Second})
	ctx := context.Background()
	for s := range 60 {
		clk.set(t0.Add(time.Duration(s) * time.Second))
		if s == 30 {
			plane.set(func(p *fakePlane) {
				p.arrivals[w] = 5 // the gateway's counters were reset
				p.totals[w] = Totals{Answered: 5}
				p.usage["Service/prod/api"] = map[string]Usage{"api-1": {CPUNanos: 3601e9, MemoryBytes: 50 << 20}}
			})
		}
		rec.Sample(ctx)
	}
	clk.set(t0.Add(time.Minute))
	rec.Sample(ctx)
	ms, _ := db.Range("prod", "api", t0, t0.Add(time.Minute))
	if len(ms) != 1 {
		t.Fatalf("minutes: %+v", ms)
	}
	m := ms[0]
	if m.Requests != 5 || m.Answered != 5 {
		t.Errorf("requests %d answered %d after a counter reset, want 5 and 5", m.Requests, m.Answered)
	}
	if !near(m.CPUSeconds, 1, 1e-3) {
		t.Errorf("cpu = %v s, want 1 (the running instance's hour before is not this minute's)", m.CPUSeconds)
	}
	if m.Starts != 0 {
		t.Errorf("an instance adopted running counted as %d starts", m.Starts)
	}
	if !near(m.InstanceSeconds, 59, 1e-6) || !near(m.ReadySeconds, 59, 1e-6) {
		t.Errorf("instance-seconds %v ready %v, want 59 (the first sample has nothing before it)", m.InstanceSeconds, m.ReadySeconds)
	}
}

// TestRecorderRunWritesOnStop: Run writes the partial minute when it
// stops, so a server's last minutes are not lost.
func TestRecorderRunWritesOnStop(t *testing.T) {
	db := openTest(t, Options{})
	plane := newFakePlane()
	plane.targets = []Target{{Kind: v1.KindFunction, Environment: "e", Name: "f"}}
	// Each sample reads the clock once: a clock that moves a second per
	// reading keeps the test free of races with Run's goroutine.
	next := t0
	clock := func() time.Time { t := next; next = next.Add(time.Second); return t }
	ticks := make(chan time.Time)
	rec := NewRecorder(Config{DB: db, Source: plane, Clock: clock, Ticks: ticks})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- rec.Run(ctx) }()
	for range 5 {
		ticks <- time.Time{}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, _ := db.Range("e", "f", t0, t0.Add(time.Minute))
	if len(ms) != 1 || ms[0].Covered != 5 {
		t.Fatalf("after stop: %+v", ms)
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := observe(observe(Histogram{}, 90, 0.004), 10, 0.4)
	for _, tc := range []struct{ q, lo, hi float64 }{
		{0.5, 0.0025, 0.005},
		{0.9, 0.0025, 0.005},
		{0.99, 0.25, 0.5},
	} {
		if got := h.Quantile(tc.q); got < tc.lo || got > tc.hi {
			t.Errorf("q%v = %v, want in [%v, %v]", tc.q, got, tc.lo, tc.hi)
		}
	}
	if got := (Histogram{}).Quantile(0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
	over := observe(Histogram{}, 1, 100)
	if got := over.Quantile(0.5); got != 60 {
		t.Errorf("above every bound: %v, want the largest bound", got)
	}
	if d := over.sub(h); d.Count != over.Count {
		t.Errorf("a histogram that went backwards is taken whole: %+v", d)
	}
}
