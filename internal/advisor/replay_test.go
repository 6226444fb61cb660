package advisor

import (
	"math"
	"testing"
	"time"

	"berth.dev/berth/internal/autoscaler"
	"berth.dev/berth/internal/history"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// minutes makes n recorded minutes from t0 with nothing in them.
func minutes(n int) []history.Minute {
	ms := make([]history.Minute, n)
	for i := range ms {
		ms[i] = history.Minute{At: t0.Add(time.Duration(i) * time.Minute), Covered: 60}
	}
	return ms
}

// at puts n requests of d seconds each in second sec of minute m.
func at(ms []history.Minute, m, sec, n int, d float64) {
	ms[m].Requests += int64(n)
	ms[m].Answered += int64(n)
	ms[m].BusySeconds += float64(n) * d
	ms[m].Active |= 1 << sec
}

// steadyLoad puts rps requests a second of d seconds each in every second
// of minutes [from, to).
func steadyLoad(ms []history.Minute, from, to int, rps int, d float64) {
	for m := from; m < to; m++ {
		ms[m].Requests += int64(rps * 60)
		ms[m].Answered += int64(rps * 60)
		ms[m].BusySeconds += float64(rps*60) * d
		ms[m].Active = 1<<60 - 1
	}
}

func TestReplayFunction(t *testing.T) {
	const cold = 20 * time.Millisecond
	fn := FunctionWay{ColdStart: cold}
	cases := []struct {
		name  string
		ms    func() []history.Minute
		way   FunctionWay
		check func(t *testing.T, o Outcome)
	}{{
		name: "a lone request at zero starts one instance, which lives until the idle timeout",
		ms:   func() []history.Minute { ms := minutes(3); at(ms, 0, 30, 1, 0.02); return ms },
		way:  fn,
		check: func(t *testing.T, o Outcome) {
			want(t, "cold starts", o.ColdStarts, 1, 0)
			want(t, "wakes", float64(o.Wakes), 1, 0)
			// Woken at 30.4 s, active through the sample at 31 s, idle 60 s
			// later: stopped at 91 s.
			want(t, "instance-seconds", o.InstanceSeconds, 60.6, 0.01)
			want(t, "seconds", o.Seconds, 180, 0)
			if p := o.Latency.Quantile(0.5); p < 0.019 || p > 0.022 {
				t.Errorf("the cold-started request waited %v s, want the cold start, 0.02 s", p)
			}
		},
	}, {
		name: "a request within the idle timeout finds the instance warm",
		ms: func() []history.Minute {
			ms := minutes(3)
			at(ms, 0, 30, 1, 0.02)
			at(ms, 1, 20, 1, 0.02) // 50 s later
			return ms
		},
		way: fn,
		check: func(t *testing.T, o Outcome) {
			want(t, "cold starts", o.ColdStarts, 1, 0)
			want(t, "instance-seconds", o.InstanceSeconds, 50+60.6, 0.01)
			if p := o.Latency.Quantile(0.5); p != 0 {
				t.Errorf("median added latency %v, want 0 (one of two requests waited)", p)
			}
		},
	}, {
		name: "requests further apart than the idle timeout each start cold",
		ms: func() []history.Minute {
			ms := minutes(4)
			at(ms, 0, 0, 1, 0.02)
			at(ms, 2, 0, 1, 0.02)
			return ms
		},
		way: fn,
		check: func(t *testing.T, o Outcome) {
			want(t, "cold starts", o.ColdStarts, 2, 0)
			want(t, "wakes", float64(o.Wakes), 2, 0)
			want(t, "instance-seconds", o.InstanceSeconds, 2*60.6, 0.01)
		},
	}, {
		name: "a shorter idle timeout stops the instance sooner",
		ms:   func() []history.Minute { ms := minutes(3); at(ms, 0, 30, 1, 0.02); return ms },
		way:  FunctionWay{ColdStart: cold, Scale: autoscaler.Params{IdleTimeout: 10 * time.Second}},
		check: func(t *testing.T, o Outcome) {
			want(t, "instance-seconds", o.InstanceSeconds, 10.6, 0.01)
		},
	}, {
		name: "min 1 keeps an instance through the window and never starts cold",
		ms:   func() []history.Minute { ms := minutes(5); at(ms, 2, 30, 1, 0.02); return ms },
		way:  FunctionWay{ColdStart: cold, Scale: autoscaler.Params{Min: 1}},
		check: func(t *testing.T, o Outcome) {
			want(t, "cold starts", o.ColdStarts, 0, 0)
			want(t, "instance-seconds", o.InstanceSeconds, 300, 0)
		},
	}, {
		name: "steady load is carried by concurrency × target per instance",
		// 10 requests/s of 350 ms: 3.5 in flight; at concurrency 1 and
		// 0.7 the autoscaler wants 5.
		ms:  func() []history.Minute { ms := minutes(10); steadyLoad(ms, 0, 10, 10, 0.35); return ms },
		way: FunctionWay{ColdStart: cold, Start: 150 * time.Millisecond},
		check: func(t *testing.T, o Outcome) {
			mean := o.PerMinute[9] / 60
			want(t, "instances in the last minute", mean, 5, 0.01)
			// The first request wakes the function and is held the whole
			// cold start; of those after it, at 10 a second, the 20 ms
			// start holds 0.2: 1 + rate × cold start.
			want(t, "cold starts", o.ColdStarts, 1.2, 1e-9)
			if o.Waited > 0.02*o.Requests {
				t.Errorf("%v of %v requests waited: only the ramp from zero should", o.Waited, o.Requests)
			}
			// Less the part still in service when the window ends.
			want(t, "service-seconds", o.ServiceSeconds, 6000*0.35, 1)
		},
	}, {
		name: "with no idle timeout set, it is learned from the gaps, as the autoscaler does",
		// A request every 20 minutes: after 10 gaps the autoscaler keeps
		// an instance 10 s rather than 60 s.
		ms: func() []history.Minute {
			ms := minutes(241)
			for m := 0; m <= 240; m += 20 {
				at(ms, m, 30, 1, 0.02)
			}
			return ms
		},
		way: FunctionWay{ColdStart: cold, LearnIdle: true},
		check: func(t *testing.T, o Outcome) {
			if !o.KeepAlive.Learned || o.KeepAlive.IdleTimeout != 10*time.Second {
				t.Errorf("keep-alive %+v, want learned, 10s", o.KeepAlive)
			}
			want(t, "cold starts", o.ColdStarts, 13, 0)
			// The first ten with the default 60 s, the three after the
			// tenth gap with 10 s.
			want(t, "instance-seconds", o.InstanceSeconds, 10*60.6+3*10.6, 0.01)
		},
	}, {
		name: "a continuous stream has no idle gaps to learn from",
		ms:   func() []history.Minute { ms := minutes(15); steadyLoad(ms, 0, 15, 4, 0.05); return ms },
		way:  FunctionWay{ColdStart: cold, LearnIdle: true},
		check: func(t *testing.T, o Outcome) {
			if o.KeepAlive.Gaps != 0 || o.KeepAlive.Learned {
				t.Errorf("keep-alive %+v: learned gaps from seconds in a row", o.KeepAlive)
			}
		},
	}, {
		name: "after an hour without a request the standby is given back: the next wake is a full start",
		ms: func() []history.Minute {
			ms := minutes(70)
			at(ms, 0, 30, 1, 0.02)
			at(ms, 65, 30, 1, 0.02)
			return ms
		},
		way: FunctionWay{ColdStart: cold, Start: 500 * time.Millisecond},
		check: func(t *testing.T, o Outcome) {
			want(t, "wakes", float64(o.Wakes), 2, 0)
			want(t, "full starts", float64(o.FullStarts), 1, 0)
			if p := o.Latency.Quantile(1); p < 0.49 || p > 0.51 {
				t.Errorf("the longest wait %v s, want the full start, 0.5 s", p)
			}
		},
	}, {
		name: "a start longer than a step holds what arrives until it is ready",
		// 10 requests/s, two a step: a 300 ms start holds the first step's
		// two and the half of the next step's before the instance is
		// ready.
		ms:  func() []history.Minute { ms := minutes(2); steadyLoad(ms, 0, 1, 10, 0.05); return ms },
		way: FunctionWay{ColdStart: 300 * time.Millisecond},
		check: func(t *testing.T, o Outcome) {
			want(t, "cold starts", o.ColdStarts, 3, 1e-9)
			want(t, "wakes", float64(o.Wakes), 1, 0)
		},
	}, {
		name: "more than max can carry waits, and past the timeout is refused",
		// 10 requests/s of 1 s at max 1: one is served a second.
		ms:  func() []history.Minute { ms := minutes(2); steadyLoad(ms, 0, 1, 10, 1); return ms },
		way: FunctionWay{ColdStart: cold, Scale: autoscaler.Params{Max: 1}, CapacityTimeout: 30 * time.Second},
		check: func(t *testing.T, o Outcome) {
			// About 60 are served in the minute and a half, most after a
			// wait; the rest wait past 30 s and are refused.
			if o.Waited < 50 || o.Shed < 400 || o.Waited+o.Shed > 600 {
				t.Errorf("waited %v, shed %v: a queue growing 9 a second should wait and shed", o.Waited, o.Shed)
			}
			if o.MaxInstances != 1 {
				t.Errorf("max instances %d, want 1", o.MaxInstances)
			}
		},
	}, {
		name: "a gap in the history (server down) starts the function over",
		ms: func() []history.Minute {
			ms := minutes(2)
			ms[1].At = t0.Add(time.Hour)
			at(ms, 0, 10, 1, 0.02)
			at(ms, 1, 10, 1, 0.02)
			return ms
		},
		way: fn,
		check: func(t *testing.T, o Outcome) {
			want(t, "seconds", o.Seconds, 120, 0)
			want(t, "cold starts", o.ColdStarts, 2, 0)
			// Each instance runs to the end of its minute: 49.6 s each.
			want(t, "instance-seconds", o.InstanceSeconds, 2*49.6, 0.01)
		},
	}, {
		name: "a partial first minute replays only its recorded seconds",
		ms: func() []history.Minute {
			ms := minutes(2)
			ms[0].Covered = 20 // the server started at second 40
			at(ms, 0, 45, 1, 0.02)
			return ms
		},
		way: fn,
		check: func(t *testing.T, o Outcome) {
			want(t, "seconds", o.Seconds, 80, 0)
			want(t, "instance-seconds", o.InstanceSeconds, 60.6, 0.01)
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, ReplayFunction(trafficOf(tc.ms()), tc.way))
		})
	}
}

