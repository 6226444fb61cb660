package autoscaler

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// DefaultTick is the sample period.
const DefaultTick = 200 * time.Millisecond

// Source is what the autoscaler samples; the gateway provides it
// (*gateway.Gateway has this method).
type Source interface {
	// Load is the function's requests in the gateway now (in flight, and
	// held while it scales from zero), and the cumulative count of requests
	// that arrived for it. Both in one call so that they are read together.
	Load(env, name string) (inFlight int, requests int64)
}

// ReadySource is optional on a Source: the function's ready instances.
// Without it the autoscaler takes its own last decision as the ready
// count, which makes panic mode react later to a burst during a cold start.
type ReadySource interface {
	Ready(env, name string) int
}

// Config builds an Autoscaler.
type Config struct {
	Source Source
	// Clock is time.Now unless a test injects one.
	Clock func() time.Time
	// Tick is the sample period (DefaultTick).
	Tick time.Duration
	// Ticks, when set, replaces the Tick timer: Run samples once per value
	// received, at Clock's time. Tests drive the loop with it.
	Ticks  <-chan time.Time
	Logger *slog.Logger
	// OnChange is called when a function's desired count changes (or
	// whether it wants a prepared standby: WantsStandby), one call
	// at a time, never after Remove returned. It must not call Set, Remove
	// or Demand (Desired and Status are fine): enqueue and return.
	OnChange func(env, name string, desired int)
	// MaxStandbys caps the prepared standbys of all functions together
	// (0: no cap). Over it, the functions least recently active give
	// theirs back first.
	MaxStandbys int
}

type key struct{ env, name string }

type function struct {
	p Params // normalized
	// registered is false for a function known only from Demand (a
	// request that arrived before the controller's Set): it is decided with
	// default parameters and forgotten once back at zero.
	registered bool
	samples    []Sample
	state      State
	ready      int // last ready count used, for Status
	reported   int // the last desired count OnChange was given (or the caller's initial)

	// userIdle is the idle timeout the spec sets (0: learn it); gaps and
	// keep are what was learned (keepalive.go).
	userIdle time.Duration
	gaps     gaps
	keep     KeepAlive
	// since is when the function was registered: a function never called
	// keeps its standby for StandbyIdle from then. standby is whether it
	// wants one now; standbyReported what OnChange last told.
	since                    time.Time
	standby, standbyReported bool
	// peak is the most instances the function wanted since peakAt, within
	// its standby keep-alive: that many may be woken at once again.
	peak   int
	peakAt time.Time
}

// MaxStandbysPerFunction bounds one function's prepared standbys.
const MaxStandbysPerFunction = 10

// settle brings the function's standby wishes up to its state at now.
func (f *function) settle(now time.Time) {
	if f.state.Desired >= f.peak || now.Sub(f.peakAt) > f.keep.StandbyIdle {
		f.peak, f.peakAt = f.state.Desired, now
	}
	f.standby = f.wantsStandby(now)
}

// standbys is how many prepared standbys f keeps now: enough for its
// recent peak beside what runs (one at least) while it wants any.
func (f *function) standbys() int {
	if !f.standby {
		return 0
	}
	return min(max(f.peak-f.state.Desired, 1), MaxStandbysPerFunction)
}

// effective is p with the idle timeout the keep-alive chose.
func (f *function) effective() Params {
	p := f.p
	p.IdleTimeout = f.keep.IdleTimeout
	return p
}

// wantsStandby says whether f should keep a prepared standby at now: it
// gives it back once idle at zero for longer than its keep-alive says.
func (f *function) wantsStandby(now time.Time) bool {
	last := f.since
	if f.state.LastActive.After(last) {
		last = f.state.LastActive
	}
	return f.state.Desired > 0 || now.Sub(last) < f.keep.StandbyIdle
}

// sawGap records an arrival at `at` after the function's last activity
// `last`, if it was a pause long enough to be a gap, and learns from it.
func (f *function) sawGap(last, at time.Time) {
	if last.IsZero() || at.Sub(last) < minGap {
		return
	}
	f.gaps.add(at.Sub(last))
	f.keep = learn(&f.gaps, f.userIdle)
}

// Autoscaler samples every registered function each tick and decides its
// desired instance count with Decide.
type Autoscaler struct {
	cfg Config
	log *slog.Logger

	// notify serializes OnChange so that calls for one function arrive in
	// the order of the decisions, and the last call carries the last one.
	notify sync.Mutex
	mu     sync.Mutex
	fns    map[key]*function
	// seeds are idle gaps recorded by an earlier server, for functions
	// not known yet (RestoreGaps).
	seeds map[key][]time.Duration
}

// New returns an Autoscaler; Run starts its sampling.
func New(cfg Config) *Autoscaler {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Autoscaler{cfg: cfg, log: log, fns: map[key]*function{}}
}

