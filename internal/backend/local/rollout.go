package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/store"
)

// Apply moves w's Instance records one step towards w.Replicas ready
// instances of w.Revision within the rollout limits: planRollout decides,
// Apply acts. With w.Standbys it also keeps as many prepared instances of the
// current revision (network attached, task created, not started), and
// takes prepared ones first when it needs a new instance, so a cold start
// only starts a task. The agent runs what the records say.
func (b *Backend) Apply(ctx context.Context, w backend.Workload) error {
	defer b.readWrites(ctx)()
	cur := w.Revision.Spec.Number
	pinned := make(map[int64][]*v1.Instance, len(w.Pinned))
	for _, p := range w.Pinned {
		if n := p.Revision.Spec.Number; n != cur {
			pinned[n] = nil
		}
	}
	insts := b.instancesOf(w.Ref)
	// A new revision goes live at zero once its standby is prepared: until
	// then the previous revision's prepared standby stays and answers a
	// request that comes meanwhile (as a rolling update keeps old
	// instances until new ones are ready), and the rollout replaces it.
	newPrepared := false
	for _, i := range insts {
		if i.Spec.Standby && !i.Spec.Draining && i.Spec.Revision == cur && i.Status.Phase == v1.PhaseStandby {
			newPrepared = true
		}
	}
	var active, standby, previous []*v1.Instance
	for _, i := range insts {
		_, pin := pinned[i.Spec.Revision]
		switch {
		case i.Spec.Draining:
		case pin && !i.Spec.Standby:
			pinned[i.Spec.Revision] = append(pinned[i.Spec.Revision], i)
		case i.Spec.Standby && i.Spec.Revision == cur && i.Status.Phase != v1.PhaseFailed:
			// Taken first for a new instance, even when no standby is
			// wanted beyond Replicas any more (a scale-up to the max).
			standby = append(standby, i)
		case i.Spec.Standby && w.Standbys > 0 && len(w.Pinned) == 0 && !newPrepared && len(previous) == 0 &&
			i.Spec.Revision < cur && i.Status.Phase == v1.PhaseStandby:
			previous = append(previous, i)
		case i.Spec.Standby:
			// A standby of an older revision, or one that cannot be
			// prepared, is of no use.
			if err := b.drain(ctx, i, true); err != nil {
				return err
			}
		default:
			active = append(active, i)
		}
	}
	plan := planRollout(rolloutLimits{Desired: w.Replicas, MaxSurge: w.MaxSurge, MaxUnavailable: w.MaxUnavailable}, cur, active)
	// Functions' instances are interchangeable and short-lived: they are
	// drained without an event each.
	quiet := w.Kind == v1.KindFunction
	for _, i := range plan.Drain {
		if err := b.drain(ctx, i, quiet); err != nil {
			return err
		}
	}
	// Prepared standbys first: a started standby skips network set-up and
	// container creation.
	sort.SliceStable(standby, func(a, c int) bool {
		return standby[a].Status.Phase == v1.PhaseStandby && standby[c].Status.Phase != v1.PhaseStandby
	})
	for n := 0; n < plan.Create; n++ {
		if len(previous) > 0 && (len(standby) == 0 || standby[0].Status.Phase != v1.PhaseStandby) {
			p := previous[0]
			previous = previous[1:]
			if err := b.activate(ctx, p); err == nil {
				continue
			} else if !v1.IsConflict(err) && !v1.IsNotFound(err) {
				return err
			}
		}
		if len(standby) > 0 {
			s := standby[0]
			standby = standby[1:]
			if err := b.activate(ctx, s); err == nil {
				continue
			} else if !v1.IsConflict(err) && !v1.IsNotFound(err) {
				return err
			}
		}
		inst, err := b.createInstance(ctx, w.Ref, w.Labels, cur, false)
		if err != nil {
			return err
		}
		if !quiet {
			b.event(ctx, w.Ref, "Normal", "Created", fmt.Sprintf("Created instance %s (revision %d)", inst.Metadata.Name, cur))
		}
	}
	if err := b.scalePinned(ctx, w, pinned); err != nil {
		return err
	}
	want := max(w.Standbys, 0)
	for len(standby) < want {
		s, err := b.createInstance(ctx, w.Ref, w.Labels, cur, true)
		if err != nil {
			return err
		}
		standby = append(standby, s)
	}
	for _, s := range standby[want:] {
		if err := b.drain(ctx, s, true); err != nil {
			return err
		}
	}
	return nil
}

