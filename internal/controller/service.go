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
	return &Services{cfg: cfg, log: cfg.Logger, q: newQueue()}
}

// Run syncs services until ctx ends.
func (c *Services) Run(ctx context.Context) error {
	go c.watch(ctx)
	// A periodic resync catches anything a lost watch event would miss;
	// syncs are idempotent so it costs only work.
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.enqueueAll(ctx)
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

func (c *Services) enqueueAll(ctx context.Context) uint64 {
	recs, rev, err := c.cfg.Store.List(ctx, v1.KindService, "")
	if err != nil {
		return 0
	}
	for _, r := range recs {
		c.q.Add(r.Key.Environment + "/" + r.Key.Name)
	}
	// Instances whose service is gone still need draining.
	insts, _, err := store.List[v1.Instance](ctx, c.cfg.Store, v1.KindInstance, "")
	if err == nil {
		for _, i := range insts {
			if i.Spec.OwnerKind == v1.KindService {
				c.q.Add(i.Metadata.Environment + "/" + i.Spec.Owner)
			}
		}
	}
	return rev
}

// watch feeds the queue with the services touched by any change of a
// service or an instance.
func (c *Services) watch(ctx context.Context) {
	for ctx.Err() == nil {
		rev := c.enqueueAll(ctx)
		events, err := c.cfg.Store.Watch(ctx, "", rev)
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		for ev := range events {
			k := ev.Record.Key
			switch k.Kind {
			case v1.KindService:
				c.q.Add(k.Environment + "/" + k.Name)
			case v1.KindInstance:
				var inst v1.Instance
				if store.Decode(ev.Record, &inst) == nil && inst.Spec.OwnerKind == v1.KindService {
					c.q.Add(k.Environment + "/" + inst.Spec.Owner)
				}
			}
		}
	}
}

func (c *Services) sync(ctx context.Context, key string) error {
	env, name, _ := strings.Cut(key, "/")
	var svc v1.Service
	err := store.Get(ctx, c.cfg.Store, store.Key{Kind: v1.KindService, Environment: env, Name: name}, &svc)
	if v1.IsNotFound(err) {
		return c.cleanup(ctx, env, name)
	}
	if err != nil {
		return err
	}

	revs, err := c.revisions(ctx, env, name)
	if err != nil {
		return err
	}
	cur, err := c.ensureRevision(ctx, &svc, revs)
	if err != nil {
		return err
	}
	if cur == nil {
		// No revision can be made (image missing): keep whatever runs,
		// retry later. The status already says why.
		c.q.AddAfter(key, 5*time.Second)
		return nil
	}

	insts, err := c.instances(ctx, env, name)
	if err != nil {
		return err
	}
	if err := c.rollout(ctx, &svc, cur, insts); err != nil {
		return err
	}
	// Re-read what rollout did, to report it.
	if insts, err = c.instances(ctx, env, name); err != nil {
		return err
	}
	if err := c.updateStatus(ctx, &svc, cur, insts); err != nil {
		return err
	}
	return c.pruneRevisions(ctx, cur, revs, insts)
}

func (c *Services) revisions(ctx context.Context, env, name string) ([]*v1.Revision, error) {
	all, _, err := store.List[v1.Revision](ctx, c.cfg.Store, v1.KindRevision, env)
	if err != nil {
		return nil, err
	}
	var out []*v1.Revision
	for _, r := range all {
		if r.Spec.OwnerKind == v1.KindService && r.Spec.Owner == name {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Number < out[j].Spec.Number })
	return out, nil
}

func (c *Services) instances(ctx context.Context, env, name string) ([]*v1.Instance, error) {
	all, _, err := store.List[v1.Instance](ctx, c.cfg.Store, v1.KindInstance, env)
	if err != nil {
		return nil, err
	}
	var out []*v1.Instance
	for _, i := range all {
		if i.Spec.OwnerKind == v1.KindService && i.Spec.Owner == name {
			out = append(out, i)
		}
	}
	return out, nil
}

// ensureRevision returns the revision the service should converge to,
// making it when the template changed. A template equal to an older
// revision's (a rollback, or an apply of an earlier manifest) reuses that
// revision's digest under a new number, as Kubernetes deployments do.
func (c *Services) ensureRevision(ctx context.Context, svc *v1.Service, revs []*v1.Revision) (*v1.Revision, error) {
	hash := v1.TemplateHash(svc.Spec.Template)
	var latest *v1.Revision
	if len(revs) > 0 {
		latest = revs[len(revs)-1]
	}
	if latest != nil && latest.Spec.Hash == hash {
		return latest, nil
	}
	var digest, cause string
	for i := len(revs) - 1; i >= 0; i-- {
		if revs[i].Spec.Hash == hash {
			digest = revs[i].Spec.ImageDigest
			cause = fmt.Sprintf("rollback to revision %d", revs[i].Spec.Number)
			break
		}
	}
	objRef := v1.KindService + "/" + svc.Metadata.Name
	if digest == "" {
		d, err := c.cfg.Images.ResolveImage(ctx, svc.Spec.Image)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			msg := fmt.Sprintf("image %q: %v", svc.Spec.Image, err)
			if c.setCondition(ctx, svc, v1.ConditionProgressing, false, "ImageNotFound", msg) {
				c.cfg.Events(ctx, c.cfg.Store, svc.Metadata.Environment, objRef, "Warning", "ImageNotFound", msg)
			}
			return nil, nil
		}
		digest = d
		cause = "apply"
		if latest == nil {
			cause = "create"
		}
	}
	n := int64(1)
	if latest != nil {
		n = latest.Spec.Number + 1
	}
	rev := &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(svc.Metadata.Name, n), Environment: svc.Metadata.Environment, Labels: svc.Metadata.Labels},
		Spec: v1.RevisionSpec{
			Owner: svc.Metadata.Name, OwnerKind: v1.KindService, Number: n,
			Image: svc.Spec.Image, ImageDigest: digest, Template: svc.Spec.Template,
			Hash: hash, ChangeCause: cause,
		},
	}
	if err := store.Create(ctx, c.cfg.Store, rev); err != nil {
		return nil, err
	}
	c.cfg.Events(ctx, c.cfg.Store, svc.Metadata.Environment, objRef, "Normal", "RevisionCreated",
		fmt.Sprintf("Revision %d: %s (%s), %s", n, svc.Spec.Image, shortDigest(digest), cause))
	return rev, nil
}

