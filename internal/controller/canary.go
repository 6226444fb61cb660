package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/store"
)

// canaryAt decides, at a workload's sync, which canary (if any) its
// current revision cur is in: a new revision of a workload with a canary
// strategy, made while another revision served, starts one against that
// revision; a revision changed mid-way ends the old canary (the new one is
// judged against the old canary's stable revision, unless that canary was
// promoted). A workload whose spec.traffic is set by hand, or whose
// strategy has no canary, has none. Pure: the controller acts on its
// answer.
func canaryAt(strategy *v1.Canary, traffic []v1.TrafficTarget, prev *v1.CanaryStatus, served, cur int64, exists func(int64) bool, now time.Time) (c *v1.CanaryStatus, started bool) {
	if strategy == nil || len(traffic) > 0 {
		return nil, false
	}
	if prev != nil && prev.Revision == cur {
		return prev, false
	}
	stable := served
	if prev != nil && prev.Phase != v1.CanaryPromoted {
		stable = prev.Stable
	}
	if stable == 0 || stable == cur || !exists(stable) {
		return nil, false // a first revision, or nothing left to judge against
	}
	return &v1.CanaryStatus{
		Revision: cur, Stable: stable, Step: 0, Percent: strategy.Steps[0].Percent,
		Phase: v1.CanaryProgressing, StepStarted: now.UTC(),
		Message: fmt.Sprintf("step 1 of %d: %d%% of requests", len(strategy.Steps), strategy.Steps[0].Percent),
	}, true
}

// CanaryTag is the tag a canary in progress is reachable by
// (canary-NAME.ENV), whatever its share: a blue/green step at 0 % is
// previewed there.
const CanaryTag = "canary"

// canaryTraffic is the split a canary asks for: its share to the canary,
// the rest to stable; everything to stable once rolled back or aborted,
// and nil (spec.traffic as written) once promoted.
func canaryTraffic(c *v1.CanaryStatus) []v1.TrafficTarget {
	if c == nil {
		return nil
	}
	switch c.Phase {
	case v1.CanaryProgressing:
		return []v1.TrafficTarget{{Revision: c.Stable, Percent: 100 - c.Percent}, {LatestRevision: true, Percent: c.Percent, Tag: CanaryTag}}
	case v1.CanaryRolledBack, v1.CanaryAborted:
		return []v1.TrafficTarget{{Revision: c.Stable, Percent: 100}, {LatestRevision: true, Percent: 0}}
	}
	return nil
}

// canaryKey is what the workload controllers watch of a canary: a change
// of phase or step (made by the canary controller or by hand) is theirs
// to act on.
func canaryKey(c *v1.CanaryStatus) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%d/%s/%d/%d", c.Revision, c.Phase, c.Step, c.Percent)
}

// Default analysis settings.
const (
	DefaultCanaryMinRequests = 20
	DefaultCanaryInterval    = time.Second
)

// judge compares what the gateway measured of the canary in this step with
// the analysis's limits and with the stable revision: it returns the first
// breach ("" when none), and whether the canary has served enough to pass
// the step. Limits are judged only once the canary has served MinRequests:
// one failure in three requests says little.
func judge(a v1.CanaryAnalysis, canary, stable gateway.RevisionStats) (breach string, enough bool) {
	minReq := int64(a.MinRequests)
	if minReq == 0 {
		minReq = DefaultCanaryMinRequests
	}
	if canary.Requests < minReq {
		return "", false
	}
	rate := canary.ErrorRate()
	if m := a.MaxErrorRate; m != nil && rate > *m {
		return fmt.Sprintf("error rate %.1f%% (%d of %d requests) is above the limit of %.1f%%",
			rate*100, canary.Errors, canary.Requests, *m*100), true
	}
	stableKnown := stable.Requests >= minReq
	if m := a.MaxErrorRateIncrease; m != nil && stableKnown && rate-stable.ErrorRate() > *m {
		return fmt.Sprintf("error rate %.1f%% is %.1f points above the stable revision's %.1f%% (at most %.1f allowed)",
			rate*100, (rate-stable.ErrorRate())*100, stable.ErrorRate()*100, *m*100), true
	}
	p99 := canary.Quantile(0.99)
	if a.MaxP99Latency != "" {
		if limit, err := time.ParseDuration(a.MaxP99Latency); err == nil && p99 > limit {
			return fmt.Sprintf("p99 latency %v is above the limit of %v", p99, limit), true
		}
	}
	if m := a.MaxP99LatencyRatio; m != nil && stableKnown {
		if sp := stable.Quantile(0.99); sp > 0 && float64(p99) > *m*float64(sp) {
			return fmt.Sprintf("p99 latency %v is %.1f times the stable revision's %v (at most %.1f allowed)",
				p99, float64(p99)/float64(sp), sp, *m), true
		}
	}
	return "", true
}

