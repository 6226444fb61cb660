package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is the delay schedule of one retrier. The zero count starts at
// Base; a Backoff is not safe for concurrent use.
type Backoff struct {
	// Base is the first delay.
	Base time.Duration
	// Max bounds every delay; zero leaves them unbounded.
	Max time.Duration
	// Jitter, from 0 to 1, takes up to that fraction off each delay at
	// random, so that retriers that failed together do not all come back
	// together. Delay ignores it; Next and Wait apply it.
	Jitter float64
	// After makes the timer Sleep and Wait wait on; nil means a real
	// timer. Tests inject a clock here.
	After func(time.Duration) <-chan time.Time

	tries int
}

// Delay is the delay before retry n, counting from 0: Base × 2^n, at most
// Max, without jitter. It is for callers that keep the count themselves
// (in a stored record, say) rather than in the Backoff.
func (b *Backoff) Delay(n int) time.Duration {
	d := b.Base
	if d <= 0 {
		return 0
	}
	for range max(n, 0) {
		if b.Max > 0 && d >= b.Max {
			break
		}
		if d > math.MaxInt64/2 {
			return time.Duration(math.MaxInt64)
		}
		d *= 2
	}
	if b.Max > 0 {
		d = min(d, b.Max)
	}
	return d
}

// Next returns the delay before the next retry, jittered, and counts the
// retry.
func (b *Backoff) Next() time.Duration {
	d := b.Delay(b.tries)
	if b.tries < math.MaxInt32 {
		b.tries++
	}
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		d -= time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

// Reset starts the schedule again from Base: after a success, or after a
// run long enough that its failure is news rather than a crash loop.
func (b *Backoff) Reset() { b.tries = 0 }

// Wait waits out Next. It returns false, at once, when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) bool {
	return b.Sleep(ctx, b.Next())
}

// Sleep waits d on the Backoff's timer, for callers that report the delay
// (from Next) before waiting it. It returns false when ctx ends first.
func (b *Backoff) Sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	var c <-chan time.Time
	if b.After != nil {
		c = b.After(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		c = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}
