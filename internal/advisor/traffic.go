package advisor

import (
	"math"
	"time"

	"berth.dev/berth/internal/history"
)

// step is the replay's time step: the autoscaler's sample period, so a
// request held at zero waits for a cold start to the same resolution the
// real activator releases it.
const (
	step           = 200 * time.Millisecond
	stepSeconds    = 0.2
	stepsPerSecond = 5
	stepsPerMinute = 60 * stepsPerSecond
)

// DefaultServiceTime is a request's duration when the history has none
// answered to measure it from.
const DefaultServiceTime = 50 * time.Millisecond

// minuteTraffic is one recorded minute as the replay sees it: which of its
// seconds were recorded, and the requests of each step.
type minuteTraffic struct {
	at time.Time
	// first and last bound the recorded seconds, [first, last).
	first, last int
	arrivals    [stepsPerMinute]int
	// service is the mean time a request of this minute needs from an
	// instance (its duration at the gateway less any cold-start wait).
	service float64
	// gapBefore: the history has a hole right before this minute (the
	// server was down).
	gapBefore bool
}

// meanServiceTime is the history's mean duration of a request less its
// cold-start wait, for the minutes without answers.
func meanServiceTime(ms []history.Minute) float64 {
	var busy float64
	var n int64
	for _, m := range ms {
		busy += max(0, m.BusySeconds-m.ColdStartSeconds)
		n += m.Answered
	}
	if n == 0 || busy <= 0 {
		return DefaultServiceTime.Seconds()
	}
	return busy / float64(n)
}

// trafficOf turns recorded minutes (oldest first) into replayable ones.
//
// A minute says how many requests arrived and in which seconds there was
// traffic (Active), not when each request came; the replay spreads the
// minute's requests evenly over the steps of its active seconds. That
// keeps what the autoscaler reacts to: the mean in flight over its windows
// (requests × service time) and, to the second, when traffic stopped,
// which the idle timeout counts from.
func trafficOf(ms []history.Minute) []minuteTraffic {
	fallback := meanServiceTime(ms)
	out := make([]minuteTraffic, 0, len(ms))
	for i, m := range ms {
		t := minuteTraffic{at: m.At, first: 0, last: 60, service: fallback}
		t.gapBefore = i > 0 && m.At.Sub(ms[i-1].At) > time.Minute
		contiguousNext := i+1 < len(ms) && ms[i+1].At.Sub(m.At) == time.Minute
		if c := min(max(m.Covered, 0), 60); c < 60 {
			// A partial minute is the server's first (the rest of it
			// follows) or its last before a stop.
			if contiguousNext {
				t.first = 60 - c
			} else {
				t.last = c
			}
		}
		if m.Answered > 0 && m.BusySeconds > 0 {
			t.service = max(0, m.BusySeconds-m.ColdStartSeconds) / float64(m.Answered)
			if t.service <= 0 {
				t.service = fallback
			}
		}
		spread(&t, m)
		out = append(out, t)
	}
	return out
}

// spread distributes m's requests over the steps of its active seconds
// (all its recorded seconds when none is marked), as evenly as integers
// allow, starting mid-step so a lone request lands mid-second.
func spread(t *minuteTraffic, m history.Minute) {
	if m.Requests <= 0 {
		return
	}
	var steps []int
	for pass := 0; pass < 2 && len(steps) == 0; pass++ {
		for s := t.first; s < t.last; s++ {
			if pass == 1 || m.Active&(1<<s) != 0 {
				for k := range stepsPerSecond {
					steps = append(steps, s*stepsPerSecond+k)
				}
			}
		}
	}
	if len(steps) == 0 {
		return
	}
	n := float64(m.Requests)
	per := n / float64(len(steps))
	prev := 0.0
	for i, st := range steps {
		cum := math.Floor(per*float64(i+1) + 0.5)
		t.arrivals[st] = int(cum - prev)
		prev = cum
	}
}
