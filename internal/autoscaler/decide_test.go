package autoscaler

import (
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// steady is one sample per 200 ms over the whole window up to now.
func steady(now time.Time, window time.Duration, inFlight float64) []Sample {
	var s []Sample
	for at := now.Add(-window + DefaultTick); !at.After(now); at = at.Add(DefaultTick) {
		s = append(s, Sample{At: at, InFlight: inFlight})
	}
	return s
}

func TestDecideOnce(t *testing.T) {
	now := t0.Add(time.Hour)
	active := State{Desired: 1, LastActive: now.Add(-time.Second)}
	cases := []struct {
		name    string
		p       Params
		samples []Sample
		cur     State
		ready   int
		want    int
		panic   bool
	}{
		{
			name:    "concurrency 1, target 0.7, 10 in flight wants 15",
			p:       Params{Concurrency: 1, TargetUtilization: 0.7, Max: 100},
			samples: steady(now, time.Minute, 10),
			cur:     State{Desired: 15, LastActive: now},
			ready:   15,
			want:    15,
		},
		{
			name:    "concurrency 10, target 1.0, 25 in flight wants 3",
			p:       Params{Concurrency: 10, TargetUtilization: 1.0},
			samples: steady(now, time.Minute, 25),
			cur:     State{Desired: 3, LastActive: now},
			ready:   3,
			want:    3,
		},
		{
			name:    "exactly on target is not rounded up by float error",
			p:       Params{Concurrency: 10, TargetUtilization: 0.7},
			samples: steady(now, time.Minute, 7),
			cur:     active,
			ready:   1,
			want:    1,
		},
		{
			name:    "defaults: concurrency 1, target 0.7",
			p:       Params{},
			samples: steady(now, time.Minute, 3.5),
			cur:     State{Desired: 5, LastActive: now},
			ready:   5,
			want:    5,
		},
		{
			name:    "a flood never exceeds max",
			p:       Params{Concurrency: 1, Max: 5},
			samples: steady(now, time.Minute, 10000),
			cur:     State{Desired: 5, LastActive: now},
			ready:   5,
			want:    5,
			panic:   true,
		},
		{
			name:    "a request waiting at zero wants one instance",
			p:       Params{Concurrency: 10},
			samples: []Sample{{At: now, InFlight: 1}},
			ready:   0,
			want:    1,
		},
		{
			name:    "a burst at zero panics straight to what it needs",
			p:       Params{Concurrency: 1, TargetUtilization: 1},
			samples: []Sample{{At: now, InFlight: 8}},
			ready:   0,
			want:    8,
			panic:   true,
		},
		{
			name:    "min is kept with no traffic at all",
			p:       Params{Min: 2, IdleTimeout: time.Second},
			samples: steady(now, time.Minute, 0),
			cur:     State{Desired: 2, LastActive: now.Add(-time.Hour)},
			ready:   2,
			want:    2,
		},
		{
			name:  "no samples keep the last decision, even long idle",
			p:     Params{IdleTimeout: time.Second},
			cur:   State{Desired: 3, LastActive: now.Add(-time.Hour), LastSample: now.Add(-time.Hour)},
			ready: 3,
			want:  3,
		},
		{
			name:  "no samples still respect a lowered max",
			p:     Params{Max: 2},
			cur:   State{Desired: 7, LastActive: now},
			ready: 7,
			want:  2,
		},
		{
			name:    "sparse samples are averaged as they are",
			p:       Params{Concurrency: 1, TargetUtilization: 1, Max: 100},
			samples: []Sample{{At: now.Add(-50 * time.Second), InFlight: 20}, {At: now, InFlight: 20}},
			cur:     State{Desired: 20, LastActive: now},
			ready:   20,
			want:    20,
		},
		{
			name: "samples older than the stable window or after now are ignored",
			p:    Params{Concurrency: 1, TargetUtilization: 1},
			samples: []Sample{
				{At: now.Add(-90 * time.Second), InFlight: 100},
				{At: now.Add(-time.Second), InFlight: 2},
				{At: now, InFlight: 2},
				{At: now.Add(time.Second), InFlight: 100},
			},
			cur:   State{Desired: 2, LastActive: now},
			ready: 2,
			want:  2,
		},
		{
			name: "new requests between samples are activity even with none in flight",
			p:    Params{IdleTimeout: 10 * time.Second},
			samples: []Sample{
				{At: now.Add(-time.Second), Requests: 41},
				{At: now, Requests: 42},
			},
			cur:   State{Desired: 1, LastActive: now.Add(-time.Hour), LastSample: now.Add(-2 * time.Second), Requests: 41},
			ready: 1,
			want:  1,
		},
		{
			name: "a counter reset is activity too",
			p:    Params{IdleTimeout: 10 * time.Second},
			samples: []Sample{
				{At: now, Requests: 3},
			},
			cur:   State{Desired: 1, LastActive: now.Add(-time.Hour), LastSample: now.Add(-time.Second), Requests: 900},
			ready: 1,
			want:  1,
		},
		{
			name:    "idle since long with evidence goes to zero",
			p:       Params{IdleTimeout: 10 * time.Second},
			samples: []Sample{{At: now, Requests: 900}},
			cur:     State{Desired: 1, LastActive: now.Add(-time.Hour), LastSample: now.Add(-time.Second), Requests: 900},
			ready:   1,
			want:    0,
		},
		{
			name:    "instances without any history are not idle since forever",
			p:       Params{IdleTimeout: 10 * time.Second},
			samples: steady(now, time.Minute, 0),
			cur:     State{Desired: 2},
			ready:   2,
			want:    1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, next := Decide(tc.p, tc.samples, tc.cur, tc.ready, now)
			if got != tc.want {
				t.Errorf("desired = %d, want %d", got, tc.want)
			}
			if next.Desired != got {
				t.Errorf("next.Desired = %d, returned %d", next.Desired, got)
			}
			if next.Panicking() != tc.panic {
				t.Errorf("panicking = %v, want %v", next.Panicking(), tc.panic)
			}
		})
	}
}

