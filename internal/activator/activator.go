// Package activator holds requests for a function at zero while an
// instance starts, and lets them through the moment one is ready. It sits
// between the routes controller and the gateway: it sees every routing
// table on its way in, so it knows the instant a function gets its first
// ready endpoint, without polling.
//
// It decides nothing about how many instances run (the autoscaler does) and
// starts nothing itself: it signals demand and waits. It counts its cold
// starts and exports them as a Prometheus collector (Collector) that the
// composition root registers.
package activator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
)

// Config is what the activator needs.
type Config struct {
	// Table receives the routing table after the activator has looked at
	// it: the gateway.
	Table interface{ SetTargets([]gateway.Target) }
	// Instances reports a function's instances as the backend sees them
	// (a cache read): the watcher finds crashes there.
	Instances func(env, name string) []v1.InstanceStatus
	// Demand tells the autoscaler a request is waiting for env/name.
	Demand func(env, name string)
	// MaxHeld bounds the requests held per function (default 1000); past
	// it requests are refused with Retry-After.
	MaxHeld int
	Logger  *slog.Logger
	Now     func() time.Time
	// TracerProvider, when set, records each held request's wait as a
	// "cold start" span under the request's own span.
	TracerProvider trace.TracerProvider
}

type key struct{ env, name string }

type target struct {
	kind    string
	ready   bool
	timeout time.Duration
	waiters []chan struct{}
	held    int
	// While requests are held, one watcher looks for a crashed instance
	// for all of them; failed is closed, with failure set, when it finds
	// one. Both are reset when the last held request leaves.
	stopWatch context.CancelFunc
	failed    chan struct{}
	failure   error

	coldStarts int64
	last       *v1.ColdStart
}

// Activator implements gateway.Activator.
type Activator struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer // nil: not tracing

	metrics *metrics

	mu      sync.Mutex
	targets map[key]*target
}

var _ gateway.Activator = (*Activator)(nil)

func New(cfg Config) *Activator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxHeld == 0 {
		cfg.MaxHeld = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Activator{cfg: cfg, log: cfg.Logger, targets: map[key]*target{}}
	a.metrics = newMetrics(a)
	if cfg.TracerProvider != nil {
		a.tracer = cfg.TracerProvider.Tracer("berth.dev/berth/internal/activator")
	}
	return a
}

func (a *Activator) target(k key) *target {
	t := a.targets[k]
	if t == nil {
		t = &target{}
		a.targets[k] = t
	}
	return t
}

// SetTargets passes the table on to the gateway, then wakes the requests
// held for every target that has a ready endpoint now.
func (a *Activator) SetTargets(ts []gateway.Target) {
	a.cfg.Table.SetTargets(ts)
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[key]bool{}
	for _, t := range ts {
		k := key{t.Environment, t.Name}
		seen[k] = true
		st := a.target(k)
		st.kind = t.Kind
		st.timeout = t.Timeout
		st.ready = len(t.Endpoints) > 0
		if st.ready {
			for _, w := range st.waiters {
				close(w)
			}
			st.waiters = nil
		}
	}
	for k, st := range a.targets {
		if !seen[k] && st.held == 0 {
			delete(a.targets, k)
		}
	}
}

// Activate holds the caller until env/name has a ready endpoint, the
// function's timeout passes, or its instance fails before it is ready.
func (a *Activator) Activate(ctx context.Context, env, name string) (err error) {
	k := key{env, name}
	a.mu.Lock()
	// Only SetTargets adds targets: a request for a name the table does
	// not hold leaves nothing behind.
	st := a.targets[k]
	if st == nil || st.kind != v1.KindFunction {
		a.mu.Unlock()
		// Services are not woken: their instances are kept running.
		return v1.Unavailable("no ready instance")
	}
	if st.ready {
		a.mu.Unlock()
		return nil
	}
	if st.held >= a.cfg.MaxHeld {
		a.mu.Unlock()
		return v1.Errorf(v1.ErrTooManyRequests, "%d requests already waiting for a cold start", a.cfg.MaxHeld)
	}
	st.held++
	wake := make(chan struct{})
	st.waiters = append(st.waiters, wake)
	start := a.cfg.Now()
	if st.failed == nil {
		// The first held request starts the one crash watcher.
		st.failed = make(chan struct{})
		wctx, stop := context.WithCancel(context.Background())
		st.stopWatch = stop
		go a.watch(wctx, env, name, st, start)
	}
	failed := st.failed
	timeout := st.timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		st.held--
		// A request that gave up takes its channel with it, so a function
		// that never becomes ready does not collect them.
		if i := slices.Index(st.waiters, wake); i >= 0 {
			st.waiters = slices.Delete(st.waiters, i, i+1)
		}
		if st.held == 0 {
			st.stopWatch()
			st.stopWatch, st.failed, st.failure = nil, nil, nil
		}
		a.mu.Unlock()
	}()

	if a.tracer != nil {
		var span trace.Span
		ctx, span = a.tracer.Start(ctx, "cold start", trace.WithTimestamp(start), trace.WithAttributes(
			attribute.String(tracing.AttrWorkload, name),
			attribute.String(tracing.AttrEnvironment, env),
			attribute.String(tracing.AttrKind, v1.KindFunction),
		))
		defer func() { endColdStart(ctx, span, a.cfg.Now().Sub(start), err) }()
	}
	a.cfg.Demand(env, name)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case <-wake:
			woke := a.cfg.Now()
			d := woke.Sub(start)
			phases, from := coldStartPhases(a.cfg.Instances(env, name), start, woke)
			a.mu.Lock()
			st.coldStarts++
			st.last = &v1.ColdStart{At: start.UTC(), DurationMS: msOf(d), From: from}
			for _, p := range phases {
				st.last.Phases = append(st.last.Phases, v1.ColdStartPhase{Name: p.name, MS: msOf(p.to.Sub(p.from))})
			}
			a.mu.Unlock()
			a.log.Debug("cold start", "environment", env, "function", name, "wait", d)
			a.metrics.coldStart(env, name, d, phases)
			if a.tracer != nil {
				for _, p := range phases {
					_, span := a.tracer.Start(ctx, p.name, trace.WithTimestamp(p.from))
					span.End(trace.WithTimestamp(p.to))
				}
			}
			return nil
		case <-ctx.Done():
			return v1.Unavailable("no instance became ready within the function's timeout of %v", timeout)
		case <-failed:
			a.mu.Lock()
			err := st.failure
			a.mu.Unlock()
			return err
		}
	}
}

