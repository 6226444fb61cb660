package autoscaler

import (
	"math"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Defaults, Knative's KPA figures where it has one.
const (
	DefaultTargetUtilization = 0.7
	DefaultMax               = 10
	DefaultIdleTimeout       = 60 * time.Second
	DefaultStableWindow      = 60 * time.Second
	DefaultPanicThreshold    = 2.0
	// The panic window defaults to a tenth of the stable window (6 s).
	defaultPanicShare = 10
)

// Params are one function's scaling parameters. Zero fields take the
// defaults above; see normalized.
type Params struct {
	// Concurrency is how many requests one instance serves at once.
	Concurrency int
	// TargetUtilization is the share of Concurrency aimed for, in (0, 1].
	TargetUtilization float64
	Min, Max          int
	// IdleTimeout is how long without requests in flight and without new
	// requests before the function goes to zero (when Min is 0).
	IdleTimeout time.Duration
	// StableWindow is what the stable decision averages over; PanicWindow is
	// the short window that detects bursts.
	StableWindow, PanicWindow time.Duration
	// PanicThreshold: panic when the panic window wants at least this many
	// times the ready instances (2.0, Knative's 200%).
	PanicThreshold float64
}

// ParamsFor reads a Function's spec; unset fields stay zero and take the
// defaults.
func ParamsFor(spec v1.FunctionSpec) (Params, error) {
	p := Params{Concurrency: int(spec.Concurrency)}
	s := spec.Scale
	if s.Min != nil {
		p.Min = int(*s.Min)
	}
	if s.Max != nil {
		p.Max = int(*s.Max)
	}
	if s.TargetUtilization != nil {
		p.TargetUtilization = *s.TargetUtilization
	}
	if s.IdleTimeout != "" {
		d, err := time.ParseDuration(s.IdleTimeout)
		if err != nil || d <= 0 {
			return Params{}, v1.FieldError("spec.scale.idleTimeout", "%q is not a positive Go duration", s.IdleTimeout)
		}
		p.IdleTimeout = d
	}
	return p, nil
}

// Normalized is p with the defaults filled in, as Decide uses it (the
// advisor's replay needs the windows and bounds Decide will apply).
func (p Params) Normalized() Params { return p.normalized() }

// normalized fills in defaults and repairs what cannot be meant, so that
// Decide never divides by zero nor returns more than Max.
func (p Params) normalized() Params {
	if p.Concurrency < 1 {
		p.Concurrency = 1
	}
	if p.TargetUtilization <= 0 || math.IsNaN(p.TargetUtilization) {
		p.TargetUtilization = DefaultTargetUtilization
	}
	if p.TargetUtilization > 1 {
		p.TargetUtilization = 1
	}
	if p.Max < 1 {
		p.Max = DefaultMax
	}
	if p.Min < 0 {
		p.Min = 0
	}
	if p.Min > p.Max {
		p.Min = p.Max
	}
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	if p.StableWindow <= 0 {
		p.StableWindow = DefaultStableWindow
	}
	if p.PanicWindow <= 0 {
		p.PanicWindow = p.StableWindow / defaultPanicShare
	}
	if p.PanicWindow > p.StableWindow {
		p.PanicWindow = p.StableWindow
	}
	if p.PanicThreshold <= 1 {
		// A threshold at or below 1 would panic on any steady load.
		p.PanicThreshold = DefaultPanicThreshold
	}
	return p
}

// Sample is what the gateway reported for a function at one moment.
type Sample struct {
	At time.Time
	// InFlight is the requests in flight (held at zero included).
	InFlight float64
	// Requests is the cumulative request count: a change between two
	// samples is activity even when every request was shorter than a tick.
	Requests int64
}

// State is carried from one decision to the next.
type State struct {
	// Desired is the last decision.
	Desired int
	// PanicSince is when panic mode began (zero: not panicking);
	// LastPanic is the last time the panic conditions held. Panic ends a
	// stable window after LastPanic.
	PanicSince, LastPanic time.Time
	// LastActive is the last time a request was seen in flight or a new
	// request counted.
	LastActive time.Time
	// LastSample and Requests are the newest sample already looked at, so
	// that activity is counted once and across calls.
	LastSample time.Time
	Requests   int64
	// HoldUntil forbids scaling below Desired before it: set when the
	// autoscaler starts knowing nothing (after a restart) so a busy
	// function is not shrunk on a partial window.
	HoldUntil time.Time
}

// Panicking reports whether the state is in panic mode.
func (s State) Panicking() bool { return !s.PanicSince.IsZero() }

// Resume is the state of a function first seen with ready instances
// already running (after a restart): they are kept for a stable window and
// the function counts as active now.
func Resume(p Params, ready int, now time.Time) State {
	p = p.normalized()
	s := State{Desired: clamp(ready, p.Min, p.Max)}
	if ready > 0 {
		s.LastActive = now
		s.HoldUntil = now.Add(p.StableWindow)
	}
	return s
}

// Wake is the decision for a request waiting at zero: at least one
// instance, at once, and the function is active now.
func Wake(p Params, cur State, now time.Time) State {
	p = p.normalized()
	next := cur
	next.Desired = clamp(max(cur.Desired, 1), p.Min, p.Max)
	if now.After(next.LastActive) {
		next.LastActive = now
	}
	return next
}

// Decide returns the desired instance count from the samples (oldest
// first; those older than the stable window or after now are ignored),
// the state of the previous decision, and the ready instances. It is pure.
func Decide(p Params, samples []Sample, cur State, ready int, now time.Time) (int, State) {
	p = p.normalized()
	next := cur

	// Activity: look at each sample once.
	seen := !cur.LastSample.IsZero()
	prev := cur.Requests
	for _, s := range samples {
		if s.At.After(now) || (seen && !s.At.After(next.LastSample)) {
			continue
		}
		if s.InFlight > 0 || (seen && s.Requests != prev) {
			// A counter that went backwards was reset: count it as activity
			// rather than risk scaling a busy function to zero.
			if s.At.After(next.LastActive) {
				next.LastActive = s.At
			}
		}
		seen, prev = true, s.Requests
		next.LastSample, next.Requests = s.At, s.Requests
	}
	if next.LastActive.IsZero() && cur.Desired > 0 {
		// Instances exist but nothing was seen yet: start the idle clock now
		// rather than treat them as idle since forever.
		next.LastActive = now
	}

	stableAvg, nStable := average(samples, now.Add(-p.StableWindow), now)
	panicAvg, nPanic := average(samples, now.Add(-p.PanicWindow), now)
	if nStable == 0 {
		// No data: keep what was decided, within the bounds.
		next.Desired = clamp(cur.Desired, p.Min, p.Max)
		return next.Desired, next
	}

	unit := float64(p.Concurrency) * p.TargetUtilization
	stable := want(stableAvg, unit)
	desired := stable

	if nPanic > 0 {
		panicWant := want(panicAvg, unit)
		// At zero ready instances Knative compares with one, so a burst
		// arriving at zero panics straight to what it needs.
		if float64(panicWant) >= p.PanicThreshold*float64(max(ready, 1)) {
			if next.PanicSince.IsZero() {
				next.PanicSince = now
			}
			next.LastPanic = now
		}
		if next.Panicking() {
			// While panicking, follow the short window up, never down.
			desired = max(desired, panicWant, cur.Desired)
		}
	}
	if next.Panicking() && now.Sub(next.LastPanic) >= p.StableWindow {
		next.PanicSince, next.LastPanic = time.Time{}, time.Time{}
		desired = stable
	}
	if now.Before(cur.HoldUntil) {
		desired = max(desired, cur.Desired)
	}

	// Zero only once idleTimeout of observed samples saw nothing, and then
	// regardless of what the window still averages: a user who set 30 s
	// expects 30 s, not the stable window's tail.
	idle := !next.LastActive.IsZero() && next.LastSample.Sub(next.LastActive) >= p.IdleTimeout
	switch {
	case idle:
		desired = 0
		next.PanicSince, next.LastPanic = time.Time{}, time.Time{}
		next.HoldUntil = time.Time{}
	case desired < 1 && !next.LastActive.IsZero():
		desired = 1
	}

	next.Desired = clamp(desired, p.Min, p.Max)
	return next.Desired, next
}

// average is the mean in-flight of the samples in (from, to].
func average(samples []Sample, from, to time.Time) (float64, int) {
	var sum float64
	n := 0
	for _, s := range samples {
		if s.At.After(from) && !s.At.After(to) {
			sum += s.InFlight
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// want is ceil(concurrency / unit), tolerant of float error so that
// 7 / (10 × 0.7) is 1, not 2.
func want(concurrency, unit float64) int {
	if concurrency <= 0 {
		return 0
	}
	w := math.Ceil(concurrency/unit - 1e-9)
	if w > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(w)
}

func clamp(n, lo, hi int) int {
	return min(max(n, lo), hi)
}
