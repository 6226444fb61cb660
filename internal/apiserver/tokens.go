package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/store"
)

// Principal is who a request acts as: a token's name, role and
// environments ("*": all).
type Principal struct {
	Name         string
	Role         string
	Environments []string
}

// All says whether the principal acts in every environment.
func (p Principal) All() bool { return slices.Contains(p.Environments, v1.AllEnvironments) }

// In says whether env is one of the principal's environments.
func (p Principal) In(env string) bool { return p.All() || slices.Contains(p.Environments, env) }

func (p Principal) superuser() bool { return p.Role == v1.RoleAdmin && p.All() }

var roleRank = map[string]int{v1.RoleViewer: 1, v1.RoleDeployer: 2, v1.RoleAdmin: 3}

// Scoper is what an Authorizer may also answer: the principal of a
// request, so lists across environments show only the caller's.
type Scoper interface {
	Principal(r *http.Request) (Principal, error)
}

// RoleAuthorizer admits the bootstrap admin token and the tokens kept in
// the store (only their SHA-256), each scoped to environments and a role:
//
//   - viewer: GET in its environments (logs excepted);
//   - deployer: also apply, delete, invoke, publish, start workflows, set
//     secrets and config, deploy stacks and read logs in its environments,
//     and push, tag and remove images in their repositories (ENV/...);
//   - admin: everything in its environments, environment updates included
//     but for their quota and limits (mayApplyEnvironment); with
//     environments "*" (the bootstrap token is one) also creating
//     environments, setting quotas and limits, tokens, traces, and writing
//     shared repositories.
type RoleAuthorizer struct {
	admin *TokenAuthorizer
	store store.Store
}

var (
	_ Authorizer = (*RoleAuthorizer)(nil)
	_ Scoper     = (*RoleAuthorizer)(nil)
)

// NewRoleAuthorizer admits adminToken as a superuser and the tokens in st.
func NewRoleAuthorizer(adminToken string, st store.Store) *RoleAuthorizer {
	return &RoleAuthorizer{admin: NewTokenAuthorizer(adminToken), store: st}
}

func bearer(r *http.Request) (string, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", v1.Errorf(v1.ErrUnauthorized, "missing bearer token: send Authorization: Bearer TOKEN")
	}
	return strings.TrimSpace(token), nil
}

// HashToken is how a token is kept: hex SHA-256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Principal finds who the request's token is.
func (a *RoleAuthorizer) Principal(r *http.Request) (Principal, error) {
	if a.admin.Authorize(r) == nil {
		return Principal{Name: "admin", Role: v1.RoleAdmin, Environments: []string{v1.AllEnvironments}}, nil
	}
	secret, err := bearer(r)
	if err != nil {
		return Principal{}, err
	}
	return a.lookup(r.Context(), secret)
}

func (a *RoleAuthorizer) lookup(ctx context.Context, secret string) (Principal, error) {
	want := HashToken(secret)
	toks, _, err := store.List[v1.Token](ctx, a.store, v1.KindToken, "")
	if err != nil {
		return Principal{}, err
	}
	for _, t := range toks {
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(want)) == 1 {
			return Principal{Name: t.Metadata.Name, Role: t.Spec.Role, Environments: t.Spec.Environments}, nil
		}
	}
	return Principal{}, v1.Errorf(v1.ErrUnauthorized, "invalid bearer token")
}

func (a *RoleAuthorizer) Authorize(r *http.Request) error {
	p, err := a.Principal(r)
	if err != nil {
		return err
	}
	return Allowed(p, r.Method, r.URL.Path)
}

