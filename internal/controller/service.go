package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// ImageResolver turns an image reference into the digest a revision pins.
type ImageResolver interface {
	// ResolveImage returns the digest of ref, pulling it if it is not
	// local. NotFound when it cannot be had.
	ResolveImage(ctx context.Context, ref string) (digest string, err error)
}

// EventRecorder stores an Event about an object.
type EventRecorder func(ctx context.Context, s store.Store, env, object, typ, reason, msg string)

// ServiceConfig is what the service controller needs.
type ServiceConfig struct {
	Store   store.Store
	Images  ImageResolver
	Events  EventRecorder
	Logger  *slog.Logger
	Workers int
	// RevisionHistoryLimit is how many unused revisions are kept per
	// service for rollbacks (default 10).
	RevisionHistoryLimit int
}

// Services turns each Service into revisions and instances: it makes a
// revision when the template changes, creates instances of the current
// revision and drains old ones within the update strategy's surge and
// unavailability limits, and writes the service's status.
type Services struct {
	workloads
	cfg ServiceConfig
	log *slog.Logger
	q   *queue
}

func NewServices(cfg ServiceConfig) *Services {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.RevisionHistoryLimit == 0 {
		cfg.RevisionHistoryLimit = 10
	}
	if cfg.Events == nil {
		cfg.Events = func(context.Context, store.Store, string, string, string, string, string) {}
	}
	return &Services{
		workloads: workloads{store: cfg.Store, images: cfg.Images, events: cfg.Events, historyLimit: cfg.RevisionHistoryLimit},
		cfg:       cfg, log: cfg.Logger, q: newQueue(),
	}
}

// Run syncs services until ctx ends.
func (c *Services) Run(ctx context.Context) error {
	go feed(ctx, c.cfg.Store, v1.KindService, c.q)
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := pruneEvents(ctx, c.cfg.Store, time.Now()); err != nil && ctx.Err() == nil {
					c.log.Warn("prune events", "err", err)
				}
			}
		}
	}()
	runWorkers(ctx, c.q, c.cfg.Workers, c.sync, func(key string, err error) {
		c.log.Warn("sync failed; will retry", "service", key, "err", err)
	})
	return nil
}

func (c *Services) sync(ctx context.Context, key string) error {
	env, name, _ := strings.Cut(key, "/")
	o := owner{Kind: v1.KindService, Env: env, Name: name}
	var svc v1.Service
	err := store.Get(ctx, c.cfg.Store, store.Key{Kind: v1.KindService, Environment: env, Name: name}, &svc)
	if v1.IsNotFound(err) {
		return c.cleanup(ctx, o)
	}
	if err != nil {
		return err
	}
	o.Labels = svc.Metadata.Labels

	cur, revs, err := c.currentRevision(ctx, o, svc.Spec.Template, progress{&svc, &svc.Status.Conditions, &svc.Status.ObservedGeneration})
	if err != nil {
		return err
	}
	if cur == nil {
		// No revision can be made (image missing): keep whatever runs,
		// retry later. The status already says why.
		c.q.AddAfter(key, 5*time.Second)
		return nil
	}

	insts, err := c.instances(ctx, o)
	if err != nil {
		return err
	}
	if err := c.rollout(ctx, o, &svc, cur, insts); err != nil {
		return err
	}
	// Re-read what rollout did, to report it.
	if insts, err = c.instances(ctx, o); err != nil {
		return err
	}
	if err := c.updateStatus(ctx, &svc, cur, insts); err != nil {
		return err
	}
	return c.pruneRevisions(ctx, cur, revs, insts)
}

// rollout creates and drains instances one step towards the desired state,
// within the strategy's limits: planRollout decides, rollout acts.
func (c *Services) rollout(ctx context.Context, o owner, svc *v1.Service, cur *v1.Revision, insts []*v1.Instance) error {
	plan := planRollout(rolloutLimits{
		Desired:        int(ptrOr(svc.Spec.Replicas, 1)),
		MaxSurge:       int(ptrOr(svc.Spec.Strategy.MaxSurge, 1)),
		MaxUnavailable: int(ptrOr(svc.Spec.Strategy.MaxUnavailable, 0)),
	}, cur.Spec.Number, insts)
	for _, i := range plan.Drain {
		if err := c.drain(ctx, i, false); err != nil {
			return err
		}
	}
	for range plan.Create {
		inst, err := c.createInstance(ctx, o, cur, false)
		if err != nil {
			return err
		}
		c.event(ctx, o, "Normal", "Created", fmt.Sprintf("Created instance %s (revision %d)", inst.Metadata.Name, cur.Spec.Number))
	}
	return nil
}

type rolloutLimits struct {
	Desired, MaxSurge, MaxUnavailable int
}

// rolloutPlan is one step of a rollout.
type rolloutPlan struct {
	Create int
	Drain  []*v1.Instance
}

