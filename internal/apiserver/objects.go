package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// EnsureDefaultEnvironment creates the default environment unless it
// exists. The server calls it at start; apply calls it too, so a store
// where someone deleted the record directly heals on the next apply.
func EnsureDefaultEnvironment(ctx context.Context, st store.Store) error {
	_, err := st.Get(ctx, store.Key{Kind: v1.KindEnvironment, Name: v1.DefaultEnvironment})
	if !v1.IsNotFound(err) {
		return err
	}
	env := &v1.Environment{Metadata: v1.ObjectMeta{Name: v1.DefaultEnvironment}}
	v1.SetDefaults(env)
	if err := store.Create(ctx, st, env); err != nil && !v1.IsConflict(err) {
		return fmt.Errorf("create the default environment: %w", err)
	}
	return nil
}

// scopedResource resolves {plural} in an environment-scoped path.
func scopedResource(r *http.Request) (resource, error) {
	res, err := byPlural(r.PathValue("plural"))
	if err != nil {
		return resource{}, err
	}
	if !res.scoped {
		return resource{}, v1.NotFound("%s are not inside an environment; use /api/v1/%s", res.plural, res.plural)
	}
	return res, nil
}

func keyFor(res resource, env, name string) store.Key {
	if !res.scoped {
		env = ""
	}
	return store.Key{Kind: res.kind, Environment: env, Name: name}
}

// describe names an object the way error messages do.
func describe(res resource, env, name string) string {
	if !res.scoped {
		return fmt.Sprintf("%s %q", strings.ToLower(res.kind), name)
	}
	return fmt.Sprintf("%s %q in environment %q", strings.ToLower(res.kind), name, env)
}

// load reads one object; NotFound names it as a user would.
func (s *Server) load(ctx context.Context, res resource, env, name string) (v1.Object, error) {
	rec, err := s.store.Get(ctx, keyFor(res, env, name))
	if v1.IsNotFound(err) {
		return nil, v1.NotFound("%s not found", describe(res, env, name))
	}
	if err != nil {
		return nil, err
	}
	obj := res.new()
	if err := store.Decode(rec, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// list reads the objects of res in env ("" for all), in reading order.
func (s *Server) list(ctx context.Context, res resource, env string) ([]v1.Object, error) {
	recs, _, err := s.store.List(ctx, res.kind, env)
	if err != nil {
		return nil, err
	}
	objs := make([]v1.Object, len(recs))
	for i, rec := range recs {
		objs[i] = res.new()
		if err := store.Decode(rec, objs[i]); err != nil {
			return nil, err
		}
	}
	sortObjects(objs)
	return objs, nil
}

func writeList(w http.ResponseWriter, objs []v1.Object) error {
	l := v1.List{APIVersion: v1.APIVersion, Kind: "List", Items: make([]json.RawMessage, 0, len(objs))}
	for _, obj := range objs {
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode %s: %w", store.KeyOf(obj), err)
		}
		l.Items = append(l.Items, b)
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	res, _ := byKind(v1.KindEnvironment)
	objs, err := s.list(r.Context(), res, "")
	if err != nil {
		return err
	}
	if objs, err = s.visible(r, objs); err != nil {
		return err
	}
	return writeList(w, objs)
}

func (s *Server) listAll(w http.ResponseWriter, r *http.Request) error {
	res, err := byPlural(r.PathValue("plural"))
	if err != nil {
		return err
	}
	objs, err := s.list(r.Context(), res, "")
	if err != nil {
		return err
	}
	if objs, err = s.visible(r, objs); err != nil {
		return err
	}
	return writeList(w, objs)
}

// listInEnvironment lists a kind in one environment. An environment that
// does not exist has nothing in it, as kubectl answers for a namespace.
func (s *Server) listInEnvironment(w http.ResponseWriter, r *http.Request) error {
	res, err := scopedResource(r)
	if err != nil {
		return err
	}
	objs, err := s.list(r.Context(), res, r.PathValue("env"))
	if err != nil {
		return err
	}
	if object := r.URL.Query().Get("object"); object != "" {
		if res.kind != v1.KindEvent {
			return v1.FieldError("object", "the object filter applies to events only")
		}
		kept := objs[:0]
		for _, obj := range objs {
			if obj.(*v1.Event).Object == object {
				kept = append(kept, obj)
			}
		}
		objs = kept
	}
	return writeList(w, objs)
}

func (s *Server) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	res, _ := byKind(v1.KindEnvironment)
	return s.get(w, r, res, "", r.PathValue("name"))
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request) error {
	res, err := scopedResource(r)
	if err != nil {
		return err
	}
	return s.get(w, r, res, r.PathValue("env"), r.PathValue("name"))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res resource, env, name string) error {
	obj, err := s.load(r.Context(), res, env, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, obj)
	return nil
}

func (s *Server) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	res, _ := byKind(v1.KindEnvironment)
	return s.delete(w, r, res, "", r.PathValue("name"))
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request) error {
	res, err := scopedResource(r)
	if err != nil {
		return err
	}
	return s.delete(w, r, res, r.PathValue("env"), r.PathValue("name"))
}