// Allowed is the authorization table: may p send method to path (under
// /api/v1/)? It answers nil or a Forbidden error naming the role and the
// environment.
func Allowed(p Principal, method, path string) error {
	if p.superuser() {
		return nil
	}
	read := method == http.MethodGet || method == http.MethodHead
	seg := strings.Split(strings.Trim(strings.TrimPrefix(path, "/api/v1"), "/"), "/")
	deny := func(format string, args ...any) error {
		return v1.Errorf(v1.ErrForbidden, "token %q (role %s, environments %s): %s", p.Name, p.Role,
			strings.Join(p.Environments, ","), fmt.Sprintf(format, args...))
	}
	need := func(env, role string) error {
		if !p.In(env) {
			return deny("%s %s is in environment %q, which this token has no access to", method, path, env)
		}
		if roleRank[p.Role] < roleRank[role] {
			return deny("%s %s in environment %q needs role %s or above", method, path, env, role)
		}
		return nil
	}
	switch {
	case len(seg) == 1 && seg[0] == "environments" && read:
		return nil // the list shows only the token's environments
	case len(seg) == 2 && seg[0] == "environments":
		if read {
			return need(seg[1], v1.RoleViewer)
		}
		// Creating an environment and changing its quota or limits are the
		// superuser's (mayApplyEnvironment looks at the body); changing or
		// deleting one the token is admin of is its own.
		return need(seg[1], v1.RoleAdmin)
	case len(seg) >= 3 && seg[0] == "environments":
		env := seg[1]
		if read && seg[len(seg)-1] != "logs" {
			return need(env, v1.RoleViewer)
		}
		return need(env, v1.RoleDeployer)
	case seg[0] == "accesskeys":
		return nil // a token's own keys; the handlers look at whose
	case seg[0] == "images":
		switch {
		case read:
			return nil // the list shows what the token may read
		case (method == http.MethodPost || method == http.MethodDelete) && roleRank[p.Role] >= roleRank[v1.RoleDeployer]:
			// Which repositories it may change is the image service's
			// to say (ImageAccess): those of its environments.
			return nil
		}
		return deny("%s %s needs role deployer or above", method, path)
	case len(seg) == 1 && read && seg[0] != "tokens" && seg[0] != "traces":
		return nil // a list across environments, filtered to the token's
	}
	return deny("%s %s needs an admin token for all environments", method, path)
}

// ImageAccess is what p may do with the registry's repositories: read
// those of its environments, and with role deployer or above write them.
// Shared repositories (not of an environment) are read by every token and
// written by superusers only.
func (p Principal) ImageAccess() images.Access {
	a := images.Access{Admin: p.superuser(), Read: p.Environments}
	if roleRank[p.Role] >= roleRank[v1.RoleDeployer] {
		a.Write = p.Environments
	}
	return a
}

// RepositoryPolicy says whether a caller with access a may read, or with
// write change, repository repo; a Forbidden error when not.
// images.Owners is one.
type RepositoryPolicy interface {
	Check(ctx context.Context, a images.Access, repo string, write bool) error
}

// RegistryAuthorizer is the registry's authorizer over the same tokens and
// the same repository rules as /api/v1/images: any token passes the
// version check; pulls and pushes are what policy allows the token's
// ImageAccess.
func (a *RoleAuthorizer) RegistryAuthorizer(policy RepositoryPolicy) func(r *http.Request, repo string, push bool) error {
	return func(r *http.Request, repo string, push bool) error {
		p, err := a.Principal(r)
		if err != nil {
			return err
		}
		if repo == "" {
			return nil
		}
		if push && roleRank[p.Role] < roleRank[v1.RoleDeployer] {
			return fmt.Errorf("%w: token %q has role %s; pushing to %s needs deployer or admin", registry.ErrDenied, p.Name, p.Role, repo)
		}
		if err := policy.Check(r.Context(), p.ImageAccess(), repo, push); err != nil {
			if v1.KindOf(err) == v1.ErrForbidden {
				return fmt.Errorf("%w: token %q: %v", registry.ErrDenied, p.Name, err)
			}
			return err
		}
		return nil
	}
}

// principal is the caller of r, a superuser when the authorizer does not
// scope (the single-token one admits admins only).
// principalKey carries the caller authorized() resolved.
type principalKey struct{}

func (s *Server) principal(r *http.Request) (Principal, error) {
	if p, ok := r.Context().Value(principalKey{}).(Principal); ok {
		return p, nil
	}
	if sc, ok := s.auth.(Scoper); ok {
		return sc.Principal(r)
	}
	return Principal{Name: "admin", Role: v1.RoleAdmin, Environments: []string{v1.AllEnvironments}}, nil
}

