package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Apply results, as docs/api.md names them.
const (
	ResultCreated    = "created"
	ResultConfigured = "configured"
	ResultUnchanged  = "unchanged"
)

// ApplyResponse is the body of a PUT answer.
type ApplyResponse struct {
	Result string    `json:"result"`
	Object v1.Object `json:"object"`
}

func (s *Server) applyEnvironment(w http.ResponseWriter, r *http.Request) error {
	res, _ := byKind(v1.KindEnvironment)
	return s.apply(w, r, res, "", r.PathValue("name"))
}

func (s *Server) applyObject(w http.ResponseWriter, r *http.Request) error {
	res, err := scopedResource(r)
	if err != nil {
		return err
	}
	return s.apply(w, r, res, r.PathValue("env"), r.PathValue("name"))
}

// apply is PUT: create or update the object at the path from the body.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, res resource, env, name string) error {
	ctx := r.Context()
	if !res.appliable {
		return notAllowed([]string{http.MethodGet}, "%s are written by the platform; only %s can be applied", res.plural, appliablePlurals())
	}
	dryRun := queryFlag(r, "dryRun")
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	obj, err := v1.DecodeObject(body)
	if err != nil {
		return err
	}
	expectRev, err := s.admit(ctx, obj, res, env, name, dryRun)
	if err != nil {
		return err
	}
	if e, ok := obj.(*v1.Environment); ok {
		if err := s.mayApplyEnvironment(r, e); err != nil {
			return err
		}
	}
	result, out, err := s.store1(ctx, obj, res, expectRev, dryRun)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if result == ResultCreated {
		status = http.StatusCreated
	}
	writeJSON(w, status, ApplyResponse{Result: result, Object: out})
	return nil
}

// store1 writes one admitted object: create, update, or nothing when
// neither spec nor labels changed. It answers the result and the object
// as stored (or as it would be, when only validating).
func (s *Server) store1(ctx context.Context, obj v1.Object, res resource, expectRev uint64, dryRun bool) (string, v1.Object, error) {
	for attempt := 0; ; attempt++ {
		result, out, err := s.store1Once(ctx, obj, res, expectRev, dryRun)
		// Without a resourceVersion of the user's, a conflict is only the
		// platform's status write landing between the read and the write
		// (a busy function's status changes many times a second): apply
		// again on the new record, as kubectl's server-side apply does.
		if err == nil || expectRev != 0 || !v1.IsConflict(err) || attempt >= 10 {
			return result, out, err
		}
	}
}

func (s *Server) store1Once(ctx context.Context, obj v1.Object, res resource, expectRev uint64, dryRun bool) (string, v1.Object, error) {
	result, out, op, err := s.plan1(ctx, obj, res, expectRev)
	if err == nil && dryRun && result == ResultCreated {
		// Nothing was created: no UID or creation time to show.
		md := out.GetMetadata()
		md.UID, md.CreationTimestamp = "", time.Time{}
	}
	if err != nil || op == nil || dryRun {
		return result, out, err
	}
	revs, err := s.store.Txn(ctx, []store.Op{*op})
	if err != nil {
		return "", nil, err
	}
	out.GetMetadata().ResourceVersion = revs[0]
	return result, out, nil
}