// watch looks for a crashed instance of a function while requests are held
// for it, for all of them at once. Crash checks are the slow path: the fast
// path is the table update.
func (a *Activator) watch(ctx context.Context, env, name string, st *target, since time.Time) {
	check := time.NewTicker(50 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if err := a.crashed(ctx, env, name, since); err != nil {
				a.mu.Lock()
				if ctx.Err() == nil {
					st.failure = err
					close(st.failed)
				}
				a.mu.Unlock()
				return
			}
		}
	}
}

// endColdStart records how the wait ended: ready, timeout (no instance in
// the function's timeout), crashed (an instance failed first), or
// cancelled (the caller went away).
func endColdStart(ctx context.Context, span trace.Span, wait time.Duration, err error) {
	outcome := "ready"
	switch {
	case err == nil:
	case v1.KindOf(err) == v1.ErrBadGateway:
		outcome = "crashed"
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		outcome = "cancelled"
	default:
		outcome = "timeout"
	}
	span.SetAttributes(
		attribute.Float64(tracing.AttrWaitMS, float64(wait.Microseconds())/1000),
		attribute.String(tracing.AttrOutcome, outcome),
	)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// crashed reports an instance of the function that exited or failed after
// start without having become ready: the held requests get its reason.
func (a *Activator) crashed(ctx context.Context, env, name string, since time.Time) error {
	for _, st := range a.cfg.Instances(env, name) {
		if st.Phase == v1.PhaseStandby || st.Phase == v1.PhaseTerminating {
			continue
		}
		switch {
		case st.Phase == v1.PhaseFailed:
			return v1.Errorf(v1.ErrBadGateway, "instance %s cannot start: %s", st.Name, st.Message)
		case st.LastExit != nil && !st.Ready && (st.Phase == v1.PhaseBackoff || !st.LastExit.At.Before(since.Add(-time.Second))):
			return v1.Errorf(v1.ErrBadGateway, "instance %s exited with code %d (%s) before it was ready; see berth logs %s",
				st.Name, st.LastExit.Code, st.LastExit.Reason, name)
		}
	}
	return nil
}

// Stats reports a function's held requests and cold starts.
func (a *Activator) Stats(env, name string) (held int, coldStarts int64, last *v1.ColdStart) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.targets[key{env, name}]
	if st == nil {
		return 0, 0, nil
	}
	return st.held, st.coldStarts, st.last
}

// phase is one step of a cold start, on the request's timeline.
type phase struct {
	name     string
	from, to time.Time
}

// coldStartPhases splits a cold start from start to woke into its phases
// (v1.ColdStartPhases), from the start record of the instance that most
// recently became ready before woke: the request's wait before that
// instance began (schedule), its sandbox, task start and init, and the
// readiness reaching the gateway (route). Each is clipped to the wait, so
// an instance that began before the request (another request woke it)
// shows only what this request waited for. Nil when no ready instance
// reports its start.
func coldStartPhases(insts []v1.InstanceStatus, start, woke time.Time) ([]phase, string) {
	var sp *v1.StartPhases
	for _, i := range insts {
		if !i.Ready || i.Start == nil || i.Start.ReadyAt.After(woke) {
			continue
		}
		if sp == nil || i.Start.ReadyAt.After(sp.ReadyAt) {
			sp = i.Start
		}
	}
	if sp == nil {
		return nil, ""
	}
	source := "nothing"
	switch {
	case sp.Thawed:
		source = "frozen standby"
	case sp.FromStandby:
		source = "standby"
	}
	at := func(msec float64) time.Duration { return time.Duration(msec * float64(time.Millisecond)) }
	sandboxEnd := sp.BeganAt.Add(at(sp.SandboxMS))
	startEnd := sandboxEnd.Add(at(sp.StartMS))
	marks := []time.Time{start, sp.BeganAt, sandboxEnd, startEnd, sp.ReadyAt, woke}
	out := make([]phase, 0, len(v1.ColdStartPhases))
	for i, name := range v1.ColdStartPhases {
		from, to := clip(marks[i], start, woke), clip(marks[i+1], start, woke)
		if to.Before(from) {
			to = from
		}
		out = append(out, phase{name: name, from: from, to: to})
	}
	return out, source
}

func clip(t, lo, hi time.Time) time.Time {
	switch {
	case t.Before(lo):
		return lo
	case t.After(hi):
		return hi
	}
	return t
}

// msOf is d in milliseconds, to the microsecond.
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