// visible keeps the objects of environments the caller may see; an
// Environment is seen when the caller has access to it.
func (s *Server) visible(r *http.Request, objs []v1.Object) ([]v1.Object, error) {
	p, err := s.principal(r)
	if err != nil || p.All() {
		return objs, err
	}
	kept := objs[:0]
	for _, o := range objs {
		env := o.GetMetadata().Environment
		if _, ok := o.(*v1.Environment); ok {
			env = o.GetMetadata().Name
		}
		if p.In(env) {
			kept = append(kept, o)
		}
	}
	return kept, nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req v1.TokenRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	var raw [32]byte
	rand.Read(raw[:])
	secret := "berth_" + hex.EncodeToString(raw[:])
	if req.Name == "" {
		// Not from raw: the name is shown to every lister, the secret never.
		var id [3]byte
		rand.Read(id[:])
		req.Name = "token-" + hex.EncodeToString(id[:])
	}
	t := &v1.Token{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindToken},
		Metadata: v1.ObjectMeta{Name: req.Name},
		Spec:     v1.TokenSpec{Environments: req.Environments, Role: req.Role},
		Hash:     HashToken(secret),
	}
	if err := v1.ValidateToken(t); err != nil {
		return err
	}
	ctx := r.Context()
	// A token names environments by name: one for an environment that
	// does not exist (yet, or any more) would be inherited by whatever is
	// created under that name later.
	if missing, err := missingEnvironments(ctx, s.store, t.Spec.Environments); err != nil {
		return err
	} else if len(missing) > 0 {
		return v1.FieldError("environments", "no environment %s: a token is for environments that exist", strings.Join(missing, ", "))
	}
	if err := store.Create(ctx, s.store, t); err != nil {
		if v1.IsConflict(err) {
			return v1.Conflict("token %q already exists; revoke it first or choose another --name", t.Metadata.Name)
		}
		return err
	}
	// An environment deleted between the check and the create revoked
	// its tokens before this one existed: look again, and take it back.
	if missing, err := missingEnvironments(ctx, s.store, t.Spec.Environments); err != nil || len(missing) > 0 {
		if derr := store.Delete(ctx, s.store, t); derr != nil && !v1.IsNotFound(derr) {
			return fmt.Errorf("token %q outlived its environment and could not be removed: %w", t.Metadata.Name, derr)
		}
		if err != nil {
			return err
		}
		return v1.Conflict("environment %s was deleted while the token was made", strings.Join(missing, ", "))
	}
	t.Hash, t.Secret = "", secret
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	toks, _, err := store.List[v1.Token](r.Context(), s.store, v1.KindToken, "")
	if err != nil {
		return err
	}
	objs := make([]v1.Object, len(toks))
	for i, t := range toks {
		t.Hash = ""
		objs[i] = t
	}
	return writeList(w, objs)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("name")
	var t v1.Token
	if err := store.Get(ctx, s.store, store.Key{Kind: v1.KindToken, Name: name}, &t); err != nil {
		if v1.IsNotFound(err) {
			return v1.NotFound("token %q not found", name)
		}
		return err
	}
	if err := store.Delete(ctx, s.store, &t); err != nil {
		return err
	}
	// Its access keys stop working with it (they resolve their token at
	// each request); removing them is tidying up.
	if s.accessKeys != nil {
		if err := s.accessKeys.DeleteForToken(ctx, name); err != nil {
			s.log.Warn("remove the access keys of a revoked token", "token", name, "err", err)
		}
	}
	t.Hash = ""
	writeJSON(w, http.StatusOK, &t)
	return nil
}

// missingEnvironments are those of envs ("*" aside) that do not exist.
func missingEnvironments(ctx context.Context, st store.Store, envs []string) ([]string, error) {
	var missing []string
	for _, env := range envs {
		if env == v1.AllEnvironments {
			continue
		}
		if _, err := st.Get(ctx, store.Key{Kind: v1.KindEnvironment, Name: env}); v1.IsNotFound(err) {
			missing = append(missing, fmt.Sprintf("%q", env))
		} else if err != nil {
			return nil, err
		}
	}
	return missing, nil
}

// revokeEnvironmentTokens takes env out of every token's scope, so that an
// environment created later under the same name inherits none of them: a
// token for env alone is deleted, one for more environments keeps the
// others. A token for all environments ("*") is not about env and stays.
// It returns the names of the tokens deleted and of those narrowed.
func revokeEnvironmentTokens(ctx context.Context, st store.Store, env string) (deleted, narrowed []string, err error) {
	toks, _, err := store.List[v1.Token](ctx, st, v1.KindToken, "")
	if err != nil {
		return nil, nil, err
	}
	for _, t := range toks {
		if !slices.Contains(t.Spec.Environments, env) {
			continue
		}
		rest := slices.DeleteFunc(slices.Clone(t.Spec.Environments), func(e string) bool { return e == env })
		if len(rest) == 0 {
			// At the version read: a token changed meanwhile is looked
			// at again by the caller's second pass.
			if err := store.Delete(ctx, st, t); err != nil && !v1.IsNotFound(err) {
				return deleted, narrowed, fmt.Errorf("revoke token %q of environment %q: %w", t.Metadata.Name, env, err)
			}
			deleted = append(deleted, t.Metadata.Name)
			continue
		}
		t.Spec.Environments = rest
		if err := store.Update(ctx, st, t); err != nil && !v1.IsNotFound(err) {
			return deleted, narrowed, fmt.Errorf("take environment %q out of token %q: %w", env, t.Metadata.Name, err)
		}
		narrowed = append(narrowed, t.Metadata.Name)
	}
	return deleted, narrowed, nil
}
