package images

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/store"
)

// Environments finds an environment by name: a NotFound error when there
// is none.
type Environments interface {
	Environment(ctx context.Context, name string) (*v1.Environment, error)
}

// StoreEnvironments reads environments from st.
func StoreEnvironments(st store.Store) Environments { return storeEnvironments{st} }

type storeEnvironments struct{ st store.Store }

func (s storeEnvironments) Environment(ctx context.Context, name string) (*v1.Environment, error) {
	var env v1.Environment
	if err := store.Get(ctx, s.st, store.Key{Kind: v1.KindEnvironment, Name: name}, &env); err != nil {
		return nil, err
	}
	return &env, nil
}

// Access is what a caller may do with the registry's repositories, as the
// API server grants it from the caller's token. The rules (Owners.Check):
// a shared repository is read by every caller and written by admins only;
// a repository of environment ENV is read by callers with ENV in Read and
// written by callers with ENV in Write. AllEnvironments ("*") in a list is
// every environment.
type Access struct {
	// Admin is a full admin: every repository, shared ones included.
	Admin bool
	// Read and Write list the environments whose repositories the caller
	// may pull from, and push to, tag into and delete from.
	Read, Write []string
}

// FullAccess is the platform's own, and the bootstrap admin token's.
var FullAccess = Access{Admin: true, Read: []string{v1.AllEnvironments}, Write: []string{v1.AllEnvironments}}

func covers(envs []string, env string) bool {
	return slices.Contains(envs, v1.AllEnvironments) || slices.Contains(envs, env)
}

// Owners says which environment a repository belongs to, and so who may
// write it and what quota its bytes count against.
//
// A repository ENV/NAME (at least two components) belongs to environment
// ENV if that environment exists; every other repository is shared. The
// rule is by name, not by who pushed first, so no push can claim another
// environment's names; an environment created later takes over the
// repositories under its name (creating environments is for full admins,
// who can write shared repositories anyway).
type Owners struct {
	envs Environments
}

// NewOwners decides ownership over the environments envs finds.
func NewOwners(envs Environments) *Owners { return &Owners{envs: envs} }

// Owner is the environment repo belongs to, or "" when it is shared.
func (o *Owners) Owner(ctx context.Context, repo string) (string, error) {
	env, _, ok := strings.Cut(repo, "/")
	if !ok || o == nil || o.envs == nil {
		return "", nil
	}
	if _, err := o.envs.Environment(ctx, env); err != nil {
		if v1.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("owner of repository %s: %w", repo, err)
	}
	return env, nil
}

// Check answers nil when a may read (or, with write, change) repo, else a
// Forbidden error that says whose the repository is and what the caller
// may write instead.
func (o *Owners) Check(ctx context.Context, a Access, repo string, write bool) error {
	if a.Admin {
		return nil
	}
	env, err := o.Owner(ctx, repo)
	if err != nil {
		return err
	}
	switch {
	case env == "" && !write:
		return nil
	case env == "":
		return v1.Errorf(v1.ErrForbidden,
			"repository %s is shared: only an admin token for all environments may change it; push to a repository of an environment this token may write, %s",
			repo, examples(a.Write, repo))
	case !write && covers(a.Read, env), write && covers(a.Write, env):
		return nil
	case write:
		return v1.Errorf(v1.ErrForbidden,
			"repository %s belongs to environment %q, which this token may not write; push to %s",
			repo, env, examples(a.Write, repo))
	}
	return v1.Errorf(v1.ErrForbidden, "repository %s belongs to environment %q, which this token has no access to", repo, env)
}

// examples names the repositories the caller could use instead of repo.
func examples(write []string, repo string) string {
	if len(write) == 0 {
		return "none (this token may not push)"
	}
	base := repo[strings.LastIndex(repo, "/")+1:]
	var out []string
	for _, env := range write {
		if env == v1.AllEnvironments {
			return "ENV/" + base + " for any environment ENV"
		}
		out = append(out, env+"/"+base)
	}
	return strings.Join(out, " or ")
}

// RegistryQuota is registry.Config.Quota: a repository of environment ENV
// counts against ENV's spec.quota.registry; shared ones count against
// nothing.
func (o *Owners) RegistryQuota(ctx context.Context, repo string) (registry.Quota, error) {
	env, err := o.Owner(ctx, repo)
	if err != nil || env == "" {
		return registry.Quota{}, err
	}
	e, err := o.envs.Environment(ctx, env)
	if err != nil {
		if v1.IsNotFound(err) {
			return registry.Quota{}, nil // deleted meanwhile: shared now
		}
		return registry.Quota{}, err
	}
	q := registry.Quota{Group: env}
	if e.Spec.Quota != nil && e.Spec.Quota.Registry != "" {
		// Validated on apply; an unparsable value would mean no limit,
		// and the store holds only validated objects.
		q.Limit, _ = v1.ParseMemory(e.Spec.Quota.Registry)
	}
	return q, nil
}