// planRollout decides one step towards `Desired` ready instances of
// revision cur. It is called again on every instance change, so it only
// takes the steps allowed now:
//   - current instances beyond Desired are drained (not ready first);
//   - old instances that are not ready serve nobody and go at once;
//   - new instances are created while the total stays within
//     Desired+MaxSurge;
//   - old ready instances are drained while at least
//     Desired-MaxUnavailable instances stay ready.
func planRollout(l rolloutLimits, cur int64, insts []*v1.Instance) rolloutPlan {
	if l.MaxSurge == 0 && l.MaxUnavailable == 0 {
		l.MaxSurge = 1
	}
	var plan rolloutPlan
	var newer, older []*v1.Instance
	for _, i := range insts {
		switch {
		case i.Spec.Draining:
		case i.Spec.Revision == cur:
			newer = append(newer, i)
		default:
			older = append(older, i)
		}
	}
	if len(newer) > l.Desired {
		sortForRemoval(newer)
		extra := len(newer) - l.Desired
		plan.Drain = append(plan.Drain, newer[:extra]...)
		newer = newer[extra:]
	}
	var oldReady []*v1.Instance
	for _, i := range older {
		if i.Status.Ready {
			oldReady = append(oldReady, i)
		} else {
			plan.Drain = append(plan.Drain, i)
		}
	}
	total := len(newer) + len(oldReady)
	plan.Create = max(0, min(l.Desired-len(newer), l.Desired+l.MaxSurge-total))

	readyNew := 0
	for _, i := range newer {
		if i.Status.Ready {
			readyNew++
		}
	}
	available := readyNew + len(oldReady)
	sortForRemoval(oldReady)
	for _, i := range oldReady {
		if available-1 < l.Desired-l.MaxUnavailable {
			break
		}
		plan.Drain = append(plan.Drain, i)
		available--
	}
	return plan
}

// sortForRemoval puts the instances to remove first at the front: not ready
// before ready, then newest first.
func sortForRemoval(l []*v1.Instance) {
	sort.SliceStable(l, func(a, b int) bool {
		if l[a].Status.Ready != l[b].Status.Ready {
			return !l[a].Status.Ready
		}
		return l[a].Metadata.CreationTimestamp.After(l[b].Metadata.CreationTimestamp)
	})
}

func (c *Services) updateStatus(ctx context.Context, svc *v1.Service, cur *v1.Revision, insts []*v1.Instance) error {
	desired := ptrOr(svc.Spec.Replicas, 1)
	unavail := ptrOr(svc.Spec.Strategy.MaxUnavailable, 0)
	st := svc.Status
	st.ObservedGeneration = svc.Metadata.Generation
	st.Revision = cur.Spec.Number
	st.ImageDigest = cur.Spec.ImageDigest
	st.Replicas, st.ReadyReplicas, st.UpdatedReplicas = 0, 0, 0
	st.Instances = nil
	sort.Slice(insts, func(a, b int) bool { return insts[a].Metadata.Name < insts[b].Metadata.Name })
	var updatedReady int32
	for _, i := range insts {
		s := i.Status
		s.Name = i.Metadata.Name
		s.Revision = i.Spec.Revision
		if i.Spec.Draining && s.Phase != v1.PhaseTerminating {
			s.Phase = v1.PhaseTerminating
			s.Ready = false
		}
		st.Instances = append(st.Instances, s)
		if i.Spec.Draining {
			continue
		}
		st.Replicas++
		if i.Status.Ready {
			st.ReadyReplicas++
		}
		if i.Spec.Revision == cur.Spec.Number {
			st.UpdatedReplicas++
			if i.Status.Ready {
				updatedReady++
			}
		}
	}
	done := st.UpdatedReplicas == desired && updatedReady == desired && st.Replicas == desired && len(st.Instances) == int(desired)
	conds := slices.Clone(st.Conditions)
	conds = putCondition(conds, v1.ConditionAvailable, st.ReadyReplicas >= desired-unavail, "MinimumReplicasAvailable",
		fmt.Sprintf("%d of %d instances ready", st.ReadyReplicas, desired))
	if done {
		conds = putCondition(conds, v1.ConditionProgressing, true, "RolloutComplete",
			fmt.Sprintf("revision %d is available", cur.Spec.Number))
	} else {
		conds = putCondition(conds, v1.ConditionProgressing, true, "RollingOut",
			fmt.Sprintf("revision %d: %d of %d updated instances ready", cur.Spec.Number, updatedReady, desired))
	}
	st.Conditions = conds
	if jsonEqual(svc.Status, st) {
		return nil
	}
	wasDone := condIs(svc.Status.Conditions, v1.ConditionProgressing, "RolloutComplete")
	svc.Status = st
	if err := store.Update(ctx, c.cfg.Store, svc); err != nil {
		return err // conflict: requeued and recomputed
	}
	if done && !wasDone {
		c.cfg.Events(ctx, c.cfg.Store, svc.Metadata.Environment, v1.KindService+"/"+svc.Metadata.Name, "Normal", "RolloutComplete",
			fmt.Sprintf("Revision %d rolled out: %d of %d ready", cur.Spec.Number, updatedReady, desired))
	}
	return nil
}

func putCondition(conds []v1.Condition, typ string, status bool, reason, msg string) []v1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			if conds[i].Status != status {
				conds[i].LastTransitionTime = time.Now().UTC().Truncate(time.Second)
			}
			conds[i].Status, conds[i].Reason, conds[i].Message = status, reason, msg
			return conds
		}
	}
	return append(conds, v1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastTransitionTime: time.Now().UTC().Truncate(time.Second)})
}

func condIs(conds []v1.Condition, typ, reason string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Reason == reason
		}
	}
	return false
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func randSuffix() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])[:5]
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jsonEqual compares two statuses as they would be stored.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