// Set registers a function or updates its parameters; calling it again
// with the same values changes nothing (the function controller calls it on
// every sync). initial is the function's ready instances, used only when
// the function is not yet known, as after a restart: those are kept for a
// stable window and not taken to zero before an idle timeout.
//
// A zero p.IdleTimeout is learned from the function's own idle gaps
// (keepalive.go); a set one always wins.
func (a *Autoscaler) Set(env, name string, p Params, initial int) {
	userIdle := max(p.IdleTimeout, 0)
	p = p.normalized()
	k := key{env, name}
	now := a.cfg.Clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.fns[k]; f != nil {
		if !f.registered {
			f.since = now
		}
		f.p, f.registered = p, true
		if f.userIdle != userIdle {
			f.userIdle = userIdle
			f.keep = learn(&f.gaps, userIdle)
		}
		return
	}
	f := &function{
		p:          p,
		registered: true,
		state:      Resume(p, initial, now),
		ready:      initial,
		reported:   initial,
		userIdle:   userIdle,
		since:      now,
	}
	a.seed(k, f)
	f.keep = learn(&f.gaps, userIdle)
	f.settle(now)
	f.standbyReported = f.standby
	a.fns[k] = f
}

// seed gives a new function the gaps an earlier server recorded for it.
func (a *Autoscaler) seed(k key, f *function) {
	for _, d := range a.seeds[k] {
		f.gaps.add(d)
	}
	delete(a.seeds, k)
}

// Gaps returns every function's recorded idle gaps, oldest first, by
// "ENV/NAME": what a restarted server should not have to learn again.
func (a *Autoscaler) Gaps() map[string][]time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][]time.Duration, len(a.fns)+len(a.seeds))
	for k, d := range a.seeds {
		out[k.env+"/"+k.name] = slices.Clone(d)
	}
	for k, f := range a.fns {
		if f.gaps.n > 0 {
			out[k.env+"/"+k.name] = f.gaps.list()
		}
	}
	return out
}

// RestoreGaps seeds the idle gaps of functions not known yet, by
// "ENV/NAME" as Gaps returns them; each function learns from them when it
// is registered.
func (a *Autoscaler) RestoreGaps(m map[string][]time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seeds == nil {
		a.seeds = map[key][]time.Duration{}
	}
	for id, d := range m {
		env, name, ok := strings.Cut(id, "/")
		if !ok || a.fns[key{env, name}] != nil {
			continue
		}
		a.seeds[key{env, name}] = slices.Clone(d)
	}
}

// Remove forgets a function; no OnChange for it follows.
func (a *Autoscaler) Remove(env, name string) {
	a.notify.Lock()
	defer a.notify.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.fns, key{env, name})
}

// Demand says a request is waiting for a function at zero: its desired
// count becomes at least 1 and OnChange is called before Demand returns.
// A function not registered yet (a request racing the controller's first
// Set) is woken with default parameters, which Set then replaces, so the
// demand is not lost.
func (a *Autoscaler) Demand(env, name string) {
	k := key{env, name}
	a.mu.Lock()
	f := a.fns[k]
	now := a.cfg.Clock()
	if f == nil {
		f = &function{p: Params{}.normalized(), since: now}
		a.seed(k, f)
		f.keep = learn(&f.gaps, 0)
		a.fns[k] = f
	}
	f.sawGap(f.state.LastActive, now)
	f.state = Wake(f.effective(), f.state, now)
	f.settle(now)
	changed := f.state.Desired != f.reported || f.standby != f.standbyReported
	a.mu.Unlock()
	if changed {
		a.deliver(k, "demand")
	}
}

// WantsStandby says whether the function should keep a prepared standby
// now (true for one not known: the default).
func (a *Autoscaler) WantsStandby(env, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.fns[key{env, name}]; f != nil {
		return f.standby
	}
	return true
}

// Standbys is how many prepared standbys the function should keep now:
// as many as it recently woke at once beyond what runs, one at least
// while it wants a standby (one for a function not known), at most
// MaxStandbysPerFunction.
func (a *Autoscaler) Standbys(env, name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.fns[key{env, name}]; f != nil {
		return f.standbys()
	}
	return 1
}

// Desired is the function's current decision (0 when not registered).
func (a *Autoscaler) Desired(env, name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.fns[key{env, name}]; f != nil {
		return f.state.Desired
	}
	return 0
}

// Status is a function's autoscaling figures, for describe.
type Status struct {
	Desired int
	Ready   int
	// InFlight is the latest sample; StableAverage and PanicAverage are
	// the mean in-flight over the stable and panic windows.
	InFlight                    float64
	StableAverage, PanicAverage float64
	Panicking                   bool
	LastActive                  time.Time
	Params                      Params // with defaults filled in, the idle timeout as chosen
	KeepAlive                   KeepAlive
	// Standby says whether a prepared standby is wanted now, Standbys how
	// many.
	Standby  bool
	Standbys int
}

