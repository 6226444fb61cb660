package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/accesskeys"
	"berth.dev/berth/internal/objects"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
)

// ObjectStore is the environments' object store as the API uses it
// (objects.Store).
type ObjectStore interface {
	CreateBucket(ctx context.Context, env, bucket string) error
	DeleteBucket(ctx context.Context, env, bucket string) error
	ListBuckets(ctx context.Context, env string) ([]objects.Bucket, error)
	List(ctx context.Context, env, bucket string, opts objects.ListOptions) (objects.ListResult, error)
	Put(ctx context.Context, env, bucket, key string, body io.Reader, meta objects.Meta, opts objects.WriteOptions, cond objects.Conditions) (objects.Object, error)
	Get(ctx context.Context, env, bucket, key string, cond objects.Conditions) (objects.Object, *objects.Reader, error)
	Delete(ctx context.Context, env, bucket, key string, cond objects.Conditions) error
	DeleteEnvironment(ctx context.Context, env string) error
	Usage(env string) objects.Usage
	Limits(env string) objects.Limits
}

// KVStore is the environments' key-value store as the API uses it.
type KVStore interface {
	// Serve answers a request for key of env ("" lists or watches).
	Serve(w http.ResponseWriter, r *http.Request, env, key string) error
	Usage(ctx context.Context, env string) (bytes, keys uint64, err error)
	DeleteEnvironment(ctx context.Context, env string) error
}

// AccessKeys issues the key pairs of tokens (accesskeys.Keys).
type AccessKeys interface {
	Create(ctx context.Context, token string) (*v1.AccessKey, error)
	List(ctx context.Context, token string) ([]*v1.AccessKey, error)
	Get(ctx context.Context, id string) (*v1.AccessKey, error)
	Delete(ctx context.Context, id string) error
	DeleteForToken(ctx context.Context, token string) error
}

func (s *Server) stateRoutes(api func(string, methods)) {
	api("/api/v1/accesskeys", methods{http.MethodGet: s.listAccessKeys, http.MethodPost: s.createAccessKey})
	api("/api/v1/accesskeys/{id}", methods{http.MethodDelete: s.deleteAccessKey})
	api("/api/v1/environments/{env}/state", methods{http.MethodGet: s.stateUsage})
	api("/api/v1/environments/{env}/buckets", methods{http.MethodGet: s.listBuckets})
	api("/api/v1/environments/{env}/buckets/{bucket}", methods{
		http.MethodPut:    s.createBucket,
		http.MethodDelete: s.deleteBucket,
	})
	api("/api/v1/environments/{env}/buckets/{bucket}/objects", methods{http.MethodGet: s.listObjects})
	api("/api/v1/environments/{env}/buckets/{bucket}/objects/{key...}", methods{
		http.MethodGet:    s.getObjectData,
		http.MethodPut:    s.putObjectData,
		http.MethodDelete: s.deleteObjectData,
	})
	kv := methods{"": s.serveKV}
	api("/api/v1/environments/{env}/kv", kv)
	// Not {key...}: that would clash with {plural}/{name} on one segment.
	api("/api/v1/environments/{env}/kv/{key}", kv)
	api("/api/v1/environments/{env}/kv/{key}/{rest...}", kv)
}

// --- access keys ---

func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request) error {
	if s.accessKeys == nil {
		return v1.Unavailable("access keys are not served here")
	}
	p, err := s.principal(r)
	if err != nil {
		return err
	}
	ak, err := s.accessKeys.Create(r.Context(), p.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, ak)
	return nil
}

// listAccessKeys lists the caller's keys (a superuser's: everyone's).
func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request) error {
	if s.accessKeys == nil {
		return v1.Unavailable("access keys are not served here")
	}
	p, err := s.principal(r)
	if err != nil {
		return err
	}
	token := p.Name
	if p.superuser() {
		token = ""
	}
	keys, err := s.accessKeys.List(r.Context(), token)
	if err != nil {
		return err
	}
	objs := make([]v1.Object, len(keys))
	for i, k := range keys {
		objs[i] = k
	}
	return writeList(w, objs)
}

func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request) error {
	if s.accessKeys == nil {
		return v1.Unavailable("access keys are not served here")
	}
	p, err := s.principal(r)
	if err != nil {
		return err
	}
	ak, err := s.accessKeys.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if ak.Spec.Token != p.Name && !p.superuser() {
		// Not telling a stranger's key from a missing one.
		return v1.NotFound("no access key %s", r.PathValue("id"))
	}
	if err := s.accessKeys.Delete(r.Context(), ak.Metadata.Name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ak)
	return nil
}