// delete removes one object and answers it as it was. Removing a Service's
// instances and revisions is the controller's work once the Service is gone.
func (s *Server) delete(w http.ResponseWriter, r *http.Request, res resource, env, name string) error {
	ctx := r.Context()
	if !res.appliable {
		return notAllowed([]string{http.MethodGet}, "%s are written by the platform and cannot be deleted; delete their service or function instead", res.plural)
	}
	obj, err := s.load(ctx, res, env, name)
	if err != nil {
		return err
	}
	switch res.kind {
	case v1.KindEnvironment:
		if queryFlag(r, "cascade") && name != v1.DefaultEnvironment {
			if err := s.emptyEnvironment(ctx, name); err != nil {
				return err
			}
		}
		if err := s.checkEnvironmentEmpty(ctx, name); err != nil {
			return err
		}
		if held := s.stateHeld(ctx, name); held != "" && !queryFlag(r, "cascade") {
			return v1.Conflict("environment %q still holds %s; delete them first, or delete the environment with --cascade", name, held)
		}
		// Its tokens go first: if the environment's delete then fails
		// (or the server dies), it is left with fewer tokens, never
		// one of its name with its predecessor's.
		if err := s.revokeTokens(ctx, name); err != nil {
			return err
		}
	case v1.KindTopic:
		if err := s.checkTopicUnused(ctx, env, name); err != nil {
			return err
		}
	}
	if err := store.Delete(ctx, s.store, obj); err != nil {
		return err
	}
	if res.kind == v1.KindEnvironment {
		// Again, for a token made for it while it was being deleted.
		if err := s.revokeTokens(ctx, name); err != nil {
			return err
		}
		s.deleteState(ctx, name)
	}
	writeJSON(w, http.StatusOK, obj)
	return nil
}

// revokeTokens takes a deleted environment out of every token's scope,
// again from the top when a token changed under it.
func (s *Server) revokeTokens(ctx context.Context, env string) error {
	var err error
	for range 5 {
		var deleted, narrowed []string
		deleted, narrowed, err = revokeEnvironmentTokens(ctx, s.store, env)
		if len(deleted)+len(narrowed) > 0 {
			s.log.Info("tokens revoked with their environment", "environment", env, "deleted", deleted, "narrowed", narrowed)
		}
		if !v1.IsConflict(err) {
			return err
		}
	}
	return err
}

func (s *Server) checkEnvironmentEmpty(ctx context.Context, name string) error {
	if name == v1.DefaultEnvironment {
		return v1.Conflict("the %q environment cannot be deleted", v1.DefaultEnvironment)
	}
	// Topics count too: left behind, they would come back with their
	// messages when an environment of the same name is made again.
	var held []string
	for _, kind := range environmentContents {
		recs, _, err := s.store.List(ctx, kind, name)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			continue
		}
		names := make([]string, len(recs))
		for i, rec := range recs {
			names[i] = rec.Key.Name
		}
		held = append(held, strings.ToLower(kind)+"s: "+strings.Join(names, ", "))
	}
	if len(held) > 0 {
		return v1.Conflict("environment %q still has %s; delete them first, or delete the environment with --cascade", name, strings.Join(held, "; "))
	}
	return nil
}

// checkTopicUnused refuses to delete a topic a function still triggers on
// or sends dead letters to: apply would not have let that function in
// without it, and the queue would have nowhere to put its messages.
func (s *Server) checkTopicUnused(ctx context.Context, env, name string) error {
	fns, _, err := store.List[v1.Function](ctx, s.store, v1.KindFunction, env)
	if err != nil {
		return err
	}
	var users []string
	for _, fn := range fns {
		if usesTopic(fn, name) {
			users = append(users, fn.Metadata.Name)
		}
	}
	if len(users) > 0 {
		return v1.Conflict("topic %q in environment %q is still used by functions: %s; remove it from their triggers "+
			"and deadLetterTopic, or delete them first", name, env, strings.Join(users, ", "))
	}
	return nil
}

func usesTopic(fn *v1.Function, topic string) bool {
	if fn.Spec.Async.DeadLetterTopic == topic {
		return true
	}
	for _, tr := range fn.Spec.Triggers {
		if tr.Topic == topic {
			return true
		}
	}
	return false
}
