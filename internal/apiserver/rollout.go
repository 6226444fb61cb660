package apiserver

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// RollbackRequest is the body of POST .../{services|functions}/NAME/rollback.
type RollbackRequest struct {
	// ToRevision is the revision number to go back to; 0 means the one
	// before the current revision.
	ToRevision int64 `json:"toRevision"`
}

// revisionsOf returns a workload's revisions (kind Service or Function),
// oldest first.
func (s *Server) revisionsOf(ctx context.Context, env, kind, name string) ([]*v1.Revision, error) {
	revs, _, err := store.List[v1.Revision](ctx, s.store, v1.KindRevision, env)
	if err != nil {
		return nil, err
	}
	out := revs[:0]
	for _, rev := range revs {
		if rev.Spec.Owner == name && rev.Spec.OwnerKind == kind {
			out = append(out, rev)
		}
	}
	slices.SortFunc(out, func(a, b *v1.Revision) int { return cmp.Compare(a.Spec.Number, b.Spec.Number) })
	return out, nil
}

func (s *Server) loadService(ctx context.Context, env, name string) (*v1.Service, error) {
	res, _ := byKind(v1.KindService)
	obj, err := s.load(ctx, res, env, name)
	if err != nil {
		return nil, err
	}
	return obj.(*v1.Service), nil
}

// workload is what rollback needs of a Service or a Function: the template
// it runs and the revision its controller converges to.
func workload(obj v1.Object) (template *v1.Template, current int64) {
	switch o := obj.(type) {
	case *v1.Service:
		return &o.Spec.Template, o.Status.Revision
	case *v1.Function:
		return &o.Spec.Template, o.Status.Revision
	}
	panic(fmt.Sprintf("workload of a %T", obj))
}

// listRevisions answers GET .../{services|functions}/NAME/revisions.
func (s *Server) listRevisions(kind string) handlerFunc {
	res, _ := byKind(kind)
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		env, name := r.PathValue("env"), r.PathValue("name")
		if _, err := s.load(ctx, res, env, name); err != nil {
			return err
		}
		revs, err := s.revisionsOf(ctx, env, kind, name)
		if err != nil {
			return err
		}
		objs := make([]v1.Object, len(revs))
		for i, rev := range revs {
			objs[i] = rev
		}
		return writeList(w, objs)
	}
}

// rollback points a workload's template back at a revision's. The
// controller then makes a new revision from it, as kubectl's rollout undo
// does, so the history only grows. Everything outside the template
// (replicas, scale, triggers, route) stays as it is.
func (s *Server) rollback(kind string) handlerFunc {
	res, _ := byKind(kind)
	what := strings.ToLower(kind)
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		env, name := r.PathValue("env"), r.PathValue("name")
		body, err := s.readBody(w, r, s.maxBody)
		if err != nil {
			return err
		}
		var req RollbackRequest
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				return v1.Invalid("rollback body: %v; expected {\"toRevision\": N}", err)
			}
		}
		if req.ToRevision < 0 {
			return v1.FieldError("toRevision", "must be a revision number, or 0 for the previous revision")
		}
		obj, err := s.load(ctx, res, env, name)
		if err != nil {
			return err
		}
		template, current := workload(obj)
		revs, err := s.revisionsOf(ctx, env, kind, name)
		if err != nil {
			return err
		}
		var target *v1.Revision
		if req.ToRevision == 0 {
			for _, rev := range revs {
				if rev.Spec.Number < current {
					target = rev // revs are in number order: the last one wins
				}
			}
			if target == nil {
				return v1.NotFound("%s %q in environment %q has no revision before its current one (%d) to roll back to", what, name, env, current)
			}
		} else {
			for _, rev := range revs {
				if rev.Spec.Number == req.ToRevision {
					target = rev
				}
			}
			if target == nil {
				return v1.NotFound("revision %d of %s %q in environment %q not found; `berth rollout history` lists them", req.ToRevision, what, name, env)
			}
			if req.ToRevision == current {
				return v1.Conflict("%s %q is already at revision %d", what, name, current)
			}
		}
		prev := *template
		*template = target.Spec.Template
		// A rollback is admitted as an apply is: a revision made before
		// limits were written at apply gets the environment's defaults,
		// and one bigger than the quota or the node now allows is refused.
		e, err := s.environment(ctx, env)
		if err != nil {
			return err
		}
		if err := s.admitResources(obj, e); err != nil {
			return err
		}
		if v1.TemplateHash(prev) == v1.TemplateHash(*template) {
			// Already asked for (the controller has not caught up): writing
			// again would only bump the generation.
			*template = prev
			writeJSON(w, http.StatusOK, obj)
			return nil
		}
		if err := s.checkQuota(ctx, obj, e); err != nil {
			return err
		}
		obj.GetMetadata().Generation++
		if err := store.Update(ctx, s.store, obj); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, obj)
		return nil
	}
}