// Status reports a function's figures; false when it is not registered.
func (a *Autoscaler) Status(env, name string) (Status, bool) {
	now := a.cfg.Clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fns[key{env, name}]
	if f == nil {
		return Status{}, false
	}
	st := Status{
		Desired:    f.state.Desired,
		Ready:      f.ready,
		Panicking:  f.state.Panicking(),
		LastActive: f.state.LastActive,
		Params:     f.effective(),
		KeepAlive:  f.keep,
		Standby:    f.standby,
		Standbys:   f.standbys(),
	}
	if n := len(f.samples); n > 0 {
		st.InFlight = f.samples[n-1].InFlight
	}
	st.StableAverage, _ = average(f.samples, now.Add(-f.p.StableWindow), now)
	st.PanicAverage, _ = average(f.samples, now.Add(-f.p.PanicWindow), now)
	return st, true
}

// Run samples every function each tick until ctx ends.
func (a *Autoscaler) Run(ctx context.Context) error {
	if a.cfg.Source == nil {
		return v1.Invalid("autoscaler: no Source")
	}
	ticks := a.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(a.cfg.Tick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			a.tick()
		}
	}
}

func (a *Autoscaler) tick() {
	a.mu.Lock()
	keys := make([]key, 0, len(a.fns))
	for k := range a.fns {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	// A stable order keeps OnChange calls and logs reproducible.
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].env != keys[j].env {
			return keys[i].env < keys[j].env
		}
		return keys[i].name < keys[j].name
	})

	readySource, hasReady := a.cfg.Source.(ReadySource)
	for _, k := range keys {
		// Sample outside the lock: the source takes its own locks.
		inFlight, requests := a.cfg.Source.Load(k.env, k.name)
		ready := -1
		if hasReady {
			ready = readySource.Ready(k.env, k.name)
		}
		now := a.cfg.Clock()

		a.mu.Lock()
		f := a.fns[k]
		if f == nil { // removed meanwhile
			a.mu.Unlock()
			continue
		}
		f.samples = append(trim(f.samples, now.Add(-f.p.StableWindow)), Sample{At: now, InFlight: float64(inFlight), Requests: requests})
		if ready < 0 {
			ready = f.state.Desired
		}
		f.ready = ready
		last := f.state.LastActive
		_, f.state = Decide(f.effective(), f.samples, f.state, ready, now)
		if f.state.LastActive.After(last) {
			f.sawGap(last, f.state.LastActive)
		}
		f.settle(now)
		if !f.registered && f.state.Desired == 0 && f.reported == 0 {
			delete(a.fns, k)
		}
		a.mu.Unlock()
	}
	// Decisions are told once the standby cap had its say, so a capped
	// function's standby does not flap within a tick.
	a.capStandbys()
	for _, k := range keys {
		a.deliver(k, "tick")
	}
}

// capStandbys takes the standby from the functions least recently active
// while more than MaxStandbys want one.
func (a *Autoscaler) capStandbys() {
	if a.cfg.MaxStandbys <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type cand struct {
		k    key
		last time.Time
	}
	var want []cand
	for k, f := range a.fns {
		if f.standby && f.state.Desired < f.p.Max {
			last := f.since
			if f.state.LastActive.After(last) {
				last = f.state.LastActive
			}
			want = append(want, cand{k, last})
		}
	}
	if len(want) <= a.cfg.MaxStandbys {
		return
	}
	sort.Slice(want, func(i, j int) bool {
		if !want[i].last.Equal(want[j].last) {
			return want[i].last.After(want[j].last)
		}
		return want[i].k.env+"/"+want[i].k.name < want[j].k.env+"/"+want[j].k.name
	})
	for _, c := range want[a.cfg.MaxStandbys:] {
		a.fns[c.k].standby = false
	}
}

// trim drops the samples at or before from, reusing the backing array once
// the dropped prefix is as large as what is kept so it does not grow.
func trim(s []Sample, from time.Time) []Sample {
	i := 0
	for i < len(s) && !s[i].At.After(from) {
		i++
	}
	if i == 0 {
		return s
	}
	if i >= len(s)-i {
		return append(s[:0], s[i:]...)
	}
	return s[i:]
}

// deliver calls OnChange with the function's current decision if it
// differs from the last one delivered. Reading the decision under notify
// means a slow, stale delivery can never overwrite a newer one.
func (a *Autoscaler) deliver(k key, why string) {
	a.notify.Lock()
	defer a.notify.Unlock()
	a.mu.Lock()
	f := a.fns[k]
	if f == nil || (f.state.Desired == f.reported && f.standby == f.standbyReported) {
		a.mu.Unlock()
		return
	}
	from, to := f.reported, f.state.Desired
	f.reported = to
	standbyChanged := f.standby != f.standbyReported
	f.standbyReported = f.standby
	standby := f.standby
	panicking := f.state.Panicking()
	a.mu.Unlock()
	if from != to {
		a.log.Info("scale", "env", k.env, "name", k.name, "from", from, "to", to, "panic", panicking, "by", why)
	}
	if standbyChanged {
		a.log.Info("standby", "env", k.env, "name", k.name, "wanted", standby, "by", why)
	}
	if a.cfg.OnChange != nil {
		a.cfg.OnChange(k.env, k.name, to)
	}
}