// measure turns gateway readings into what a status shows.
func measure(s gateway.RevisionStats) *v1.RevisionMeasure {
	return &v1.RevisionMeasure{Requests: s.Requests, Errors: s.Errors, ErrorRate: s.ErrorRate(),
		P99MS: float64(s.Quantile(0.99)) / float64(time.Millisecond)}
}

// RevisionStatsSource is what the canary controller reads of the gateway.
type RevisionStatsSource interface {
	RevisionStats(env, name string) map[int64]gateway.RevisionStats
}

// CanaryConfig configures the canary controller.
type CanaryConfig struct {
	Store     store.Store
	Services  *Services
	Functions *Functions
	Stats     RevisionStatsSource
	Events    EventRecorder
	Logger    *slog.Logger
	// Tick is how often canaries are looked at (default 200ms); each is
	// judged at its own analysis interval.
	Tick time.Duration
	Now  func() time.Time
}

// CanaryController judges every canary in progress on the gateway's
// measurements of its step, and advances, promotes or rolls it back by
// writing the workload's status.canary; the workload's controller then
// moves the instances and the split. The measurements of a step start
// when the controller first sees it (after a restart, a step's window
// starts again).
type CanaryController struct {
	cfg    CanaryConfig
	log    *slog.Logger
	base   map[string]stepBase
	judged map[string]time.Time
	wrote  map[string]time.Time // the last status write per canary
}

// measureWriteEvery bounds how often a canary's status is written only to
// show newer measurements.
const measureWriteEvery = 2 * time.Second

type stepBase struct {
	key            string // canaryKey of the step measured
	canary, stable gateway.RevisionStats
}

// NewCanaries builds the canary controller; Run starts it.
func NewCanaries(cfg CanaryConfig) *CanaryController {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tick == 0 {
		cfg.Tick = 200 * time.Millisecond
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &CanaryController{cfg: cfg, log: cfg.Logger, base: map[string]stepBase{}, judged: map[string]time.Time{}, wrote: map[string]time.Time{}}
}

// Run judges canaries until ctx ends.
func (c *CanaryController) Run(ctx context.Context) error {
	if err := waitForSync(ctx, c.cfg.Services, c.cfg.Functions); err != nil {
		return nil
	}
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.tick(ctx)
		}
	}
}

func (c *CanaryController) tick(ctx context.Context) {
	seen := map[string]bool{}
	for _, s := range c.cfg.Services.List("") {
		if s.Status.Canary.Active() && s.Status.Revision == s.Status.Canary.Revision && s.Spec.Strategy.Canary != nil {
			key := v1.KindService + "/" + s.Metadata.Environment + "/" + s.Metadata.Name
			seen[key] = true
			c.step(ctx, key, s, s.Spec.Strategy.Canary, s.Status.Canary)
		}
	}
	for _, f := range c.cfg.Functions.List("") {
		if f.Status.Canary.Active() && f.Status.Revision == f.Status.Canary.Revision && f.Spec.Strategy.Canary != nil {
			key := v1.KindFunction + "/" + f.Metadata.Environment + "/" + f.Metadata.Name
			seen[key] = true
			c.step(ctx, key, f, f.Spec.Strategy.Canary, f.Status.Canary)
		}
	}
	for k := range c.base {
		if !seen[k] {
			delete(c.base, k) // ended, or its workload is gone
			delete(c.judged, k)
			delete(c.wrote, k)
		}
	}
}