// CanAccess says whether p may read (write false) or write the object and
// key-value stores of env: viewers read, deployers and admins write, in
// their environments.
func (p Principal) CanAccess(env string, write bool) error {
	if !p.In(env) {
		return v1.Errorf(v1.ErrForbidden, "%s acts in environments %s, not in %q", p.Name, strings.Join(p.Environments, ","), env)
	}
	if write && roleRank[p.Role] < roleRank[v1.RoleDeployer] {
		return v1.Errorf(v1.ErrForbidden, "%s has role %s; writing needs deployer or admin", p.Name, p.Role)
	}
	return nil
}

// TokenPrincipal is whom the token named name acts as now: the bootstrap
// admin for "admin" (when no stored token has that name), Unauthorized
// once revoked.
func (a *RoleAuthorizer) TokenPrincipal(ctx context.Context, name string) (Principal, error) {
	var t v1.Token
	err := store.Get(ctx, a.store, store.Key{Kind: v1.KindToken, Name: name}, &t)
	switch {
	case err == nil:
		return Principal{Name: t.Metadata.Name, Role: t.Spec.Role, Environments: t.Spec.Environments}, nil
	case v1.IsNotFound(err) && name == "admin":
		return Principal{Name: "admin", Role: v1.RoleAdmin, Environments: []string{v1.AllEnvironments}}, nil
	case v1.IsNotFound(err):
		return Principal{}, v1.Errorf(v1.ErrUnauthorized, "the token %q of this access key was revoked", name)
	}
	return Principal{}, err
}

// KeyPrincipal is whom a found access key acts as: its token, or a
// deployer of its instances' environment only.
func (a *RoleAuthorizer) KeyPrincipal(ctx context.Context, f accesskeys.Found) (Principal, error) {
	if f.Environment != "" {
		return Principal{Name: "instances of " + f.Environment, Role: v1.RoleDeployer, Environments: []string{f.Environment}}, nil
	}
	return a.TokenPrincipal(ctx, f.Token)
}

// StateCaller authenticates a request to the gateway's KV endpoint: an
// access key pair as HTTP Basic credentials, or a bearer token.
func (a *RoleAuthorizer) StateCaller(keys *accesskeys.Keys) func(r *http.Request) (Principal, error) {
	return func(r *http.Request) (Principal, error) {
		if id, secret, ok := r.BasicAuth(); ok {
			f, err := keys.Verify(r.Context(), id, secret)
			if errors.Is(err, sigv4.ErrUnknownKey) {
				return Principal{}, v1.Errorf(v1.ErrUnauthorized, "unknown access key or wrong secret")
			}
			if err != nil {
				return Principal{}, err
			}
			return a.KeyPrincipal(r.Context(), f)
		}
		if r.Header.Get("Authorization") == "" {
			return Principal{}, v1.Errorf(v1.ErrUnauthorized, "send an access key pair (HTTP Basic: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or a bearer token")
		}
		return a.Principal(r)
	}
}

// --- the state of an environment ---