// rollout creates and drains instances one step towards the desired state,
// within the strategy's limits: planRollout decides, rollout acts.
func (c *Services) rollout(ctx context.Context, svc *v1.Service, cur *v1.Revision, insts []*v1.Instance) error {
	plan := planRollout(rolloutLimits{
		Desired:        int(ptrOr(svc.Spec.Replicas, 1)),
		MaxSurge:       int(ptrOr(svc.Spec.Strategy.MaxSurge, 1)),
		MaxUnavailable: int(ptrOr(svc.Spec.Strategy.MaxUnavailable, 0)),
	}, cur.Spec.Number, insts)
	objRef := v1.KindService + "/" + svc.Metadata.Name
	for _, i := range plan.Drain {
		if err := c.drain(ctx, i); err != nil {
			return err
		}
	}
	for range plan.Create {
		inst, err := c.createInstance(ctx, svc, cur)
		if err != nil {
			return err
		}
		c.cfg.Events(ctx, c.cfg.Store, svc.Metadata.Environment, objRef, "Normal", "Created",
			fmt.Sprintf("Created instance %s (revision %d)", inst.Metadata.Name, cur.Spec.Number))
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

func (c *Services) createInstance(ctx context.Context, svc *v1.Service, rev *v1.Revision) (*v1.Instance, error) {
	for {
		inst := &v1.Instance{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
			Metadata: v1.ObjectMeta{
				Name:        svc.Metadata.Name + "-" + randSuffix(),
				Environment: svc.Metadata.Environment,
				Labels:      svc.Metadata.Labels,
			},
			Spec:   v1.InstanceSpec{Owner: svc.Metadata.Name, OwnerKind: v1.KindService, Revision: rev.Spec.Number},
			Status: v1.InstanceStatus{Phase: v1.PhasePending, Revision: rev.Spec.Number},
		}
		inst.Status.Name = inst.Metadata.Name
		err := store.Create(ctx, c.cfg.Store, inst)
		if v1.IsConflict(err) {
			continue // name clash: pick another suffix
		}
		return inst, err
	}
}

// drain asks the agent to take the instance out of rotation and stop it;
// the agent deletes the object when done.
func (c *Services) drain(ctx context.Context, inst *v1.Instance) error {
	if inst.Spec.Draining {
		return nil
	}
	inst.Spec.Draining = true
	if err := store.Update(ctx, c.cfg.Store, inst); err != nil {
		if v1.IsNotFound(err) {
			return nil
		}
		return err
	}
	c.cfg.Events(ctx, c.cfg.Store, inst.Metadata.Environment, inst.Spec.OwnerKind+"/"+inst.Spec.Owner, "Normal", "Draining",
		fmt.Sprintf("Draining instance %s (revision %d)", inst.Metadata.Name, inst.Spec.Revision))
	return nil
}

// cleanup drains every instance of a deleted service and removes its
// revisions once no instance remains.
func (c *Services) cleanup(ctx context.Context, env, name string) error {
	insts, err := c.instances(ctx, env, name)
	if err != nil {
		return err
	}
	for _, i := range insts {
		if err := c.drain(ctx, i); err != nil {
			return err
		}
	}
	if len(insts) > 0 {
		return nil // called again as they disappear
	}
	revs, err := c.revisions(ctx, env, name)
	if err != nil {
		return err
	}
	for _, r := range revs {
		if err := store.Delete(ctx, c.cfg.Store, r); err != nil && !v1.IsNotFound(err) {
			return err
		}
	}
	return nil
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
	if statusJSONEqual(svc.Status, st) {
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

// setCondition records a condition right away (used when the sync cannot
// go further); it reports whether anything changed.
func (c *Services) setCondition(ctx context.Context, svc *v1.Service, typ string, status bool, reason, msg string) bool {
	conds := putCondition(slices.Clone(svc.Status.Conditions), typ, status, reason, msg)
	if condIs(svc.Status.Conditions, typ, reason) {
		return false
	}
	svc.Status.Conditions = conds
	svc.Status.ObservedGeneration = svc.Metadata.Generation
	if err := store.Update(ctx, c.cfg.Store, svc); err != nil {
		c.log.Warn("record condition", "err", err)
	}
	return true
}

// pruneRevisions keeps the newest RevisionHistoryLimit revisions plus any
// still running.
func (c *Services) pruneRevisions(ctx context.Context, cur *v1.Revision, revs []*v1.Revision, insts []*v1.Instance) error {
	if len(revs) <= c.cfg.RevisionHistoryLimit {
		return nil
	}
	inUse := map[int64]bool{cur.Spec.Number: true}
	for _, i := range insts {
		inUse[i.Spec.Revision] = true
	}
	for _, r := range revs[:len(revs)-c.cfg.RevisionHistoryLimit] {
		if inUse[r.Spec.Number] {
			continue
		}
		if err := store.Delete(ctx, c.cfg.Store, r); err != nil && !v1.IsNotFound(err) {
			return err
		}
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

func statusJSONEqual(a, b v1.ServiceStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