// plan1 works out what applying obj means: created, configured (with the
// platform's part of the object kept) or unchanged, and the store op that
// does it (nil when unchanged). It writes nothing, so a stack can apply
// many objects in one transaction.
func (s *Server) plan1(ctx context.Context, obj v1.Object, res resource, expectRev uint64) (string, v1.Object, *store.Op, error) {
	meta := obj.GetMetadata()
	env, name := meta.Environment, meta.Name
	rec, err := s.store.Get(ctx, store.KeyOf(obj))
	if v1.IsNotFound(err) {
		if expectRev != 0 {
			return "", nil, nil, v1.Conflict("%s does not exist, so metadata.resourceVersion %d cannot match; remove resourceVersion to create it",
				describe(res, env, name), expectRev)
		}
		op, err := store.CreateOp(obj)
		if err != nil {
			return "", nil, nil, err
		}
		return ResultCreated, obj, &op, nil
	}
	if err != nil {
		return "", nil, nil, err
	}
	cur := res.new()
	if err := store.Decode(rec, cur); err != nil {
		return "", nil, nil, err
	}
	if expectRev != 0 && expectRev != rec.Revision {
		return "", nil, nil, v1.Conflict("%s was modified: metadata.resourceVersion is %d, the stored one is %d; get it again and reapply",
			describe(res, env, name), expectRev, rec.Revision)
	}
	v1.SetDefaults(cur) // a record written by an older release compares fairly
	specChanged, err := specDiffers(cur, obj)
	if err != nil {
		return "", nil, nil, err
	}
	if !specChanged && maps.Equal(cur.GetMetadata().Labels, meta.Labels) {
		return ResultUnchanged, cur, nil, nil
	}
	// The platform's part of the object stays as it was.
	old := cur.GetMetadata()
	meta.UID, meta.CreationTimestamp, meta.Generation = old.UID, old.CreationTimestamp, old.Generation
	meta.ResourceVersion = rec.Revision
	if specChanged {
		meta.Generation++
	}
	if err := copyStatus(obj, cur); err != nil {
		return "", nil, nil, err
	}
	op, err := store.UpdateOp(obj)
	if err != nil {
		return "", nil, nil, err
	}
	return ResultConfigured, obj, &op, nil
}

// admit checks a decoded object against the path it was sent to, clears
// what only the platform writes, defaults and validates it. It returns the
// resourceVersion the client asked to compare against (0: none).
func (s *Server) admit(ctx context.Context, obj v1.Object, res resource, env, name string, dryRun bool) (uint64, error) {
	expectRev, err := admitStatic(obj, res, env, name)
	if err != nil {
		return 0, err
	}
	return expectRev, s.admitStored(ctx, obj, res, env, dryRun)
}

// admitStatic is the part of admit that needs nothing but obj.
func admitStatic(obj v1.Object, res resource, env, name string) (uint64, error) {
	if kind := obj.GetTypeMeta().Kind; kind != res.kind {
		hint := ""
		if other, ok := byKind(kind); ok {
			hint = fmt.Sprintf("; send it to the %s path", other.plural)
		}
		return 0, v1.FieldError("kind", "a %s cannot be applied at a %s path%s", kind, res.plural, hint)
	}
	meta := obj.GetMetadata()
	switch meta.Name {
	case "":
		meta.Name = name
	case name:
	default:
		return 0, v1.FieldError("metadata.name", "%q does not match the name in the path, %q", meta.Name, name)
	}
	if res.scoped {
		switch meta.Environment {
		case "":
			meta.Environment = env
		case env:
		default:
			return 0, v1.FieldError("metadata.environment", "%q does not match the environment in the path, %q", meta.Environment, env)
		}
	}
	expectRev := meta.ResourceVersion
	meta.UID, meta.Generation, meta.CreationTimestamp, meta.ResourceVersion = "", 0, time.Time{}, 0
	if err := clearStatus(obj); err != nil {
		return 0, err
	}
	v1.SetDefaults(obj)
	if err := v1.Validate(obj); err != nil {
		return 0, err
	}
	if wf, ok := obj.(*v1.Workflow); ok {
		if err := ValidateDefinition(wf.Spec.Definition); err != nil {
			return 0, err
		}
	}
	return expectRev, nil
}

// admitStored checks obj against what is stored: its environment, the
// topics it names, its environment's limits (the defaults are written into
// obj) and quota, and the node's capacity.
func (s *Server) admitStored(ctx context.Context, obj v1.Object, res resource, env string, dryRun bool) error {
	if res.scoped {
		if err := s.requireEnvironment(ctx, env, dryRun); err != nil {
			return err
		}
	}
	if fn, ok := obj.(*v1.Function); ok {
		if err := s.requireTopics(ctx, fn); err != nil {
			return err
		}
	}
	if v1.TemplateOf(obj) == nil {
		return nil
	}
	if err := s.checkTraffic(ctx, obj); err != nil {
		return err
	}
	e, err := s.environment(ctx, env)
	if err != nil {
		return err
	}
	if err := s.admitResources(obj, e); err != nil {
		return err
	}
	return s.checkQuota(ctx, obj, e)
}

