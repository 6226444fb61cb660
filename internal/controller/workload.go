package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/store"
)

// ImageResolver turns an image reference into the digest a revision pins.
type ImageResolver interface {
	// ResolveImageIn returns the digest of ref for a workload of env,
	// pulling it if needed. NotFound when it cannot be had there (another
	// environment's repository included).
	ResolveImageIn(ctx context.Context, env, ref string) (digest string, err error)
}

// EventRecorder records an Event about an object ("Kind/name").
type EventRecorder interface {
	Record(ctx context.Context, env, object, typ, reason, msg string)
}

// Backend is what the workload controllers ask of the place that runs
// instances (internal/backend: local or kubernetes).
type Backend interface {
	Apply(ctx context.Context, w backend.Workload) error
	Remove(ctx context.Context, ref backend.Ref) (gone bool, err error)
	Instances(ref backend.Ref) []v1.InstanceStatus
	Watch(fn func(backend.Ref))
	WaitForSync(ctx context.Context) error
}

// Revisions is the cache of Revision objects the workload controllers
// share; NewRevisionInformer builds it with the index they need.
type Revisions = informer.Informer[v1.Revision, *v1.Revision]

const ownerIndex = "owner"

// NewRevisionInformer builds the revision cache, indexed by owner.
func NewRevisionInformer(cfg informer.Config) *Revisions {
	cfg.Kind = v1.KindRevision
	inf := informer.New[v1.Revision](cfg)
	inf.AddIndex(ownerIndex, func(r *v1.Revision) []string {
		return []string{r.Spec.OwnerKind + "/" + r.Metadata.Environment + "/" + r.Spec.Owner}
	})
	return inf
}

// workloads is what the Service and Function controllers share: revisions
// pinned to image digests, image resolution off the workers, statuses and
// clean-up.
type workloads struct {
	store        store.Store
	revisions    *Revisions
	backend      Backend
	events       EventRecorder
	historyLimit int
	pulls        *pulls
}

func (w *workloads) event(ctx context.Context, ref backend.Ref, typ, reason, msg string) {
	w.events.Record(ctx, ref.Environment, ref.Kind+"/"+ref.Name, typ, reason, msg)
}

// revisionsOf returns ref's revisions from the cache, oldest first, shared.
func (w *workloads) revisionsOf(ref backend.Ref) []*v1.Revision {
	out := w.revisions.ByIndex(ownerIndex, ref.Kind+"/"+ref.Environment+"/"+ref.Name)
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Number < out[j].Spec.Number })
	return out
}

// ensureRevision returns the revision ref should converge to, making it
// when the template changed. A template equal to an older revision's (a
// rollback, or an apply of an earlier manifest) reuses that revision's
// digest under a new number, as Kubernetes deployments do. A new image is
// resolved in the background (a pull can take minutes and must not hold a
// worker): until it is, ensureRevision returns nil and reports through
// imageState; the workload is queued again when the resolution ends.
func (w *workloads) ensureRevision(ctx context.Context, ref backend.Ref, labels map[string]string, t v1.Template, revs []*v1.Revision, wake func(), imageState func(reason, msg string)) (*v1.Revision, error) {
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
		d, err, done := w.pulls.resolve(ref.Environment, t.Image, ref.String(), wake)
		if !done {
			imageState("ResolvingImage", fmt.Sprintf("resolving image %q", t.Image))
			return nil, nil
		}
		if err != nil {
			imageState("ImageNotFound", fmt.Sprintf("image %q: %v", t.Image, err))
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
	// Revisions are named NAME-N whatever their kind: a Service and a
	// Function of one name (while berth convert switches one into the
	// other) number theirs in one sequence.
	other := backend.Ref{Kind: v1.KindFunction, Environment: ref.Environment, Name: ref.Name}
	if ref.Kind == v1.KindFunction {
		other.Kind = v1.KindService
	}
	for _, r := range w.revisionsOf(other) {
		n = max(n, r.Spec.Number+1)
	}
	rev := &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(ref.Name, n), Environment: ref.Environment, Labels: labels},
		Spec: v1.RevisionSpec{
			Owner: ref.Name, OwnerKind: ref.Kind, Number: n,
			Image: t.Image, ImageDigest: digest, Template: t,
			Hash: hash, ChangeCause: cause,
		},
	}
	if err := store.Create(ctx, w.store, rev); err != nil {
		if v1.IsConflict(err) {
			// Made by an earlier sync the cache has not seen yet.
			var made v1.Revision
			if gerr := store.Get(ctx, w.store, store.KeyOf(rev), &made); gerr == nil && made.Spec.Hash == hash {
				return &made, nil
			}
		}
		return nil, err
	}
	w.event(ctx, ref, "Normal", "RevisionCreated",
		fmt.Sprintf("Revision %d: %s (%s), %s", n, t.Image, shortDigest(digest), cause))
	return rev, nil
}