// step judges one canary and writes what follows, if anything.
func (c *CanaryController) step(ctx context.Context, key string, obj v1.Object, spec *v1.Canary, st *v1.CanaryStatus) {
	now := c.cfg.Now()
	interval := DefaultCanaryInterval
	if d, err := time.ParseDuration(spec.Analysis.Interval); err == nil && d > 0 {
		interval = d
	}
	if last, ok := c.judged[key]; ok && now.Sub(last) < interval {
		return
	}
	c.judged[key] = now
	meta := obj.GetMetadata()
	stats := c.cfg.Stats.RevisionStats(meta.Environment, meta.Name)
	b, ok := c.base[key]
	if !ok || b.key != canaryKey(st) {
		// A new step: its window starts now.
		c.base[key] = stepBase{key: canaryKey(st), canary: stats[st.Revision], stable: stats[st.Stable]}
		return
	}
	cs, ss := stats[st.Revision].Sub(b.canary), stats[st.Stable].Sub(b.stable)
	breach, enough := judge(spec.Analysis, cs, ss)
	next := *st
	next.CanaryMeasure, next.StableMeasure = measure(cs), measure(ss)
	ref := backend.Ref{Kind: obj.GetTypeMeta().Kind, Environment: meta.Environment, Name: meta.Name}
	var event func()
	switch {
	case breach != "":
		next.Phase = v1.CanaryRolledBack
		next.Message = fmt.Sprintf("rolled back at step %d of %d (%d%%): %s", st.Step+1, len(spec.Steps), st.Percent, breach)
		event = func() {
			c.cfg.Events.Record(ctx, ref.Environment, ref.Kind+"/"+ref.Name, "Warning", "CanaryRolledBack",
				fmt.Sprintf("Canary revision %d %s; all traffic back to revision %d", st.Revision, next.Message, st.Stable))
		}
	case enough && stepDone(spec.Steps[st.Step], st, now):
		if int(st.Step)+1 >= len(spec.Steps) {
			next.Phase, next.Percent = v1.CanaryPromoted, 100
			next.Message = fmt.Sprintf("promoted after %d steps", len(spec.Steps))
			event = func() {
				c.cfg.Events.Record(ctx, ref.Environment, ref.Kind+"/"+ref.Name, "Normal", "CanaryPromoted",
					fmt.Sprintf("Canary revision %d promoted after %d steps: %d requests, %.1f%% errors, p99 %.0f ms in the last",
						st.Revision, len(spec.Steps), cs.Requests, cs.ErrorRate()*100, next.CanaryMeasure.P99MS))
			}
		} else {
			next.Step++
			next.Percent = spec.Steps[next.Step].Percent
			next.StepStarted = now.UTC()
			next.Message = fmt.Sprintf("step %d of %d: %d%% of requests", next.Step+1, len(spec.Steps), next.Percent)
			event = func() {
				c.cfg.Events.Record(ctx, ref.Environment, ref.Kind+"/"+ref.Name, "Normal", "CanaryStep",
					fmt.Sprintf("Canary revision %d passed step %d (%d requests, %.1f%% errors, p99 %.0f ms): now %d%%",
						st.Revision, st.Step+1, cs.Requests, cs.ErrorRate()*100, next.CanaryMeasure.P99MS, next.Percent))
			}
		}
	default:
		if !enough {
			next.Message = fmt.Sprintf("step %d of %d: %d%% of requests; %d of %d requests needed to judge it",
				st.Step+1, len(spec.Steps), st.Percent, cs.Requests, max(int64(spec.Analysis.MinRequests), DefaultCanaryMinRequests))
		} else if spec.Steps[st.Step].Pause == v1.PauseManual {
			next.Message = fmt.Sprintf("step %d of %d: %d%% of requests; paused until `berth rollout promote`", st.Step+1, len(spec.Steps), st.Percent)
		}
	}
	if jsonEqual(&next, st) {
		return
	}
	if event == nil && next.Message == st.Message && now.Sub(c.wrote[key]) < measureWriteEvery {
		// Only the measurements moved: they are shown, not acted on, and
		// every write wakes the workload's controller and the routes.
		return
	}
	if err := c.write(ctx, obj, &next); err != nil {
		c.log.Debug("canary status not written", "workload", key, "err", err)
		return
	}
	c.wrote[key] = now
	if event != nil {
		c.log.Info("canary", "workload", key, "phase", next.Phase, "step", next.Step, "message", next.Message)
		event()
	}
}

// stepDone reports that a step's pause is over; a manual pause never is.
func stepDone(s v1.CanaryStep, st *v1.CanaryStatus, now time.Time) bool {
	if s.Pause == v1.PauseManual {
		return false
	}
	d, _ := time.ParseDuration(s.Pause)
	return !now.Before(st.StepStarted.Add(d))
}

// write stores the new canary status if the canary is still the one
// judged (its workload may have changed meanwhile: a conflict then).
func (c *CanaryController) write(ctx context.Context, obj v1.Object, next *v1.CanaryStatus) error {
	switch o := obj.(type) {
	case *v1.Service:
		cp := *o
		cp.Status.Canary = next
		return store.Update(ctx, c.cfg.Store, &cp)
	case *v1.Function:
		cp := *o
		cp.Status.Canary = next
		return store.Update(ctx, c.cfg.Store, &cp)
	}
	return fmt.Errorf("canary of a %s", strings.ToLower(obj.GetTypeMeta().Kind))
}