// point is one decision of a simulation.
type point struct {
	at      time.Duration
	desired int
	panic   bool
}

// simulate calls Decide every 200 ms for dur, as the loop does, with
// instances ready as soon as they are desired. load gives the in-flight
// requests and the cumulative request count at each moment.
func simulate(p Params, st State, dur time.Duration, load func(time.Duration) (float64, int64)) []point {
	window := p.normalized().StableWindow
	ready := st.Desired
	var samples []Sample
	var pts []point
	for i := 1; time.Duration(i)*DefaultTick <= dur; i++ {
		at := time.Duration(i) * DefaultTick
		now := t0.Add(at)
		in, req := load(at)
		samples = append(trim(samples, now.Add(-window)), Sample{At: now, InFlight: in, Requests: req})
		var d int
		d, st = Decide(p, samples, st, ready, now)
		ready = d
		pts = append(pts, point{at: at, desired: d, panic: st.Panicking()})
	}
	return pts
}

func at(pts []point, d time.Duration) point {
	return pts[int(d/DefaultTick)-1]
}

func TestDecideOverTime(t *testing.T) {
	s := time.Second
	linear := Params{Concurrency: 1, TargetUtilization: 1, Max: 100}
	cases := []struct {
		name  string
		p     Params
		start State
		dur   time.Duration
		load  func(time.Duration) (float64, int64)
		check func(t *testing.T, pts []point)
	}{
		{
			name:  "steady load holds a steady count without panic",
			p:     linear,
			start: State{Desired: 4, LastActive: t0},
			dur:   3 * time.Minute,
			load:  func(d time.Duration) (float64, int64) { return 4, int64(d / s) },
			check: func(t *testing.T, pts []point) {
				for _, pt := range pts {
					if pt.desired != 4 || pt.panic {
						t.Fatalf("at %v: desired %d panic %v, want 4 without panic", pt.at, pt.desired, pt.panic)
					}
				}
			},
		},
		{
			// 2 in flight, then 20 from 60 s to 70 s, then 2 again.
			name:  "a burst panics, scales up within the panic window, holds, then decays gradually",
			p:     linear,
			start: State{Desired: 2, LastActive: t0},
			dur:   3 * time.Minute,
			load: func(d time.Duration) (float64, int64) {
				if d > 60*s && d <= 70*s {
					return 20, int64(d / s)
				}
				return 2, int64(d / s)
			},
			check: func(t *testing.T, pts []point) {
				if p := at(pts, 60*s); p.desired != 2 || p.panic {
					t.Fatalf("before the burst: %+v", p)
				}
				// The stable window alone would want 3 after 2 s of burst, and
				// only 4 after 6 s.
				if p := at(pts, 62*s); !p.panic || p.desired <= 4 {
					t.Errorf("2 s into the burst: %+v, want panic and more than the stable 4", p)
				}
				if p := at(pts, 66*s); p.desired < 20 {
					t.Errorf("a panic window into the burst: desired %d, want 20", p.desired)
				}
				// From the burst until panic ends: never down.
				first := int(62*s/DefaultTick) - 1
				end := -1
				for i := first; i < len(pts); i++ {
					if !pts[i].panic {
						end = i
						break
					}
					if pts[i].desired < pts[i-1].desired {
						t.Fatalf("scaled down while panicking at %v: %d → %d", pts[i].at, pts[i-1].desired, pts[i].desired)
					}
				}
				if end < 0 {
					t.Fatal("never left panic")
				}
				if pts[end].at < 120*s || pts[end].at > 131*s {
					t.Errorf("left panic at %v, want a stable window after the last panic condition", pts[end].at)
				}
				// Then down one step at a time as the burst leaves the window.
				for i := end + 1; i < len(pts); i++ {
					if d := pts[i-1].desired - pts[i].desired; d > 1 || d < 0 {
						t.Fatalf("after panic at %v: %d → %d, want a gradual decay", pts[i].at, pts[i-1].desired, pts[i].desired)
					}
				}
				if p := pts[len(pts)-1]; p.desired != 2 || p.panic {
					t.Errorf("long after the burst: %+v, want 2", p)
				}
			},
		},
		{
			name:  "a flood never exceeds max",
			p:     Params{Concurrency: 1, Max: 5},
			start: State{},
			dur:   30 * s,
			load:  func(d time.Duration) (float64, int64) { return 10000, int64(d / s) },
			check: func(t *testing.T, pts []point) {
				for _, pt := range pts {
					if pt.desired > 5 {
						t.Fatalf("at %v: desired %d > max 5", pt.at, pt.desired)
					}
				}
				if pts[0].desired != 5 {
					t.Errorf("first decision %d, want max at once", pts[0].desired)
				}
			},
		},
		{
			// Last request in flight at 9.8 s; idle timeout 30 s.
			name:  "to zero after the idle timeout, not one sample earlier",
			p:     Params{Concurrency: 1, TargetUtilization: 1, IdleTimeout: 30 * s},
			start: State{},
			dur:   60 * s,
			load: func(d time.Duration) (float64, int64) {
				if d < 10*s {
					return 3, int64(d / s)
				}
				return 0, 9
			},
			check: func(t *testing.T, pts []point) {
				if p := at(pts, 9800*time.Millisecond); p.desired != 3 {
					t.Fatalf("under load: %+v", p)
				}
				// The cold start panicked (3 wanted, none ready), so 3 are
				// held until panic ends or the function is idle.
				if p := at(pts, 39600*time.Millisecond); p.desired == 0 {
					t.Errorf("one sample before the idle timeout: desired 0, want instances kept")
				}
				if p := at(pts, 39800*time.Millisecond); p.desired != 0 {
					t.Errorf("at the idle timeout: desired %d, want 0", p.desired)
				}
				if p := pts[len(pts)-1]; p.desired != 0 {
					t.Errorf("after: desired %d, want 0", p.desired)
				}
			},
		},
		{
			name:  "an idle timeout longer than the stable window keeps one instance meanwhile",
			p:     Params{Concurrency: 1, TargetUtilization: 1, IdleTimeout: 90 * s},
			start: State{},
			dur:   2 * time.Minute,
			load: func(d time.Duration) (float64, int64) {
				if d < 10*s {
					return 3, int64(d / s)
				}
				return 0, 9
			},
			check: func(t *testing.T, pts []point) {
				if p := at(pts, 80*s); p.desired != 1 {
					t.Errorf("window averages zero but not idle yet: desired %d, want 1", p.desired)
				}
				if p := at(pts, 99600*time.Millisecond); p.desired != 1 {
					t.Errorf("one sample before the idle timeout: desired %d, want 1", p.desired)
				}
				if p := at(pts, 99800*time.Millisecond); p.desired != 0 {
					t.Errorf("at the idle timeout: desired %d, want 0", p.desired)
				}
			},
		},
		{
			// Requests shorter than a tick: never seen in flight, only counted.
			name:  "short requests keep a function warm until they stop",
			p:     Params{IdleTimeout: 30 * s},
			start: State{Desired: 1, LastActive: t0},
			dur:   3 * time.Minute,
			load: func(d time.Duration) (float64, int64) {
				return 0, int64(min(d, 100*s) / (10 * s))
			},
			check: func(t *testing.T, pts []point) {
				for _, pt := range pts {
					if pt.at <= 129*s && pt.desired != 1 {
						t.Fatalf("at %v: desired %d, want 1 while requests come", pt.at, pt.desired)
					}
				}
				if p := at(pts, 130*s); p.desired != 0 {
					t.Errorf("30 s after the last request: desired %d, want 0", p.desired)
				}
			},
		},
		{
			name:  "min is respected",
			p:     Params{Min: 2, IdleTimeout: s},
			start: State{},
			dur:   90 * s,
			load:  func(time.Duration) (float64, int64) { return 0, 0 },
			check: func(t *testing.T, pts []point) {
				for _, pt := range pts {
					if pt.desired != 2 {
						t.Fatalf("at %v: desired %d, want min 2", pt.at, pt.desired)
					}
				}
			},
		},
		{
			name:  "after a restart, ready instances are kept for a stable window",
			p:     linear,
			start: Resume(linear, 8, t0),
			dur:   2 * time.Minute,
			load:  func(d time.Duration) (float64, int64) { return 1, int64(d / s) },
			check: func(t *testing.T, pts []point) {
				if p := at(pts, 59800*time.Millisecond); p.desired != 8 {
					t.Errorf("within the first window: desired %d, want the 8 running", p.desired)
				}
				if p := at(pts, 61*s); p.desired != 1 {
					t.Errorf("after the first window: desired %d, want 1", p.desired)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, simulate(tc.p, tc.start, tc.dur, tc.load))
		})
	}
}

