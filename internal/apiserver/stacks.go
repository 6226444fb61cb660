package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Stacks are rendered by the CLI (as helm renders charts) and deployed
// here as one unit: every manifest is decoded and checked before any is
// applied, and the revision (sources, values, rendered manifests, pinned
// images) is recorded in a Stack object, so history, rollback and promote
// work from any machine.

// ImageResolver pins an image reference to a digest. The server's image
// service implements it; without one, a stack revision records no
// digests.
type ImageResolver interface {
	ResolveImage(ctx context.Context, ref string) (string, error)
}

// stackItem is one object of a stack deploy.
type stackItem struct {
	obj  v1.Object
	res  resource
	ref  string
	file string
	doc  int
}

// applyOrder puts topics first (functions name them), workflows last
// (they name functions and services).
var applyOrder = map[string]int{v1.KindTopic: 0, v1.KindService: 1, v1.KindFunction: 2, v1.KindWorkflow: 3}

func (s *Server) listStacks(w http.ResponseWriter, r *http.Request) error {
	stacks, _, err := store.List[v1.Stack](r.Context(), s.store, v1.KindStack, r.PathValue("env"))
	if err != nil {
		return err
	}
	objs := make([]v1.Object, len(stacks))
	for i, st := range stacks {
		objs[i] = st
	}
	return writeList(w, objs)
}

func (s *Server) loadStack(ctx context.Context, env, name string) (*v1.Stack, error) {
	var st v1.Stack
	err := store.Get(ctx, s.store, store.Key{Kind: v1.KindStack, Environment: env, Name: name}, &st)
	if v1.IsNotFound(err) {
		return nil, v1.NotFound("stack %q not found in environment %q; deploy it with `berth stack deploy DIR -e %s`", name, env, env)
	}
	return &st, err
}

