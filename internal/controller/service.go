package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/store"
)

// Services is the cache of Service objects.
type Services = informer.Informer[v1.Service, *v1.Service]

// ServiceConfig is what the service controller needs.
type ServiceConfig struct {
	Store     store.Store
	Services  *Services
	Revisions *Revisions
	Backend   Backend
	Images    ImageResolver
	Events    EventRecorder
	Logger    *slog.Logger
	Workers   int
	// ImageRetry is how soon a workload whose image could not be had is
	// tried again (default 5s).
	ImageRetry time.Duration
	// RevisionHistoryLimit is how many unused revisions are kept per
	// service for rollbacks (default 10).
	RevisionHistoryLimit int
}

// ServiceController turns each Service into revisions and asks the backend
// to run the current one within the update strategy's surge and
// unavailability limits; it writes the service's status from what the
// backend reports.
type ServiceController struct {
	workloads
	cfg ServiceConfig
	log *slog.Logger
	q   *queue
}

// NewServices builds the service controller; Run starts it.
func NewServices(cfg ServiceConfig) *ServiceController {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.ImageRetry == 0 {
		cfg.ImageRetry = 5 * time.Second
	}
	if cfg.RevisionHistoryLimit == 0 {
		cfg.RevisionHistoryLimit = 10
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	c := &ServiceController{
		workloads: workloads{
			store: cfg.Store, revisions: cfg.Revisions, backend: cfg.Backend, events: cfg.Events,
			historyLimit: cfg.RevisionHistoryLimit, pulls: newPulls(cfg.Images, 0),
		},
		cfg: cfg, log: cfg.Logger, q: newQueue(),
	}
	cfg.Services.AddHandler(func(k store.Key, old, cur *v1.Service) {
		if old != cur && cur != nil && synced(cur.Metadata, cur.Status.ObservedGeneration) &&
			(old == nil || canaryKey(old.Status.Canary) == canaryKey(cur.Status.Canary)) {
			return // our own status write: nothing to do
		}
		c.q.Add(k.Environment + "/" + k.Name)
	})
	cfg.Backend.Watch(func(ref backend.Ref) {
		if ref.Kind == v1.KindService {
			c.q.Add(ref.Environment + "/" + ref.Name)
		}
	})
	return c
}

// Run syncs services until ctx ends, once the caches are filled.
func (c *ServiceController) Run(ctx context.Context) error {
	c.pulls.run(ctx)
	if err := waitForSync(ctx, c.cfg.Services, c.cfg.Revisions, c.cfg.Backend); err != nil {
		return nil
	}
	runWorkers(ctx, c.q, c.cfg.Workers, c.sync, func(key string, err error) {
		logSyncError(c.log, "service", key, err)
	})
	return nil
}

func (c *ServiceController) sync(ctx context.Context, key string) error {
	env, name, _ := strings.Cut(key, "/")
	ref := backend.Ref{Kind: v1.KindService, Environment: env, Name: name}
	svc, err := c.cfg.Services.Get(store.Key{Kind: v1.KindService, Environment: env, Name: name})
	if v1.IsNotFound(err) {
		return c.remove(ctx, ref)
	}
	if err != nil {
		return err
	}
	wake := func() { c.q.Add(key) }
	cur, revs, err := c.currentRevision(ctx, ref, svc.Metadata.Labels, svc.Spec.Template,
		progress{svc, &svc.Status.Conditions}, wake)
	if err != nil {
		return err
	}
	if cur == nil {
		// No revision yet (the image is being resolved, or is missing):
		// keep whatever runs. The status says why; a missing image is
		// tried again later.
		c.q.AddAfter(key, c.cfg.ImageRetry)
		return nil
	}
	canary, started := canaryAt(svc.Spec.Strategy.Canary, svc.Spec.Traffic, svc.Status.Canary, svc.Status.Revision,
		cur.Spec.Number, revisionExists(revs), time.Now())
	traffic := svc.Spec.Traffic
	if ct := canaryTraffic(canary); ct != nil {
		traffic = ct
	}
	replicas := int(ptrOr(svc.Spec.Replicas, 1))
	plan := planRevisions(traffic, revs, cur, replicas, min(replicas, 1))
	plan.canary = canary
	if len(plan.missing) > 0 {
		c.log.Warn("traffic names missing revisions", "service", key, "revisions", plan.missing)
	}
	err = c.cfg.Backend.Apply(ctx, backend.Workload{
		Ref: ref, Labels: svc.Metadata.Labels, Revision: cur,
		Replicas:       plan.current,
		MaxSurge:       int(ptrOr(svc.Spec.Strategy.MaxSurge, 1)),
		MaxUnavailable: int(ptrOr(svc.Spec.Strategy.MaxUnavailable, 0)),
		Pinned:         plan.pinned,
	})
	if err != nil {
		return err
	}
	insts := c.cfg.Backend.Instances(ref)
	if err := c.updateStatus(ctx, svc, cur, plan, insts); err != nil {
		return err
	}
	if started {
		c.event(ctx, ref, "Normal", "CanaryStarted", fmt.Sprintf("Canary of revision %d against revision %d: %s",
			canary.Revision, canary.Stable, canary.Message))
	}
	return c.pruneRevisions(ctx, cur, revs, insts, traffic)
}

// serviceStatus computes a service's status from its instances: pure, so
// that its cases are tested apart from any store or backend.
func serviceStatus(svc *v1.Service, cur *v1.Revision, plan revisionPlan, insts []v1.InstanceStatus, now time.Time) (st v1.ServiceStatus, done bool, updatedReady int32) {
	desired := int32(plan.total())
	unavail := ptrOr(svc.Spec.Strategy.MaxUnavailable, 0)
	st = svc.Status
	st.ObservedGeneration = svc.Metadata.Generation
	st.Revision = cur.Spec.Number
	st.ImageDigest = cur.Spec.ImageDigest
	st.Traffic = plan.traffic
	st.Canary = plan.canary
	st.Replicas, st.ReadyReplicas, st.UpdatedReplicas = 0, 0, 0
	st.Instances = slices.Clone(insts)
	// pinnedOK counts the pinned revisions' instances that are ready and
	// wanted: a split is rolled out when each revision has its count.
	var pinnedOK int32
	pinnedHave := map[int64]int{}
	for _, i := range insts {
		if i.Phase == v1.PhaseTerminating {
			continue
		}
		st.Replicas++
		if i.Ready {
			st.ReadyReplicas++
		}
		if i.Revision == cur.Spec.Number {
			st.UpdatedReplicas++
			if i.Ready {
				updatedReady++
			}
		} else if i.Ready && pinnedHave[i.Revision] < plan.want(cur.Spec.Number, i.Revision) {
			pinnedHave[i.Revision]++
			pinnedOK++
		}
	}
	want := int32(plan.current)
	done = st.UpdatedReplicas == want && updatedReady == want && pinnedOK == desired-want &&
		st.Replicas == desired && len(st.Instances) == int(desired)
	conds := slices.Clone(st.Conditions)
	conds = putConditionAt(conds, v1.ConditionAvailable, st.ReadyReplicas >= desired-unavail, "MinimumReplicasAvailable",
		fmt.Sprintf("%d of %d instances ready", st.ReadyReplicas, desired), now)
	switch {
	case done && len(plan.pinned) > 0:
		conds = putConditionAt(conds, v1.ConditionProgressing, true, "RolloutComplete",
			fmt.Sprintf("every revision of the traffic split is available (%d instances)", desired), now)
	case done:
		conds = putConditionAt(conds, v1.ConditionProgressing, true, "RolloutComplete",
			fmt.Sprintf("revision %d is available", cur.Spec.Number), now)
	case len(plan.pinned) > 0:
		msg := fmt.Sprintf("traffic split: revision %d %d of %d ready", cur.Spec.Number, updatedReady, plan.current)
		for _, p := range plan.pinned {
			msg += fmt.Sprintf(", revision %d %d of %d ready", p.Revision.Spec.Number, pinnedHave[p.Revision.Spec.Number], p.Replicas)
		}
		conds = putConditionAt(conds, v1.ConditionProgressing, true, "RollingOut", msg, now)
	default:
		conds = putConditionAt(conds, v1.ConditionProgressing, true, "RollingOut",
			fmt.Sprintf("revision %d: %d of %d updated instances ready", cur.Spec.Number, updatedReady, desired), now)
	}
	switch c := plan.canary; {
	case c == nil || c.Phase == v1.CanaryPromoted:
	case c.Phase == v1.CanaryProgressing:
		done = false
		conds = putConditionAt(conds, v1.ConditionProgressing, true, "Canary", "canary of revision "+strconv.FormatInt(c.Revision, 10)+": "+c.Message, now)
	default:
		done = false
		conds = putConditionAt(conds, v1.ConditionProgressing, false, "CanaryRolledBack", "canary of revision "+strconv.FormatInt(c.Revision, 10)+" "+c.Message, now)
	}
	st.Conditions = conds
	return st, done, updatedReady
}

func (c *ServiceController) updateStatus(ctx context.Context, svc *v1.Service, cur *v1.Revision, plan revisionPlan, insts []v1.InstanceStatus) error {
	st, done, updatedReady := serviceStatus(svc, cur, plan, insts, time.Now())
	if jsonEqual(svc.Status, st) {
		return nil
	}
	wasDone := condIs(svc.Status.Conditions, v1.ConditionProgressing, "RolloutComplete")
	svc.Status = st
	if err := store.Update(ctx, c.cfg.Store, svc); err != nil {
		return err // conflict: requeued and recomputed
	}
	if done && !wasDone {
		c.event(ctx, backend.Ref{Kind: v1.KindService, Environment: svc.Metadata.Environment, Name: svc.Metadata.Name},
			"Normal", "RolloutComplete",
			fmt.Sprintf("Revision %d rolled out: %d of %d ready", cur.Spec.Number, updatedReady, ptrOr(svc.Spec.Replicas, 1)))
	}
	return nil
}