// deleteRevisions removes every revision of a workload that is gone.
func (w *workloads) deleteRevisions(ctx context.Context, ref backend.Ref) error {
	for _, r := range w.revisionsOf(ref) {
		if err := store.Delete(ctx, w.store, r); err != nil && !v1.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// remove stops a deleted workload's instances and, once none is left,
// removes its revisions.
func (w *workloads) remove(ctx context.Context, ref backend.Ref) error {
	gone, err := w.backend.Remove(ctx, ref)
	if err != nil || !gone {
		return err // called again as the instances disappear
	}
	return w.deleteRevisions(ctx, ref)
}

// pruneRevisions keeps the newest historyLimit revisions plus any still
// running or named by spec.traffic.
func (w *workloads) pruneRevisions(ctx context.Context, cur *v1.Revision, revs []*v1.Revision, insts []v1.InstanceStatus, traffic []v1.TrafficTarget) error {
	if len(revs) <= w.historyLimit {
		return nil
	}
	inUse := map[int64]bool{cur.Spec.Number: true}
	for _, n := range trafficRevisions(traffic) {
		inUse[n] = true
	}
	for _, i := range insts {
		inUse[i.Revision] = true
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
}

// currentRevision returns ref's revisions and the one it converges to.
// When none can be made yet (the image is being resolved, or cannot be
// had) it returns nil after saying why in the object's Progressing
// condition and, for a missing image, once in an event.
func (w *workloads) currentRevision(ctx context.Context, ref backend.Ref, labels map[string]string, t v1.Template, p progress, wake func()) (*v1.Revision, []*v1.Revision, error) {
	revs := w.revisionsOf(ref)
	cur, err := w.ensureRevision(ctx, ref, labels, t, revs, wake, func(reason, msg string) {
		ok := reason != "ImageNotFound"
		if w.setCondition(ctx, p, v1.ConditionProgressing, ok, reason, msg) && !ok {
			w.event(ctx, ref, "Warning", reason, msg)
		}
	})
	return cur, revs, err
}

// setCondition records a condition right away (used when a sync cannot go
// further); it reports whether anything changed. The observed generation
// stays as it was: the new spec is not rolled out, and `rollout status`
// and `apply --wait` must keep waiting (they show the condition's reason).
func (w *workloads) setCondition(ctx context.Context, p progress, typ string, status bool, reason, msg string) bool {
	if condIs(*p.conditions, typ, reason) {
		return false
	}
	*p.conditions = putCondition(slices.Clone(*p.conditions), typ, status, reason, msg)
	// A conflict is fine: the next sync recomputes it.
	_ = store.Update(ctx, w.store, p.obj)
	return true
}

// pulls resolves image references off the workers: the first sync that
// needs a reference starts its resolution and returns at once; when the
// resolution ends every workload that asked is woken, and finds the
// answer kept for resultTTL. Concurrent askers share one resolution.
type pulls struct {
	images  ImageResolver
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	base context.Context
	m    map[string]*pull
}

type pull struct {
	done    bool
	digest  string
	err     error
	at      time.Time
	waiters map[string]func()
}

// How long a resolution's answer is kept for the workloads that asked:
// after it a new apply resolves the tag again. A failure is kept briefly,
// so an image imported after a failed apply is found within seconds.
const (
	resultTTL = time.Minute
	errorTTL  = 2 * time.Second
)

func newPulls(images ImageResolver, timeout time.Duration) *pulls {
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	return &pulls{images: images, timeout: timeout, now: time.Now, base: context.Background(), m: map[string]*pull{}}
}

// run sets the context resolutions run under (the controller's lifetime).
func (p *pulls) run(ctx context.Context) {
	p.mu.Lock()
	p.base = ctx
	p.mu.Unlock()
}

// resolve returns ref's digest in env once resolved (done), else starts or
// joins its resolution and arranges for wake to be called when it ends.
func (p *pulls) resolve(env, ref, waiter string, wake func()) (digest string, err error, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for r, pl := range p.m {
		if pl.done && (now.Sub(pl.at) > resultTTL || pl.err != nil && now.Sub(pl.at) > errorTTL) {
			delete(p.m, r)
		}
	}
	key := env + "\x00" + ref
	pl := p.m[key]
	if pl != nil && pl.done {
		return pl.digest, pl.err, true
	}
	if pl == nil {
		pl = &pull{waiters: map[string]func(){}}
		p.m[key] = pl
		go p.fetch(p.base, key, env, ref, pl)
	}
	pl.waiters[waiter] = wake
	return "", nil, false
}

func (p *pulls) fetch(base context.Context, key, env, ref string, pl *pull) {
	ctx, cancel := context.WithTimeout(base, p.timeout)
	digest, err := p.images.ResolveImageIn(ctx, env, ref)
	cancel()
	p.mu.Lock()
	if base.Err() != nil {
		// The controller stops: the next one starts afresh.
		delete(p.m, key)
		p.mu.Unlock()
		return
	}
	pl.done, pl.digest, pl.err, pl.at = true, digest, err, p.now()
	waiters := pl.waiters
	pl.waiters = nil
	p.mu.Unlock()
	for _, wake := range waiters {
		wake()
	}
}

func putCondition(conds []v1.Condition, typ string, status bool, reason, msg string) []v1.Condition {
	return putConditionAt(conds, typ, status, reason, msg, time.Now())
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

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