func TestReplayService(t *testing.T) {
	ms := minutes(10)
	ms[3].Covered = 30 // the server stopped at second 30…
	ms = append(ms[:4], ms[5:]...)
	for i := 4; i < len(ms); i++ { // …and came back a minute later
		ms[i].At = ms[i].At.Add(time.Minute)
	}
	steadyLoad(ms, 0, 2, 5, 0.1)
	o := ReplayService(trafficOf(ms), 2)
	want(t, "seconds", o.Seconds, 8*60+30, 0)
	want(t, "instance-seconds", o.InstanceSeconds, 2*(8*60+30), 0)
	want(t, "requests", o.Requests, 600, 0)
	want(t, "cold starts", o.ColdStarts, 0, 0)
}

// TestSpreadKeepsEveryRequest: the replay's arrivals add up to the
// history's, in the active seconds.
func TestSpreadKeepsEveryRequest(t *testing.T) {
	for _, n := range []int64{1, 2, 7, 299, 300, 301, 100000} {
		ms := minutes(1)
		ms[0].Requests = n
		ms[0].Active = 1<<10 | 1<<11 | 1<<40
		tr := trafficOf(ms)
		var got int64
		for st, a := range tr[0].arrivals {
			if a > 0 && ms[0].Active&(1<<(st/stepsPerSecond)) == 0 {
				t.Fatalf("%d requests: arrivals in inactive second %d", n, st/stepsPerSecond)
			}
			got += int64(a)
		}
		if got != n {
			t.Errorf("%d requests spread as %d", n, got)
		}
	}
}

// TestReplayIsQuick: a week of steady traffic replays in well under the
// time a person waits for an answer.
func TestReplayIsQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("a week of seconds")
	}
	ms := make([]history.Minute, 7*24*60)
	for i := range ms {
		ms[i] = history.Minute{At: t0.Add(time.Duration(i) * time.Minute), Covered: 60}
	}
	steadyLoad(ms, 0, len(ms), 5, 0.05)
	o := ReplayFunction(trafficOf(ms), FunctionWay{ColdStart: 20 * time.Millisecond})
	want(t, "instance-seconds", o.InstanceSeconds, 7*86400, 1)
}

func want(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol+1e-9 {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, tol)
	}
}
