package registry

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// GC removes blobs that no manifest of any repository refers to, and the
// repository links to them, by mark and sweep. Blobs written or touched
// within GCGrace are kept: they may belong to a push whose manifest has not
// arrived yet. GC holds the metadata lock throughout, so pushes that link
// or commit wait for it while uploads keep streaming. It also drops upload
// sessions idle beyond UploadTTL.
func (g *Registry) GC(ctx context.Context) (removed int, freed int64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()

	repos, err := g.repositories()
	if err != nil {
		return 0, 0, err
	}
	marked := map[digest.Digest]bool{}
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		ds, err := listDigests(filepath.Join(g.repoPath(repo), dirMans))
		if err != nil {
			return 0, 0, err
		}
		for _, d := range ds {
			marked[d] = true
			b, err := os.ReadFile(g.blobPath(d))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			} else if err != nil {
				return 0, 0, err
			}
			var m anyManifest
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			if m.Config != nil {
				marked[m.Config.Digest] = true
			}
			for _, l := range m.Layers {
				marked[l.Digest] = true
			}
			// Index entries are manifests: each is marked by its own link,
			// or, if its link was deleted, deliberately not.
		}
	}

	cutoff := g.now().Add(-g.cfg.GCGrace)
	// Abandoned upload sessions go too, though Run drops them sooner.
	g.ExpireUploads()
	root := filepath.Join(g.dir, dirBlobs)
	var swept []digest.Digest
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return ctx.Err()
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			return nil // a manifest write in flight; not content yet
		}
		alg := filepath.Base(filepath.Dir(filepath.Dir(p)))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name())
		if d.Validate() != nil || marked[d] {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		if fi.ModTime().After(cutoff) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		removed++
		freed += fi.Size()
		swept = append(swept, d)
		return nil
	})
	if err != nil {
		return removed, freed, err
	}
	// Links to swept blobs would otherwise answer HEAD with 200 and GET
	// with nothing; drop them.
	for _, repo := range repos {
		for _, d := range swept {
			_ = os.Remove(g.layerLinkPath(repo, d))
		}
	}
	if removed > 0 {
		g.usage.reset()
		g.log.Info("registry garbage collected", "blobs", removed, "bytes", freed)
	}
	return removed, freed, nil
}
