package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// owner names a workload (a Service or a Function) whose revisions and
// instances a controller manages.
type owner struct {
	Kind, Env, Name string
	Labels          map[string]string
}

func (o owner) ref() string { return o.Kind + "/" + o.Name }

// workloads is what the Service and Function controllers share: revisions
// pinned to image digests, instances of them, drains and clean-up.
type workloads struct {
	store        store.Store
	images       ImageResolver
	events       EventRecorder
	historyLimit int
}

func (w *workloads) event(ctx context.Context, o owner, typ, reason, msg string) {
	w.events(ctx, w.store, o.Env, o.ref(), typ, reason, msg)
}

// revisions returns o's revisions, oldest first.
func (w *workloads) revisions(ctx context.Context, o owner) ([]*v1.Revision, error) {
	all, _, err := store.List[v1.Revision](ctx, w.store, v1.KindRevision, o.Env)
	if err != nil {
		return nil, err
	}
	var out []*v1.Revision
	for _, r := range all {
		if r.Spec.OwnerKind == o.Kind && r.Spec.Owner == o.Name {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Number < out[j].Spec.Number })
	return out, nil
}

func (w *workloads) instances(ctx context.Context, o owner) ([]*v1.Instance, error) {
	all, _, err := store.List[v1.Instance](ctx, w.store, v1.KindInstance, o.Env)
	if err != nil {
		return nil, err
	}
	var out []*v1.Instance
	for _, i := range all {
		if i.Spec.OwnerKind == o.Kind && i.Spec.Owner == o.Name {
			out = append(out, i)
		}
	}
	return out, nil
}

// ensureRevision returns the revision o should converge to, making it when
// the template changed. A template equal to an older revision's (a
// rollback, or an apply of an earlier manifest) reuses that revision's
// digest under a new number, as Kubernetes deployments do. When the image
// cannot be resolved it calls imageErr with the reason and returns nil.
func (w *workloads) ensureRevision(ctx context.Context, o owner, t v1.Template, revs []*v1.Revision, imageErr func(msg string)) (*v1.Revision, error) {
	hash := v1.TemplateHash(t)
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
	if digest == "" {
		d, err := w.images.ResolveImage(ctx, t.Image)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			imageErr(fmt.Sprintf("image %q: %v", t.Image, err))
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
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(o.Name, n), Environment: o.Env, Labels: o.Labels},
		Spec: v1.RevisionSpec{
			Owner: o.Name, OwnerKind: o.Kind, Number: n,
			Image: t.Image, ImageDigest: digest, Template: t,
			Hash: hash, ChangeCause: cause,
		},
	}
	if err := store.Create(ctx, w.store, rev); err != nil {
		return nil, err
	}
	w.event(ctx, o, "Normal", "RevisionCreated",
		fmt.Sprintf("Revision %d: %s (%s), %s", n, t.Image, shortDigest(digest), cause))
	return rev, nil
}

// createInstance records a new instance of rev for the agent to run; a
// standby one is prepared but not started.
func (w *workloads) createInstance(ctx context.Context, o owner, rev *v1.Revision, standby bool) (*v1.Instance, error) {
	for {
		inst := &v1.Instance{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
			Metadata: v1.ObjectMeta{Name: o.Name + "-" + randSuffix(), Environment: o.Env, Labels: o.Labels},
			Spec:     v1.InstanceSpec{Owner: o.Name, OwnerKind: o.Kind, Revision: rev.Spec.Number, Standby: standby},
			Status:   v1.InstanceStatus{Phase: v1.PhasePending, Revision: rev.Spec.Number},
		}
		inst.Status.Name = inst.Metadata.Name
		err := store.Create(ctx, w.store, inst)
		if v1.IsConflict(err) {
			continue // name clash: pick another suffix
		}
		return inst, err
	}
}

// drain asks the agent to take the instance out of rotation and stop it;
// the agent deletes the object when done.
func (w *workloads) drain(ctx context.Context, inst *v1.Instance, quiet bool) error {
	if inst.Spec.Draining {
		return nil
	}
	inst.Spec.Draining = true
	if err := store.Update(ctx, w.store, inst); err != nil {
		if v1.IsNotFound(err) {
			return nil
		}
		return err
	}
	if !quiet {
		w.events(ctx, w.store, inst.Metadata.Environment, inst.Spec.OwnerKind+"/"+inst.Spec.Owner, "Normal", "Draining",
			fmt.Sprintf("Draining instance %s (revision %d)", inst.Metadata.Name, inst.Spec.Revision))
	}
	return nil
}

// cleanup drains every instance of a deleted workload and removes its
// revisions once no instance remains.
func (w *workloads) cleanup(ctx context.Context, o owner) error {
	insts, err := w.instances(ctx, o)
	if err != nil {
		return err
	}
	for _, i := range insts {
		if err := w.drain(ctx, i, false); err != nil {
			return err
		}
	}
	if len(insts) > 0 {
		return nil // called again as they disappear
	}
	revs, err := w.revisions(ctx, o)
	if err != nil {
		return err
	}
	for _, r := range revs {
		if err := store.Delete(ctx, w.store, r); err != nil && !v1.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// pruneRevisions keeps the newest historyLimit revisions plus any still
// running.
func (w *workloads) pruneRevisions(ctx context.Context, cur *v1.Revision, revs []*v1.Revision, insts []*v1.Instance) error {
	if len(revs) <= w.historyLimit {
		return nil
	}
	inUse := map[int64]bool{cur.Spec.Number: true}
	for _, i := range insts {
		inUse[i.Spec.Revision] = true
	}
	for _, r := range revs[:len(revs)-w.historyLimit] {
		if inUse[r.Spec.Number] {
			continue
		}
		if err := store.Delete(ctx, w.store, r); err != nil && !v1.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// progress is where a workload's status keeps its conditions and observed
// generation, whatever its kind.
type progress struct {
	obj        v1.Object
	conditions *[]v1.Condition
	observed   *int64
}

// currentRevision returns o's revisions and the one it converges to. When
// none can be made (the image cannot be had) it returns nil after saying
// why in the object's Progressing condition and, once, in an event.
func (w *workloads) currentRevision(ctx context.Context, o owner, t v1.Template, p progress) (*v1.Revision, []*v1.Revision, error) {
	revs, err := w.revisions(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	cur, err := w.ensureRevision(ctx, o, t, revs, func(msg string) {
		if w.setCondition(ctx, p, v1.ConditionProgressing, false, "ImageNotFound", msg) {
			w.event(ctx, o, "Warning", "ImageNotFound", msg)
		}
	})
	return cur, revs, err
}

// setCondition records a condition right away (used when a sync cannot go
// further); it reports whether anything changed.
func (w *workloads) setCondition(ctx context.Context, p progress, typ string, status bool, reason, msg string) bool {
	if condIs(*p.conditions, typ, reason) {
		return false
	}
	*p.conditions = putCondition(slices.Clone(*p.conditions), typ, status, reason, msg)
	*p.observed = p.obj.GetMetadata().Generation
	// A conflict is fine: the next sync recomputes it.
	_ = store.Update(ctx, w.store, p.obj)
	return true
}