func (s *Server) getStack(w http.ResponseWriter, r *http.Request) error {
	st, err := s.loadStack(r.Context(), r.PathValue("env"), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) deployStack(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req v1.StackDeployRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	resp, err := s.deploy(r.Context(), r.PathValue("env"), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) rollbackStack(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req v1.StackRollbackRequest
	if len(body) > 0 {
		if err := decodeJSON(body, &req); err != nil {
			return err
		}
	}
	st, err := s.loadStack(ctx, env, name)
	if err != nil {
		return err
	}
	var to *v1.StackRevision
	for i := range st.Status.History {
		h := &st.Status.History[i]
		if req.Revision == 0 && h.Number < st.Status.Revision || h.Number == req.Revision {
			to = h // the newest before the current, or the one asked for
		}
	}
	if to == nil {
		if req.Revision == 0 {
			return v1.Conflict("stack %q in environment %q has no revision before %d to roll back to", name, env, st.Status.Revision)
		}
		return v1.NotFound("stack %q in environment %q has no revision %d (kept: %s)", name, env, req.Revision, revisionList(st))
	}
	resp, err := s.deploy(ctx, env, name, v1.StackDeployRequest{
		Cause:     fmt.Sprintf("rollback to revision %d", to.Number),
		Templates: to.Templates, Values: to.Values, Manifests: to.Manifests, Pins: to.Images,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func revisionList(st *v1.Stack) string {
	var ns []string
	for _, h := range st.Status.History {
		ns = append(ns, fmt.Sprint(h.Number))
	}
	return strings.Join(ns, ", ")
}

// deleteStack removes the stack's current objects and its record, in
// one transaction.
func (s *Server) deleteStack(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st, err := s.loadStack(ctx, r.PathValue("env"), r.PathValue("name"))
	if err != nil {
		return err
	}
	var ops []store.Op
	if cur := current(st); cur != nil {
		if ops, err = s.deleteOps(ctx, st.Metadata.Environment, cur.Objects); err != nil {
			return err
		}
	}
	if _, err := s.store.Txn(ctx, append(ops, store.DeleteOp(st))); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func current(st *v1.Stack) *v1.StackRevision {
	for i := range st.Status.History {
		if st.Status.History[i].Number == st.Status.Revision {
			return &st.Status.History[i]
		}
	}
	return nil
}

// deleteOps are the ops that delete the objects refs name ("Kind/name")
// that exist, at the revision read, users of topics before topics.
func (s *Server) deleteOps(ctx context.Context, env string, refs []string) ([]store.Op, error) {
	refs = slices.Clone(refs)
	slices.SortStableFunc(refs, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "/")
		kb, _, _ := strings.Cut(b, "/")
		return applyOrder[kb] - applyOrder[ka]
	})
	var ops []store.Op
	for _, ref := range refs {
		kind, name, _ := strings.Cut(ref, "/")
		key := store.Key{Kind: kind, Environment: env, Name: name}
		rec, err := s.store.Get(ctx, key)
		if v1.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("delete %s: %w", ref, err)
		}
		ops = append(ops, store.Op{Type: store.OpDelete, Key: key, ExpectRev: rec.Revision})
	}
	return ops, nil
}

// locate puts a file and document on an error found in a stack manifest.
func locate(err error, it stackItem, path string) error {
	var e *v1.Error
	if errors.As(err, &e) {
		if e.File == "" {
			e.File, e.Document = it.file, it.doc
		}
		if path != "" && e.Field != "" {
			e.Field = path + "." + e.Field
		}
		return e
	}
	return fmt.Errorf("%s (document %d): %w", it.file, it.doc, err)
}

// deploy decodes and checks every manifest of req, applies them in
// dependency order, deletes what the previous revision had and this one
// has not, and records the new revision.
func (s *Server) deploy(ctx context.Context, env, name string, req v1.StackDeployRequest) (*v1.StackDeployResponse, error) {
	if err := v1.ValidateValues(name, nil); err != nil {
		return nil, err
	}
	if err := s.requireEnvironment(ctx, env, req.DryRun); err != nil {
		return nil, err
	}
	var items []stackItem
	seen := map[string]string{}
	for _, m := range req.Manifests {
		docs, err := v1.DecodeDocuments(m.File, []byte(m.Content))
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			it := stackItem{obj: d.Object, file: m.File, doc: d.Index}
			res, ok := byKind(d.Object.GetTypeMeta().Kind)
			if !ok || !res.scoped || !res.appliable {
				return nil, locate(v1.FieldError("kind", "a stack holds the workloads of one environment; a %s cannot be part of it",
					d.Object.GetTypeMeta().Kind), it, d.Path)
			}
			it.res = res
			meta := d.Object.GetMetadata()
			if meta.Environment != "" && meta.Environment != env {
				return nil, locate(v1.FieldError("metadata.environment", "%q: a stack deploys into the environment it is given (%q); leave metadata.environment out",
					meta.Environment, env), it, d.Path)
			}
			meta.Environment = env
			it.ref = v1.ObjectRef(d.Object)
			if prev, dup := seen[it.ref]; dup {
				return nil, locate(v1.FieldError("metadata.name", "%s is already defined in %s", it.ref, prev), it, d.Path)
			}
			seen[it.ref] = fmt.Sprintf("%s (document %d)", it.file, it.doc)
			if pin, ok := req.Pins[it.ref]; ok {
				if t := v1.TemplateOf(d.Object); t != nil {
					t.Image = pin
				}
			}
			if _, err := admitStatic(d.Object, res, env, meta.Name); err != nil {
				return nil, locate(err, it, d.Path)
			}
			items = append(items, it)
		}
	}
	slices.SortStableFunc(items, func(a, b stackItem) int { return applyOrder[a.res.kind] - applyOrder[b.res.kind] })

	prev, err := s.loadStack(ctx, env, name)
	if err != nil && !v1.IsNotFound(err) {
		return nil, err
	}
	var removed []string
	if prev != nil {
		if cur := current(prev); cur != nil {
			for _, ref := range cur.Objects {
				if _, ok := seen[ref]; !ok {
					removed = append(removed, ref)
				}
			}
		}
	}
	if err := s.checkStack(ctx, env, name, items, removed); err != nil {
		return nil, err
	}

	resp := &v1.StackDeployResponse{Results: map[string]string{}}
	for _, ref := range removed {
		resp.Results[ref] = "deleted"
	}
	if req.DryRun {
		for _, it := range items {
			result, err := s.wouldApply(ctx, it)
			if err != nil {
				return nil, err
			}
			resp.Results[it.ref] = result
		}
		return resp, nil
	}
	// Everything is written in one transaction: the objects, the deletes
	// and the stack's new revision, or nothing (a failure midway must not
	// leave a partial deploy with no revision recorded). A conflict is
	// most often a controller's status write landing between the reads and
	// the write (a busy function's status changes many times a second):
	// the deploy is planned again on the new records.
	for attempt := 0; ; attempt++ {
		n, err := s.writeStack(ctx, env, name, &req, items, removed, resp)
		if err == nil {
			resp.Revision = n
			return resp, nil
		}
		if !v1.IsConflict(err) || attempt >= 10 {
			return nil, err
		}
	}
}

// writeStack plans every object of a stack deploy against the store as it
// is now and writes them, the deletes and the stack's new revision in one
// transaction, recording each object's result in resp.
func (s *Server) writeStack(ctx context.Context, env, name string, req *v1.StackDeployRequest, items []stackItem, removed []string, resp *v1.StackDeployResponse) (int64, error) {
	var ops []store.Op
	for _, it := range items {
		result, _, op, err := s.plan1(ctx, it.obj, it.res, 0)
		if err != nil {
			return 0, locate(fmt.Errorf("apply %s: %w", it.ref, err), it, "")
		}
		resp.Results[it.ref] = result
		if op != nil {
			ops = append(ops, *op)
		}
	}
	dels, err := s.deleteOps(ctx, env, removed)
	if err != nil {
		return 0, err
	}
	ops = append(ops, dels...)
	rev := v1.StackRevision{
		Deployed:  time.Now().UTC().Truncate(time.Second),
		Cause:     req.Cause,
		Templates: req.Templates,
		Values:    req.Values,
		Manifests: req.Manifests,
		Images:    s.pinImages(ctx, items),
	}
	if rev.Cause == "" {
		rev.Cause = "deploy"
	}
	for _, it := range items {
		rev.Objects = append(rev.Objects, it.ref)
	}
	n, op, err := s.stackRecordOp(ctx, env, name, rev)
	if err != nil {
		return 0, err
	}
	ops = append(ops, op)
	if _, err := s.store.Txn(ctx, ops); err != nil {
		if v1.IsConflict(err) || v1.IsNotFound(err) {
			return 0, v1.Conflict("stack %q in environment %q: an object changed while the stack was deployed (%v); nothing was applied, deploy again", name, env, err)
		}
		return 0, v1.Unavailable("stack %q in environment %q: the store refused the deploy (%v); nothing was applied", name, env, err)
	}
	return n, nil
}

// checkStack checks the stack as a whole against the store: the topics
// its functions name exist (in the store or the stack) and the
// environment's quota holds with every workload of the stack at once.
func (s *Server) checkStack(ctx context.Context, env, name string, items []stackItem, removed []string) error {
	topics := map[string]bool{}
	recs, _, err := s.store.List(ctx, v1.KindTopic, env)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		topics[rec.Key.Name] = true
	}
	for _, ref := range removed {
		if t, ok := strings.CutPrefix(ref, v1.KindTopic+"/"); ok {
			delete(topics, t)
		}
	}
	e, err := s.environment(ctx, env)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	var adding demand
	for _, it := range items {
		skip[it.ref] = true
		if t, ok := it.obj.(*v1.Topic); ok {
			topics[t.Metadata.Name] = true
		}
		if err := s.admitResources(it.obj, e); err != nil {
			return locate(err, it, "")
		}
		d, err := workloadDemand(it.obj)
		if err != nil {
			return err
		}
		adding = adding.add(d)
	}
	for _, ref := range removed {
		skip[ref] = true
	}
	for _, it := range items {
		fn, ok := it.obj.(*v1.Function)
		if !ok {
			continue
		}
		for i, tr := range fn.Spec.Triggers {
			if tr.Topic != "" && !topics[tr.Topic] {
				return locate(v1.FieldError(fmt.Sprintf("spec.triggers[%d].topic", i), "topic %q is neither in environment %q nor in the stack", tr.Topic, env), it, "")
			}
		}
		if dl := fn.Spec.Async.DeadLetterTopic; dl != "" && !topics[dl] {
			return locate(v1.FieldError("spec.async.deadLetterTopic", "topic %q is neither in environment %q nor in the stack", dl, env), it, "")
		}
	}
	if e == nil || e.Spec.Quota == nil {
		return nil
	}
	inUse, err := s.environmentDemand(ctx, env, skip)
	if err != nil {
		return err
	}
	return quotaCheck(env, e.Spec.Quota, inUse, adding, "stack/"+name)
}

// wouldApply answers what applying it would do, without the store checks
// a lone apply makes (the stack was checked as a whole).
func (s *Server) wouldApply(ctx context.Context, it stackItem) (string, error) {
	rec, err := s.store.Get(ctx, store.KeyOf(it.obj))
	if v1.IsNotFound(err) {
		return ResultCreated, nil
	}
	if err != nil {
		return "", err
	}
	cur := it.res.new()
	if err := store.Decode(rec, cur); err != nil {
		return "", err
	}
	v1.SetDefaults(cur)
	changed, err := specDiffers(cur, it.obj)
	if err != nil {
		return "", err
	}
	if !changed && maps.Equal(cur.GetMetadata().Labels, it.obj.GetMetadata().Labels) {
		return ResultUnchanged, nil
	}
	return ResultConfigured, nil
}

// pinImages records the image each workload of the stack runs, as
// name@digest: the reference itself when it is pinned already, else the
// digest the image service resolves its tag to now (the controller
// resolves the same tag to make the revision).
func (s *Server) pinImages(ctx context.Context, items []stackItem) map[string]string {
	out := map[string]string{}
	resolver, _ := s.images.(ImageResolver)
	for _, it := range items {
		t := v1.TemplateOf(it.obj)
		if t == nil {
			continue
		}
		if strings.Contains(t.Image, "@") {
			out[it.ref] = t.Image
			continue
		}
		if resolver == nil {
			continue
		}
		d, err := resolver.ResolveImage(ctx, t.Image)
		if err != nil {
			s.log.Warn("stack: cannot pin image", "object", it.ref, "image", t.Image, "err", err)
			continue
		}
		out[it.ref] = v1.PinDigest(t.Image, d)
	}
	return out
}

// stackRecordOp is the op that appends rev to the stack's history and
// makes it current, and rev's number.
func (s *Server) stackRecordOp(ctx context.Context, env, name string, rev v1.StackRevision) (int64, store.Op, error) {
	st, err := s.loadStack(ctx, env, name)
	create := v1.IsNotFound(err)
	if err != nil && !create {
		return 0, store.Op{}, err
	}
	if create {
		st = &v1.Stack{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindStack},
			Metadata: v1.ObjectMeta{Name: name, Environment: env},
		}
	}
	rev.Number = 1
	if n := len(st.Status.History); n > 0 {
		rev.Number = st.Status.History[n-1].Number + 1
	}
	st.Status.History = append(st.Status.History, rev)
	if n := len(st.Status.History); n > v1.MaxStackHistory {
		st.Status.History = st.Status.History[n-v1.MaxStackHistory:]
	}
	st.Status.Revision = rev.Number
	var op store.Op
	if create {
		op, err = store.CreateOp(st)
	} else {
		st.Metadata.Generation++
		op, err = store.UpdateOp(st)
	}
	return rev.Number, op, err
}
