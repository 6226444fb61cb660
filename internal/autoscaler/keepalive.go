package autoscaler

import (
	"fmt"
	"slices"
	"time"
)

// Keep-alive that learns, after the hybrid histogram policy of "Serverless
// in the Wild" (Shahrad et al., ATC '20): each function's own idle gaps
// (from its last activity to the next request) decide how long an idle
// instance is kept and how long its prepared standby outlives the last
// request. A function called every few seconds keeps its instance across
// its gaps; one called a few times a day goes to zero at once (its
// standby answers in milliseconds) and gives its standby's memory back
// after the gaps it has shown are long past.
const (
	// gapHistory is how many recent gaps are kept per function.
	gapHistory = 128
	// minGap is the shortest pause that counts as a gap: shorter ones are
	// one busy stretch.
	minGap = time.Second
	// minGaps is how many gaps it takes to learn: until then the defaults.
	minGaps = 10
	// The learned idle timeout stays within these bounds.
	minLearnedIdle = 10 * time.Second
	maxLearnedIdle = 10 * time.Minute
	// DefaultStandbyIdle is how long a standby outlives a function's last
	// activity while nothing longer was learned.
	DefaultStandbyIdle = time.Hour
	// maxStandbyIdle bounds a learned standby time.
	maxStandbyIdle = 24 * time.Hour
)

// gaps is a function's recent idle gaps, newest overwriting oldest.
type gaps struct {
	d    [gapHistory]time.Duration
	n    int // how many are held (at most gapHistory)
	next int
}

func (g *gaps) add(d time.Duration) {
	g.d[g.next] = d
	g.next = (g.next + 1) % gapHistory
	g.n = min(g.n+1, gapHistory)
}

// list is the held gaps, oldest first.
func (g *gaps) list() []time.Duration {
	out := make([]time.Duration, 0, g.n)
	for i := range g.n {
		out = append(out, g.d[(g.next-g.n+i+gapHistory)%gapHistory])
	}
	return out
}

// percentile of the held gaps, p in [0, 1].
func (g *gaps) percentile(p float64) time.Duration {
	if g.n == 0 {
		return 0
	}
	s := slices.Clone(g.d[:g.n])
	slices.Sort(s)
	return s[int(p*float64(g.n-1)+0.5)]
}

// KeepAlive is the choice made for one function, with its reason.
type KeepAlive struct {
	// IdleTimeout is how long an idle instance is kept before zero.
	IdleTimeout time.Duration
	// StandbyIdle is how long after the last activity the prepared
	// standby is kept; after it the next request starts from nothing.
	StandbyIdle time.Duration
	// Learned says the figures come from the function's gaps (Gaps of
	// them), not defaults; UserIdleTimeout that the idle timeout is the
	// user's own.
	Learned, UserIdleTimeout bool
	Gaps                     int
	Reason                   string
}

// learn chooses a function's keep-alive from its gaps; userIdle is the
// idle timeout its spec sets (0: none), which always wins.
func learn(g *gaps, userIdle time.Duration) KeepAlive {
	k := KeepAlive{IdleTimeout: DefaultIdleTimeout, StandbyIdle: DefaultStandbyIdle, Gaps: g.n}
	if userIdle > 0 {
		k.IdleTimeout, k.UserIdleTimeout = userIdle, true
	}
	if g.n < minGaps {
		k.Reason = fmt.Sprintf("learning: %d of %d idle gaps seen", g.n, minGaps)
		if k.UserIdleTimeout {
			k.Reason = "idle timeout set in the spec; standby: " + k.Reason
		}
		return k
	}
	k.Learned = true
	p50, p90, p99 := g.percentile(0.5), g.percentile(0.9), g.percentile(0.99)
	var why string
	switch {
	case p99 <= maxLearnedIdle:
		// Nearly every gap is short: an instance kept across them means
		// no cold start at all.
		k.IdleTimeout = clampDuration(p99+p99/10, minLearnedIdle, maxLearnedIdle)
		why = fmt.Sprintf("99%% of the last %d gaps were under %s: instances kept %s", g.n, round(p99), round(k.IdleTimeout))
	case p50 > maxLearnedIdle:
		// Gaps are long: keeping an instance is waste; the standby
		// answers the next request in milliseconds.
		k.IdleTimeout = minLearnedIdle
		why = fmt.Sprintf("gaps are long (median %s of the last %d): to zero after %s, the standby answers the next request", round(p50), g.n, round(k.IdleTimeout))
	default:
		k.IdleTimeout = clampDuration(p90+p90/10, minLearnedIdle, maxLearnedIdle)
		why = fmt.Sprintf("90%% of the last %d gaps were under %s: instances kept %s", g.n, round(p90), round(k.IdleTimeout))
	}
	// The standby outlives every gap seen (with a margin), and at least
	// the default: giving it back only pays after a silence longer than
	// the function has ever shown.
	k.StandbyIdle = clampDuration(2*p99, DefaultStandbyIdle, maxStandbyIdle)
	why += fmt.Sprintf("; standby kept %s after the last request", round(k.StandbyIdle))
	if k.UserIdleTimeout {
		k.IdleTimeout = userIdle
		why = "idle timeout set in the spec; learned: " + why
	}
	k.Reason = why
	return k
}

func clampDuration(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}

// round shows a duration as a person reads it.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// Gaps is a function's idle gaps as the autoscaler learns from them, for
// a model that replays its keep-alive (the advisor's replay).
type Gaps struct{ g gaps }

// Saw records activity at `at` after the last activity `last`; it
// reports whether that pause was a gap (and so may change the choice).
func (g *Gaps) Saw(last, at time.Time) bool {
	if last.IsZero() || at.Sub(last) < minGap {
		return false
	}
	g.g.add(at.Sub(last))
	return true
}

// KeepAlive is the autoscaler's choice from the gaps seen; userIdle is the
// spec's idle timeout (0: none), which always wins.
func (g *Gaps) KeepAlive(userIdle time.Duration) KeepAlive { return learn(&g.g, userIdle) }
