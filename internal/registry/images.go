package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	v1 "berth.dev/berth/api/v1"
	"github.com/opencontainers/go-digest"
)

// Image is one tag of one repository.
type Image struct {
	Repository string
	Tag        string
	Digest     string
	// Size is the manifest plus the content it names (config and layers;
	// for an index, its manifests' sizes, recursively).
	Size int64
}

// List returns every tagged image, by repository then tag.
func (g *Registry) List(ctx context.Context) ([]Image, error) {
	repos, err := g.repositories()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tags, _ := g.listTags(repo)
		for _, t := range tags {
			d, err := g.readTag(repo, t)
			if err != nil {
				continue
			}
			out = append(out, Image{Repository: repo, Tag: t, Digest: d.String(), Size: g.imageSize(d, 0)})
		}
	}
	return out, nil
}

func (g *Registry) imageSize(d digest.Digest, depth int) int64 {
	b, err := os.ReadFile(g.blobPath(d))
	if err != nil || depth > 8 {
		return 0
	}
	size := int64(len(b))
	var m anyManifest
	if json.Unmarshal(b, &m) != nil {
		return size
	}
	if m.Config != nil {
		size += m.Config.Size
	}
	for _, l := range m.Layers {
		size += l.Size
	}
	for _, c := range m.Manifests {
		size += g.imageSize(c.Digest, depth+1)
	}
	return size
}

// Tag points toTag of repo at the manifest fromRef (a tag or digest) names.
func (g *Registry) Tag(ctx context.Context, repo, fromRef, toTag string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validName(repo) {
		return v1.FieldError("repository", "invalid repository name %q", repo)
	}
	if !tagRE.MatchString(toTag) {
		return v1.FieldError("tag", "invalid tag %q", toTag)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	d, _, err := g.resolve(repo, fromRef)
	if err != nil {
		return toAPIError(err, repo, fromRef)
	}
	return g.writeFileAtomic(g.tagPath(repo, toTag), []byte(d.String()))
}

// Delete removes a tag, or a manifest by digest with every tag naming it.
// Blobs go at the next GC.
func (g *Registry) Delete(ctx context.Context, repo, ref string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validName(repo) {
		return v1.FieldError("repository", "invalid repository name %q", repo)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return toAPIError(g.deleteRef(repo, ref), repo, ref)
}

// toAPIError maps registry errors to Berth's error kinds for the helpers the
// API server calls.
func toAPIError(err error, repo, ref string) error {
	var re *regError
	if err == nil || !errors.As(err, &re) {
		return err
	}
	switch re.code {
	case codeManifestUnknown, codeNameUnknown, codeBlobUnknown:
		return fmt.Errorf("image %s:%s: %w", repo, ref, v1.NotFound("%s", re.message))
	default:
		return fmt.Errorf("image %s:%s: %w", repo, ref, v1.Invalid("%s", re.message))
	}
}