// requireEnvironment fails unless env exists. The default environment is
// created when missing (unless only validating): every manifest without an
// environment lands there, and it must not depend on a start-up step.
func (s *Server) requireEnvironment(ctx context.Context, env string, dryRun bool) error {
	_, err := s.store.Get(ctx, store.Key{Kind: v1.KindEnvironment, Name: env})
	switch {
	case err == nil:
		return nil
	case !v1.IsNotFound(err):
		return err
	case env == v1.DefaultEnvironment:
		if dryRun {
			return nil
		}
		return EnsureDefaultEnvironment(ctx, s.store)
	}
	return &v1.Error{
		Kind:  v1.ErrNotFound,
		Field: "metadata.environment",
		Message: fmt.Sprintf("environment %q not found; create it first with `berth apply -f` "+
			"of a manifest with apiVersion: %s, kind: Environment, metadata.name: %s", env, v1.APIVersion, env),
	}
}

// requireTopics fails unless every topic fn names (its triggers' and its
// dead-letter topic) is a Topic of its environment: a trigger on a topic
// nobody can publish to would never fire, and dead letters with nowhere to
// go would be lost. Topics are applied before functions (the CLI orders
// them so), and a Topic in use cannot be deleted (checkTopicUnused).
func (s *Server) requireTopics(ctx context.Context, fn *v1.Function) error {
	env := fn.Metadata.Environment
	recs, _, err := s.store.List(ctx, v1.KindTopic, env)
	if err != nil {
		return err
	}
	exists := make(map[string]bool, len(recs))
	for _, rec := range recs {
		exists[rec.Key.Name] = true
	}
	missing := func(field, topic string) error {
		return v1.FieldError(field, "topic %q not found in environment %q; create it with a Topic manifest "+
			"(apiVersion: %s, kind: Topic, metadata.name: %s)", topic, env, v1.APIVersion, topic)
	}
	for i, tr := range fn.Spec.Triggers {
		if tr.Topic != "" && !exists[tr.Topic] {
			return missing(fmt.Sprintf("spec.triggers[%d].topic", i), tr.Topic)
		}
	}
	if dl := fn.Spec.Async.DeadLetterTopic; dl != "" && !exists[dl] {
		return missing("spec.async.deadLetterTopic", dl)
	}
	return nil
}

// specDiffers compares the specs as JSON: both are defaulted, so a field
// spelled out with its default value is no change.
func specDiffers(a, b v1.Object) (bool, error) {
	sa, err := specJSON(a)
	if err != nil {
		return false, err
	}
	sb, err := specJSON(b)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(sa, sb), nil
}

func specJSON(obj v1.Object) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", store.KeyOf(obj), err)
	}
	var parts struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return nil, fmt.Errorf("encode %s: %w", store.KeyOf(obj), err)
	}
	return parts.Spec, nil
}

// clearStatus drops a status the client sent: only the platform writes it.
func clearStatus(obj v1.Object) error {
	switch o := obj.(type) {
	case *v1.Service:
		o.Status = v1.ServiceStatus{}
	case *v1.Function:
		o.Status = v1.FunctionStatus{}
	case *v1.Environment:
		o.Status = v1.EnvironmentStatus{}
	case *v1.Topic:
		// A Topic has no status.
	case *v1.Workflow:
		o.Status = v1.WorkflowStatus{}
	default:
		return fmt.Errorf("apply of %T is not supported", obj)
	}
	return nil
}

func copyStatus(dst, src v1.Object) error {
	switch d := dst.(type) {
	case *v1.Service:
		d.Status = src.(*v1.Service).Status
	case *v1.Function:
		d.Status = src.(*v1.Function).Status
	case *v1.Environment:
		d.Status = src.(*v1.Environment).Status
	case *v1.Topic:
	case *v1.Workflow:
		d.Status = src.(*v1.Workflow).Status
	default:
		return fmt.Errorf("apply of %T is not supported", dst)
	}
	return nil
}

// readBody reads a body of at most limit bytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, v1.Invalid("read request body: %v", err)
	}
	return b, nil
}

// queryFlag reads a boolean query parameter: present and not "0" or "false"
// ("dryRun=All", as kubectl sends it, counts).
func queryFlag(r *http.Request, name string) bool {
	v, ok := r.URL.Query()[name]
	if !ok {
		return false
	}
	switch last := v[len(v)-1]; last {
	case "0", "false", "False", "FALSE":
		return false
	}
	return true
}
