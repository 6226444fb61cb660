package gateway

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// measureBounds are the upper bounds of the per-revision latency buckets:
// 1 ms to a minute, each 25 % above the one before, so a quantile read
// from them is at most a quarter too high.
var measureBounds = func() []time.Duration {
	var b []time.Duration
	for d := float64(time.Millisecond); d < float64(time.Minute); d *= 1.25 {
		b = append(b, time.Duration(d))
	}
	return append(b, time.Minute)
}()

// revStats counts what one revision of a target answered, lock-free.
type revStats struct {
	requests atomic.Int64
	errors   atomic.Int64
	buckets  []atomic.Int64 // len(measureBounds)+1, the last for longer
}

// revisionTable is a target's revStats by revision, replaced whole
// (copy on write) when a revision is added.
type revisionTable struct {
	mu sync.Mutex
	m  atomic.Pointer[map[int64]*revStats]
}

func (t *revisionTable) of(rev int64) *revStats {
	if m := t.m.Load(); m != nil {
		if s := (*m)[rev]; s != nil {
			return s
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := map[int64]*revStats{}
	if m := t.m.Load(); m != nil {
		if s := (*m)[rev]; s != nil {
			return s
		}
		for k, v := range *m {
			next[k] = v
		}
	}
	s := &revStats{buckets: make([]atomic.Int64, len(measureBounds)+1)}
	next[rev] = s
	t.m.Store(&next)
	return s
}

// observe counts one answer of revision rev: 5xx are errors (a client
// that went away, 499, is not the revision's fault).
func (t *revisionTable) observe(rev int64, status int, d time.Duration) {
	s := t.of(rev)
	s.requests.Add(1)
	if status >= 500 && status < 600 {
		s.errors.Add(1)
	}
	i := len(measureBounds)
	// A binary search: the bounds are sorted.
	lo, hi := 0, len(measureBounds)
	for lo < hi {
		mid := (lo + hi) / 2
		if d <= measureBounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo < i {
		i = lo
	}
	s.buckets[i].Add(1)
}

// RevisionStats is what the gateway measured of one revision of a target
// since it started: its answers, the 5xx among them, and their latency
// (the time from routing to the end of the answer) in buckets.
type RevisionStats struct {
	Requests int64
	Errors   int64
	Buckets  []int64
}

// Sub is what was measured since base, an earlier reading.
func (s RevisionStats) Sub(base RevisionStats) RevisionStats {
	out := RevisionStats{Requests: s.Requests - base.Requests, Errors: s.Errors - base.Errors, Buckets: make([]int64, len(s.Buckets))}
	for i := range s.Buckets {
		out.Buckets[i] = s.Buckets[i]
		if i < len(base.Buckets) {
			out.Buckets[i] -= base.Buckets[i]
		}
	}
	return out
}

// ErrorRate is the share of answers that were 5xx (0 without answers).
func (s RevisionStats) ErrorRate() float64 {
	if s.Requests <= 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Quantile is the latency under which a share q of the answers came, read
// as the upper bound of its bucket; 0 without answers.
func (s RevisionStats) Quantile(q float64) time.Duration {
	var total int64
	for _, n := range s.Buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, n := range s.Buckets {
		seen += n
		if seen >= rank {
			if i < len(measureBounds) {
				return measureBounds[i]
			}
			break
		}
	}
	return time.Hour // beyond the last bound
}

// RevisionStats returns what the gateway measured of each revision of a
// target (by revision number; 0 counts answers no endpoint gave). The
// canary judge reads it.
func (g *Gateway) RevisionStats(env, name string) map[int64]RevisionStats {
	g.mu.Lock()
	st := g.stats[env+"/"+name]
	g.mu.Unlock()
	out := map[int64]RevisionStats{}
	if st == nil {
		return out
	}
	m := st.revs.m.Load()
	if m == nil {
		return out
	}
	for rev, s := range *m {
		rs := RevisionStats{Requests: s.requests.Load(), Errors: s.errors.Load(), Buckets: make([]int64, len(s.buckets))}
		for i := range s.buckets {
			rs.Buckets[i] = s.buckets[i].Load()
		}
		out[rev] = rs
	}
	return out
}
