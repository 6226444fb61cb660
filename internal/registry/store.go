package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// On-disk layout under Dir:
//
//	blobs/<alg>/<first two hex>/<hex>          content, manifests included
//	repositories/<name>/_layers/<alg>/<hex>    empty file: blob is readable in <name>
//	repositories/<name>/_manifests/<alg>/<hex> JSON manifestLink: manifest is in <name>
//	repositories/<name>/_tags/<tag>            the tagged digest
//	uploads/<id>                               bytes of an upload in progress
//
// Repository path components match [a-z0-9]+..., so the "_"-prefixed
// directories can never collide with a nested repository name.
const (
	dirBlobs   = "blobs"
	dirRepos   = "repositories"
	dirUploads = "uploads"
	dirLayers  = "_layers"
	dirMans    = "_manifests"
	dirTags    = "_tags"
)

// manifestLink is what a repository records about a manifest it holds: enough
// to serve it (media type, size) and to answer the referrers API without
// reading every manifest back.
type manifestLink struct {
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func (g *Registry) blobPath(d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(g.dir, dirBlobs, string(d.Algorithm()), enc[:2], enc)
}

func (g *Registry) repoPath(repo string) string {
	return filepath.Join(g.dir, dirRepos, filepath.FromSlash(repo))
}

func (g *Registry) layerLinkPath(repo string, d digest.Digest) string {
	return filepath.Join(g.repoPath(repo), dirLayers, string(d.Algorithm()), d.Encoded())
}

func (g *Registry) manifestLinkPath(repo string, d digest.Digest) string {
	return filepath.Join(g.repoPath(repo), dirMans, string(d.Algorithm()), d.Encoded())
}

func (g *Registry) tagPath(repo, tag string) string {
	return filepath.Join(g.repoPath(repo), dirTags, tag)
}

func (g *Registry) uploadPath(id string) string {
	return filepath.Join(g.dir, dirUploads, id)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeFileAtomic writes data to path so that readers see either the old
// file or the whole new one: temp file in the same directory, fsync, rename,
// fsync of the directory. A failed write (a full disk) leaves nothing behind.
func (g *Registry) writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := g.mkdirAll(dir); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".tmp-"+newID())
	f, err := g.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return g.fs.SyncDir(dir)
}

// mkdirAll makes dir and its missing parents, syncing the parent of each
// directory it makes: a file fsynced and renamed into a new directory is
// lost on a power cut unless the directory's own entry (in its parent) is
// durable too, all the way up to a directory that already existed.
func (g *Registry) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := g.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := g.fs.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Also when another request made it first: that request may not have
	// synced the parent yet, and this one is about to rely on the entry.
	return g.fs.SyncDir(parent)
}

// commitBlob moves a verified temp file into the content store. The caller
// holds g.mu, which GC also holds, so a blob that already exists is touched
// rather than rewritten and cannot be swept between this and the link.
func (g *Registry) commitBlob(tmp string, d digest.Digest) error {
	dst := g.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		now := g.now()
		_ = os.Chtimes(dst, now, now)
		return os.Remove(tmp)
	}
	if err := g.mkdirAll(filepath.Dir(dst)); err != nil {
		return err
	}
	// Stamp the blob with the registry's clock: GC's grace period is
	// measured on it.
	now := g.now()
	_ = os.Chtimes(tmp, now, now)
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return g.fs.SyncDir(filepath.Dir(dst))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (g *Registry) blobLinked(repo string, d digest.Digest) bool {
	return exists(g.layerLinkPath(repo, d)) && exists(g.blobPath(d))
}

func (g *Registry) linkBlob(repo string, d digest.Digest) error {
	p := g.layerLinkPath(repo, d)
	if exists(p) {
		return nil
	}
	return g.writeFileAtomic(p, nil)
}

func (g *Registry) readManifestLink(repo string, d digest.Digest) (*manifestLink, error) {
	b, err := os.ReadFile(g.manifestLinkPath(repo, d))
	if err != nil {
		return nil, err
	}
	var l manifestLink
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("manifest link %s in %s: %w", d, repo, err)
	}
	if !exists(g.blobPath(d)) {
		return nil, fs.ErrNotExist
	}
	return &l, nil
}

func (g *Registry) readTag(repo, tag string) (digest.Digest, error) {
	b, err := os.ReadFile(g.tagPath(repo, tag))
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("tag %s in %s: %w", tag, repo, err)
	}
	return d, nil
}

func (g *Registry) listTags(repo string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(g.repoPath(repo), dirTags))
	if err != nil {
		return nil, err
	}
	tags := make([]string, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".tmp-") {
			tags = append(tags, e.Name())
		}
	}
	sort.Strings(tags)
	return tags, nil
}

// listDigests returns the digests under a _layers or _manifests directory.
func listDigests(dir string) ([]digest.Digest, error) {
	var out []digest.Digest
	algs, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	for _, a := range algs {
		ents, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), e.Name())
			if d.Validate() == nil {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// repositories lists every repository name, walking the tree for
// directories that hold a _layers, _manifests or _tags directory.
func (g *Registry) repositories() ([]string, error) {
	root := filepath.Join(g.dir, dirRepos)
	var repos []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.IsDir() || p == root {
			return nil
		}
		switch e.Name() {
		case dirLayers, dirMans, dirTags:
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			name := filepath.ToSlash(rel)
			if len(repos) == 0 || repos[len(repos)-1] != name {
				repos = append(repos, name)
			}
			return fs.SkipDir
		}
		return nil
	})
	return repos, err
}

// modTime is the time a file was last written or touched.
func modTime(path string) (time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
