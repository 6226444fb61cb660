package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/events"
	"berth.dev/berth/internal/store"
)

// checkTraffic checks a workload's spec.traffic against what is stored:
// each revision it names exists, and no tag host (TAG-NAME) is another
// workload's name in the environment, nor the workload's own name another's
// tag host; either would make one host reach two things.
func (s *Server) checkTraffic(ctx context.Context, obj v1.Object) error {
	meta := obj.GetMetadata()
	env, name, kind := meta.Environment, meta.Name, obj.GetTypeMeta().Kind
	traffic := v1.TrafficOf(obj)
	what := strings.ToLower(kind)
	if len(traffic) > 0 {
		revs, err := s.revisionsOf(ctx, env, kind, name)
		if err != nil {
			return err
		}
		have := map[int64]bool{}
		for _, r := range revs {
			have[r.Spec.Number] = true
		}
		for i, t := range traffic {
			if t.Revision > 0 && !have[t.Revision] {
				hint := "it has no revisions yet: use latestRevision: true"
				if len(revs) > 0 {
					hint = fmt.Sprintf("it has revisions %s; `berth rollout history %s` lists them", revisionNumbers(revs), name)
				}
				return v1.FieldError(fmt.Sprintf("spec.traffic[%d].revision", i), "revision %d of %s %q not found; %s", t.Revision, what, name, hint)
			}
		}
	}
	// Every workload of the environment, with its tag hosts.
	type other struct{ kind, name string }
	names := map[string]other{}
	tagHosts := map[string]other{}
	svcs, _, err := store.List[v1.Service](ctx, s.store, v1.KindService, env)
	if err != nil {
		return err
	}
	fns, _, err := store.List[v1.Function](ctx, s.store, v1.KindFunction, env)
	if err != nil {
		return err
	}
	var objs []v1.Object
	for _, o := range svcs {
		objs = append(objs, o)
	}
	for _, o := range fns {
		objs = append(objs, o)
	}
	for _, o := range objs {
		k, n := o.GetTypeMeta().Kind, o.GetMetadata().Name
		if k == kind && n == name {
			continue
		}
		names[n] = other{k, n}
		for _, t := range v1.TrafficOf(o) {
			if t.Tag != "" {
				tagHosts[v1.TagHost(t.Tag, n)] = other{k, n}
			}
		}
	}
	for i, t := range traffic {
		if t.Tag == "" {
			continue
		}
		host := v1.TagHost(t.Tag, name)
		if o, ok := names[host]; ok {
			return v1.FieldError(fmt.Sprintf("spec.traffic[%d].tag", i), "tag %q makes the host %s, which is the name of %s %q in environment %q; choose another tag",
				t.Tag, host, strings.ToLower(o.kind), o.name, env)
		}
		if o, ok := tagHosts[host]; ok {
			return v1.FieldError(fmt.Sprintf("spec.traffic[%d].tag", i), "tag %q makes the host %s, which %s %q's tag already makes; choose another tag",
				t.Tag, host, strings.ToLower(o.kind), o.name)
		}
	}
	if o, ok := tagHosts[name]; ok {
		return v1.FieldError("metadata.name", "%q is the host of a tag of %s %q in environment %q; choose another name or change that tag",
			name, strings.ToLower(o.kind), o.name, env)
	}
	return nil
}

func revisionNumbers(revs []*v1.Revision) string {
	var b strings.Builder
	for i, r := range revs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, r.Spec.Number)
	}
	return b.String()
}

// canaryAction answers POST .../{services|functions}/NAME/{promote|abort}:
// a canary in progress is promoted at once (every remaining step
// skipped) or rolled back to its stable revision. The workload's
// controller moves the instances and the split, as when the canary
// controller decides.
func (s *Server) canaryAction(kind, action string) handlerFunc {
	res, _ := byKind(kind)
	what := strings.ToLower(kind)
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		env, name := r.PathValue("env"), r.PathValue("name")
		obj, err := s.load(ctx, res, env, name)
		if err != nil {
			return err
		}
		var c **v1.CanaryStatus
		switch o := obj.(type) {
		case *v1.Service:
			c = &o.Status.Canary
		case *v1.Function:
			c = &o.Status.Canary
		}
		if !(*c).Active() {
			msg := "it has no canary"
			if *c != nil {
				msg = fmt.Sprintf("its canary of revision %d is %s", (*c).Revision, strings.ToLower((*c).Phase))
			}
			return v1.Conflict("%s %q in environment %q has no canary in progress to %s: %s", what, name, env, action, msg)
		}
		next := **c
		if action == "promote" {
			next.Phase, next.Percent = v1.CanaryPromoted, 100
			next.Message = fmt.Sprintf("promoted by hand at step %d", next.Step+1)
		} else {
			next.Phase = v1.CanaryAborted
			next.Message = fmt.Sprintf("aborted by hand at step %d (%d%%)", next.Step+1, next.Percent)
		}
		*c = &next
		if err := store.Update(ctx, s.store, obj); err != nil {
			return err
		}
		reason, typ := "CanaryPromoted", "Normal"
		if action == "abort" {
			reason, typ = "CanaryAborted", "Warning"
		}
		(&events.Recorder{Store: s.store}).Record(ctx, env, kind+"/"+name, typ, reason, fmt.Sprintf("Canary revision %d %s", next.Revision, next.Message))
		writeJSON(w, http.StatusOK, obj)
		return nil
	}
}