func TestWake(t *testing.T) {
	now := t0
	if st := Wake(Params{}, State{}, now); st.Desired != 1 || !st.LastActive.Equal(now) {
		t.Errorf("at zero: %+v, want desired 1, active now", st)
	}
	if st := Wake(Params{}, State{Desired: 4}, now); st.Desired != 4 {
		t.Errorf("already scaled: desired %d, want 4 kept", st.Desired)
	}
	if st := Wake(Params{Min: 3}, State{}, now); st.Desired != 3 {
		t.Errorf("min 3: desired %d, want 3", st.Desired)
	}
}

func TestParamsFor(t *testing.T) {
	one, five := int32(1), int32(5)
	tu := 0.5
	p, err := ParamsFor(v1.FunctionSpec{Concurrency: 4, Scale: v1.FunctionScale{Min: &one, Max: &five, IdleTimeout: "90s", TargetUtilization: &tu}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Params{Concurrency: 4, TargetUtilization: 0.5, Min: 1, Max: 5, IdleTimeout: 90 * time.Second}); p != want {
		t.Errorf("ParamsFor = %+v, want %+v", p, want)
	}
	if _, err := ParamsFor(v1.FunctionSpec{Scale: v1.FunctionScale{IdleTimeout: "soon"}}); !v1.IsInvalid(err) {
		t.Errorf("bad idle timeout: err %v, want invalid", err)
	}
}