func (s *Server) stateUsage(w http.ResponseWriter, r *http.Request) error {
	if s.objects == nil {
		return v1.Unavailable("the object store is not served here")
	}
	env := r.PathValue("env")
	if _, err := s.loadEnvironment(r.Context(), env); err != nil {
		return err
	}
	u, l := s.objects.Usage(env), s.objects.Limits(env)
	out := v1.StateUsage{Buckets: u.Buckets, Objects: u.Objects, ObjectBytes: u.Bytes, QuotaBytes: l.Bytes, QuotaObjects: l.Objects}
	if s.kv != nil {
		if b, n, err := s.kv.Usage(r.Context(), env); err == nil {
			out.KVBytes, out.KVKeys = int64(b), int64(n)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) loadEnvironment(ctx context.Context, env string) (*v1.Environment, error) {
	e, err := s.environment(ctx, env)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, v1.NotFound("environment %q not found", env)
	}
	return e, nil
}

// objectError keeps the store's message and kind.
func (s *Server) objectsOf(r *http.Request) (ObjectStore, string, error) {
	if s.objects == nil {
		return nil, "", v1.Unavailable("the object store is not served here")
	}
	env := r.PathValue("env")
	if _, err := s.loadEnvironment(r.Context(), env); err != nil {
		return nil, "", err
	}
	return s.objects, env, nil
}

func (s *Server) listBuckets(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	bs, err := st.ListBuckets(r.Context(), env)
	if err != nil {
		return err
	}
	out := make([]v1.Bucket, 0, len(bs))
	for _, b := range bs {
		out = append(out, v1.Bucket{Name: b.Name, Created: b.Created})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createBucket(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	if err := st.CreateBucket(r.Context(), env, r.PathValue("bucket")); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v1.Bucket{Name: r.PathValue("bucket"), Created: time.Now().UTC()})
	return nil
}

func (s *Server) deleteBucket(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	bucket := r.PathValue("bucket")
	if queryFlag(r, "force") {
		// Every object first (uploads in progress still refuse).
		for {
			res, err := st.List(r.Context(), env, bucket, objects.ListOptions{Max: 1000})
			if err != nil {
				return err
			}
			for _, o := range res.Objects {
				if err := st.Delete(r.Context(), env, bucket, o.Key, objects.Conditions{}); err != nil {
					return err
				}
			}
			if !res.Truncated {
				break
			}
		}
	}
	if err := st.DeleteBucket(r.Context(), env, bucket); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	res, err := st.List(r.Context(), env, r.PathValue("bucket"), objects.ListOptions{
		Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"), After: q.Get("after"), Max: limit,
	})
	if err != nil {
		return err
	}
	out := v1.ObjectList{Items: []v1.ObjectInfo{}, Prefixes: res.CommonPrefixes, Next: res.Next}
	for _, o := range res.Objects {
		out.Items = append(out.Items, objectInfo(o))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func objectInfo(o objects.Object) v1.ObjectInfo {
	info := v1.ObjectInfo{Key: o.Key, Size: o.Size, ETag: o.ETag, LastModified: o.Modified, ContentType: o.ContentType}
	for k, v := range o.Headers {
		if name, ok := strings.CutPrefix(k, "X-Amz-Meta-"); ok {
			if info.Metadata == nil {
				info.Metadata = map[string]string{}
			}
			info.Metadata[strings.ToLower(name)] = v
		}
	}
	return info
}

func (s *Server) getObjectData(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	o, rd, err := st.Get(r.Context(), env, r.PathValue("bucket"), r.PathValue("key"), objects.Conditions{})
	if err != nil {
		return err
	}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Type", o.ContentType)
	h.Set("Content-Length", strconv.FormatInt(o.Size, 10))
	h.Set("ETag", o.ETag)
	h.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, rd.Section(0, o.Size)); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) putObjectData(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "binary/octet-stream"
	}
	cond := objects.Conditions{IfMatch: r.Header.Get("If-Match"), IfNoneMatch: r.Header.Get("If-None-Match")}
	o, err := st.Put(r.Context(), env, r.PathValue("bucket"), r.PathValue("key"), r.Body,
		objects.Meta{ContentType: ct}, objects.WriteOptions{Size: r.ContentLength}, cond)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, objectInfo(o))
	return nil
}

func (s *Server) deleteObjectData(w http.ResponseWriter, r *http.Request) error {
	st, env, err := s.objectsOf(r)
	if err != nil {
		return err
	}
	if err := st.Delete(r.Context(), env, r.PathValue("bucket"), r.PathValue("key"), objects.Conditions{}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) serveKV(w http.ResponseWriter, r *http.Request) error {
	if s.kv == nil {
		return v1.Unavailable("the key-value store is not served here")
	}
	env := r.PathValue("env")
	if _, err := s.loadEnvironment(r.Context(), env); err != nil {
		return err
	}
	key := r.PathValue("key")
	if strings.HasSuffix(r.URL.Path, "/") || r.PathValue("rest") != "" {
		key += "/" + r.PathValue("rest")
	}
	return s.kv.Serve(w, r, env, key)
}

// stateHeld says what state env holds, for the delete of an environment
// without --cascade ("" when none).
func (s *Server) stateHeld(ctx context.Context, env string) string {
	var held []string
	if s.objects != nil {
		if u := s.objects.Usage(env); u.Buckets > 0 {
			held = append(held, fmt.Sprintf("%d buckets (%d objects)", u.Buckets, u.Objects))
		}
	}
	if s.kv != nil {
		if _, n, err := s.kv.Usage(ctx, env); err == nil && n > 0 {
			held = append(held, "a key-value store")
		}
	}
	return strings.Join(held, " and ")
}

// deleteState removes env's object and key-value stores (its environment
// is gone).
func (s *Server) deleteState(ctx context.Context, env string) {
	if s.objects != nil {
		if err := s.objects.DeleteEnvironment(ctx, env); err != nil {
			s.log.Error("delete the object store of a deleted environment", "environment", env, "err", err)
		}
	}
	if s.kv != nil {
		if err := s.kv.DeleteEnvironment(ctx, env); err != nil {
			s.log.Error("delete the key-value store of a deleted environment", "environment", env, "err", err)
		}
	}
}
