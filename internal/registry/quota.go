package registry

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// sized is content about to be linked into a repository.
type sized struct {
	digest digest.Digest
	size   int64
}

// usageCache remembers, per quota group, what its repositories hold, so a
// push does not walk the whole store. Links add to it as they are made;
// anything that removes content (a delete, GC) drops it all, and an entry
// older than usageTTL is recomputed, so a repository whose group changed
// (its environment was created or deleted) is counted right soon after.
type usageCache struct {
	groups map[string]*groupUsage
}

type groupUsage struct {
	bytes int64
	has   map[digest.Digest]bool
	at    time.Time
}

const usageTTL = time.Minute

func (c *usageCache) reset() { c.groups = nil }

// quotaFor asks Config.Quota about repo; the zero Quota when there is none.
func (g *Registry) quotaFor(ctx context.Context, repo string) (Quota, error) {
	if g.cfg.Quota == nil {
		return Quota{}, nil
	}
	return g.cfg.Quota(ctx, repo)
}

// groupUsage is what the repositories of group hold, each digest once. The
// caller holds g.mu.
func (g *Registry) groupUsage(ctx context.Context, group string) (*groupUsage, error) {
	now := g.now()
	if u := g.usage.groups[group]; u != nil && now.Sub(u.at) < usageTTL {
		return u, nil
	}
	repos, err := g.repositories()
	if err != nil {
		return nil, err
	}
	u := &groupUsage{has: map[digest.Digest]bool{}, at: now}
	for _, repo := range repos {
		q, err := g.quotaFor(ctx, repo)
		if err != nil {
			return nil, err
		}
		if q.Group != group {
			continue
		}
		for _, dir := range []string{dirLayers, dirMans} {
			ds, err := listDigests(filepath.Join(g.repoPath(repo), dir))
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				if u.has[d] {
					continue
				}
				fi, err := os.Stat(g.blobPath(d))
				if errors.Is(err, fs.ErrNotExist) {
					continue // swept, or a link GC is about to drop
				} else if err != nil {
					return nil, err
				}
				u.has[d] = true
				u.bytes += fi.Size()
			}
		}
	}
	if g.usage.groups == nil {
		g.usage.groups = map[string]*groupUsage{}
	}
	g.usage.groups[group] = u
	return u, nil
}

// quotaUsed is repo's quota, the bytes its group holds and whether d (when
// given) is among them. Used is 0 when the quota has no limit.
func (g *Registry) quotaUsed(ctx context.Context, repo string, d digest.Digest) (q Quota, used int64, counted bool, err error) {
	if q, err = g.quotaFor(ctx, repo); err != nil || q.Group == "" || q.Limit <= 0 {
		return q, 0, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	u, err := g.groupUsage(ctx, q.Group)
	if err != nil {
		return q, 0, false, err
	}
	return q, u.bytes, d != "" && u.has[d], nil
}

// charge counts content about to be linked into repo against repo's quota
// and refuses it when the group would hold more than its limit. Content
// the group holds already costs nothing. The caller holds g.mu and links
// the content right after (or resets the cache if that fails).
func (g *Registry) charge(ctx context.Context, repo string, content ...sized) error {
	q, err := g.quotaFor(ctx, repo)
	if err != nil || q.Group == "" {
		return err
	}
	u := g.usage.groups[q.Group]
	if q.Limit > 0 {
		if u, err = g.groupUsage(ctx, q.Group); err != nil {
			return err
		}
	}
	if u == nil {
		return nil // nothing to keep up to date, nothing to enforce
	}
	var add int64
	seen := map[digest.Digest]bool{}
	for _, c := range content {
		if !u.has[c.digest] && !seen[c.digest] {
			seen[c.digest] = true
			add += c.size
		}
	}
	if q.Limit > 0 && u.bytes+add > q.Limit {
		return quotaExceeded(q, u.bytes, add)
	}
	for d := range seen {
		u.has[d] = true
	}
	u.bytes += add
	return nil
}

func quotaExceeded(q Quota, used, adding int64) *regError {
	return errorf(http.StatusForbidden, codeDenied,
		"registry quota of %q exceeded: its repositories hold %d bytes, %d more would pass its limit of %d bytes; delete images (then wait for garbage collection) or raise the quota",
		q.Group, used, adding, q.Limit).withKind(kindQuota)
}
