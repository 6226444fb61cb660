package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// environmentContents are the kinds an environment holds, in the order a
// cascading delete removes them: users of topics (workflows, functions)
// before the topics, stacks first so none redeploys what is going.
// Secrets, configs and stacks count as contents too: left behind they
// would come back with an environment of the same name.
var environmentContents = []string{
	v1.KindStack, v1.KindWorkflow, v1.KindFunction, v1.KindService, v1.KindTopic, v1.KindSecret, v1.KindConfig,
}

// emptyEnvironment deletes everything in env (delete --cascade). The
// controllers then stop the instances of the deleted workloads.
func (s *Server) emptyEnvironment(ctx context.Context, env string) error {
	for _, kind := range environmentContents {
		recs, _, err := s.store.List(ctx, kind, env)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := s.store.Delete(ctx, rec.Key, 0); err != nil && !v1.IsNotFound(err) {
				return fmt.Errorf("delete %s: %w", rec.Key, err)
			}
		}
	}
	return nil
}

// mayApplyEnvironment keeps what bounds an environment out of its own
// admins' hands: the authorization table lets an admin token of env apply
// env, for its allowFrom and labels, but creating an environment or
// changing its quota or limits needs an admin token for all environments,
// or an environment's admin could raise its own share of the node.
func (s *Server) mayApplyEnvironment(r *http.Request, e *v1.Environment) error {
	p, err := s.principal(r)
	if err != nil || p.superuser() {
		return err
	}
	deny := func(what string) *v1.Error {
		return v1.Errorf(v1.ErrForbidden, "token %q (role %s, environments %s) may not %s environment %q: "+
			"only an admin token for all environments creates environments and sets their quota and limits",
			p.Name, p.Role, strings.Join(p.Environments, ","), what, e.Metadata.Name)
	}
	keep := func(err *v1.Error) error {
		err.Message += fmt.Sprintf("; to change its other fields, apply it with spec.quota and spec.limits as "+
			"`berth get environment %s -o yaml` shows them", e.Metadata.Name)
		return err
	}
	cur, err := s.environment(r.Context(), e.Metadata.Name)
	if err != nil {
		return err
	}
	switch {
	case cur == nil:
		return deny("create")
	case !reflect.DeepEqual(orEmpty(cur.Spec.Quota), orEmpty(e.Spec.Quota)):
		return keep(deny("change spec.quota of"))
	case !reflect.DeepEqual(orEmpty(cur.Spec.Limits), orEmpty(e.Spec.Limits)):
		return keep(deny("change spec.limits of"))
	}
	return nil
}

// orEmpty makes a nil bound and an empty one compare equal: `quota: {}`
// changes nothing.
func orEmpty[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