// scalePinned brings each pinned revision to its replicas: a split's
// revisions run side by side, so there is no rollout between them, only a
// count per revision.
func (b *Backend) scalePinned(ctx context.Context, w backend.Workload, insts map[int64][]*v1.Instance) error {
	quiet := w.Kind == v1.KindFunction
	for _, p := range w.Pinned {
		n := p.Revision.Spec.Number
		have, ok := insts[n]
		if !ok {
			continue // the current revision, listed by mistake
		}
		if extra := len(have) - p.Replicas; extra > 0 {
			sortForRemoval(have)
			for _, i := range have[:extra] {
				if err := b.drain(ctx, i, quiet); err != nil {
					return err
				}
			}
		}
		for k := len(have); k < p.Replicas; k++ {
			inst, err := b.createInstance(ctx, w.Ref, w.Labels, n, false)
			if err != nil {
				return err
			}
			if !quiet {
				b.event(ctx, w.Ref, "Normal", "Created", fmt.Sprintf("Created instance %s (revision %d, pinned by traffic)", inst.Metadata.Name, n))
			}
		}
	}
	return nil
}

// Remove drains every instance of ref; the agent deletes each record once
// its container is gone.
func (b *Backend) Remove(ctx context.Context, ref backend.Ref) (bool, error) {
	defer b.readWrites(ctx)()
	insts := b.instancesOf(ref)
	for _, i := range insts {
		if err := b.drain(ctx, i, false); err != nil {
			return false, err
		}
	}
	return len(insts) == 0, nil
}

// readWrites makes the instance cache reflect this call's writes before
// the next call reads it, so a second Apply does not create again what the
// first one created (client-go controllers keep "expectations" for this).
// Use as `defer b.readWrites(ctx)()`.
func (b *Backend) readWrites(ctx context.Context) func() {
	return func() {
		b.mu.Lock()
		rev := b.lastWrite
		b.mu.Unlock()
		if rev == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = b.instances.WaitForRevision(wctx, rev)
	}
}

// wrote records the store revision of an instance write.
func (b *Backend) wrote(rev uint64) {
	b.mu.Lock()
	b.lastWrite = max(b.lastWrite, rev)
	b.mu.Unlock()
}

// activate takes a standby out of standby: the agent starts its task. The
// runner is told in memory first, so the task starts while the record is
// written rather than after a disk sync; the record still says what runs
// (a crash in between leaves a running container the restarted agent
// adopts).
func (b *Backend) activate(ctx context.Context, s *v1.Instance) error {
	if !s.Spec.Draining {
		b.agent.activateNow(s)
	}
	return b.updateInstance(ctx, store.KeyOf(s), func(i *v1.Instance) bool {
		if !i.Spec.Standby || i.Spec.Draining {
			return false
		}
		i.Spec.Standby = false
		return true
	})
}

// updateInstance applies change to the stored instance and writes it,
// reading it again when the cache was behind the agent's status writes.
// change returns false when there is nothing to write.
func (b *Backend) updateInstance(ctx context.Context, key store.Key, change func(*v1.Instance) bool) error {
	own, err := b.instances.Get(key)
	for attempt := 0; ; attempt++ {
		if err != nil {
			return err
		}
		if !change(own) {
			return nil
		}
		err = store.Update(ctx, b.cfg.Store, own)
		if err == nil {
			b.wrote(own.Metadata.ResourceVersion)
		}
		if !v1.IsConflict(err) || attempt >= 5 {
			return err
		}
		own = new(v1.Instance)
		err = store.Get(ctx, b.cfg.Store, key, own)
	}
}

// createInstance records a new instance of w's revision for the agent to
// run; a standby one is prepared but not started.
func (b *Backend) createInstance(ctx context.Context, w backend.Ref, labels map[string]string, rev int64, standby bool) (*v1.Instance, error) {
	for {
		inst := &v1.Instance{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
			Metadata: v1.ObjectMeta{Name: w.Name + "-" + randSuffix(), Environment: w.Environment, Labels: labels},
			Spec:     v1.InstanceSpec{Owner: w.Name, OwnerKind: w.Kind, Revision: rev, Standby: standby},
			Status:   v1.InstanceStatus{Phase: v1.PhasePending, Revision: rev},
		}
		inst.Status.Name = inst.Metadata.Name
		err := store.Create(ctx, b.cfg.Store, inst)
		if v1.IsConflict(err) {
			continue // name clash: pick another suffix
		}
		if err == nil {
			b.wrote(inst.Metadata.ResourceVersion)
		}
		return inst, err
	}
}

// drain asks the agent to take the instance out of rotation and stop it;
// the agent deletes the record when done.
func (b *Backend) drain(ctx context.Context, inst *v1.Instance, quiet bool) error {
	if inst.Spec.Draining {
		return nil
	}
	drained := false
	err := b.updateInstance(ctx, store.KeyOf(inst), func(i *v1.Instance) bool {
		drained = !i.Spec.Draining
		i.Spec.Draining = true
		return drained
	})
	if v1.IsNotFound(err) || err == nil && !drained {
		return nil
	}
	if err != nil {
		return err
	}
	if !quiet {
		b.cfg.Events.Record(ctx, inst.Metadata.Environment, inst.Spec.OwnerKind+"/"+inst.Spec.Owner, "Normal", "Draining",
			fmt.Sprintf("Draining instance %s (revision %d)", inst.Metadata.Name, inst.Spec.Revision))
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

func randSuffix() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])[:5]
}
