package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "berth.dev/berth/api/v1"
)

// Image is one tag of one repository.
type Image struct {
	Repository string
	Tag        string
	Digest     string
	// Size is the manifest plus the content it names (config and layers;
	// for an index, its manifests' sizes, recursively).
	Size int64
	// ArtifactType is what the manifest says it holds: its artifactType,
	// or its config's media type (application/vnd.wasm.config.v1+json for
	// a Wasm module). Set by Resolve.
	ArtifactType string
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

// Resolve finds the manifest ref (a tag or a digest) names in repo; a
// NotFound error when there is none. Tag is set when ref is one.
func (g *Registry) Resolve(ctx context.Context, repo, ref string) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	if !validName(repo) {
		return Image{}, v1.FieldError("repository", "invalid repository name %q", repo)
	}
	d, l, err := g.resolve(repo, ref)
	if err != nil {
		return Image{}, toAPIError(err, repo, ref)
	}
	img := Image{Repository: repo, Digest: d.String(), Size: g.imageSize(d, 0), ArtifactType: l.ArtifactType}
	if !strings.Contains(ref, ":") {
		img.Tag = ref
	}
	return img, nil
}

// ReadManifest returns the manifest ref (a tag or digest) names in repo,
// and its media type.
func (g *Registry) ReadManifest(ctx context.Context, repo, ref string) (mediaType string, body []byte, err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if !validName(repo) {
		return "", nil, v1.FieldError("repository", "invalid repository name %q", repo)
	}
	d, l, err := g.resolve(repo, ref)
	if err != nil {
		return "", nil, toAPIError(err, repo, ref)
	}
	b, err := os.ReadFile(g.blobPath(d))
	if err != nil {
		return "", nil, toAPIError(err, repo, ref)
	}
	return l.MediaType, b, nil
}

// ReadBlob returns the content of blob dgst of repo, refusing one larger
// than max bytes (Invalid) before reading it.
func (g *Registry) ReadBlob(ctx context.Context, repo, dgst string, max int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validName(repo) {
		return nil, v1.FieldError("repository", "invalid repository name %q", repo)
	}
	d, err := digest.Parse(dgst)
	if err != nil {
		return nil, v1.FieldError("digest", "invalid digest %q: %v", dgst, err)
	}
	if !g.blobLinked(repo, d) {
		return nil, v1.NotFound("blob %s is not in repository %s", dgst, repo)
	}
	f, err := os.Open(g.blobPath(d))
	if err != nil {
		return nil, v1.NotFound("blob %s of repository %s: %v", dgst, repo, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		return nil, v1.Invalid("blob %s is %d bytes, more than the %d allowed", dgst, st.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if digest.FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s of repository %s does not match its digest", dgst, repo)
	}
	return b, nil
}

// PutBlob stores in repo the blob r reads: exactly size bytes of digest dgst,
// checked before anything becomes visible, within MaxBlobBytes and repo's
// quota. A blob repo holds already is not read. It is the in-process
// equivalent of a monolithic push, for callers that decided already that
// the push is allowed.
func (g *Registry) PutBlob(ctx context.Context, repo, dgst string, size int64, r io.Reader) error {
	if !validName(repo) {
		return v1.FieldError("repository", "invalid repository name %q", repo)
	}
	d, err := parseDigest(dgst)
	if err != nil {
		return toAPIError(err, repo, dgst)
	}
	if !d.Algorithm().Available() {
		return v1.Invalid("blob %s: unsupported digest algorithm", d)
	}
	if g.blobLinked(repo, d) {
		return nil
	}
	limit, over, err := g.uploadLimit(ctx, repo, d)
	if err != nil {
		return toAPIError(err, repo, dgst)
	}
	if size > limit {
		return toAPIError(over(), repo, dgst)
	}
	tmp := g.uploadPath(newID())
	defer os.Remove(tmp)
	f, err := g.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// Hashed as it is written: the content is read once.
	h := d.Algorithm().Hash()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, size+1))
	if err == nil && n != size {
		err = v1.Invalid("blob %s: %d bytes, expected %d", d, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if fmt.Sprintf("%x", h.Sum(nil)) != d.Encoded() {
		return toAPIError(digestMismatch(d), repo, dgst)
	}
	return toAPIError(g.commitVerified(ctx, repo, tmp, d, size), repo, dgst)
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// PutManifest stores body, a manifest of mediaType, in repo, tagged tag
// unless tag is empty, and returns its digest. Everything it names must be
// in repo already, as for a push.
func (g *Registry) PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !validName(repo) {
		return "", v1.FieldError("repository", "invalid repository name %q", repo)
	}
	var tags []string
	if tag != "" {
		if !tagRE.MatchString(tag) {
			return "", v1.FieldError("tag", "invalid tag %q", tag)
		}
		tags = []string{tag}
	}
	if len(body) > maxManifestSize {
		return "", v1.Errorf(v1.ErrTooLarge, "manifest larger than %d bytes", maxManifestSize)
	}
	d := digest.Canonical.FromBytes(body)
	l, m, err := parseManifest(mediaType, body)
	if err == nil {
		err = g.storeManifest(ctx, repo, d, body, l, m, tags)
	}
	if err != nil {
		return "", toAPIError(err, repo, d.String())
	}
	return d.String(), nil
}

// Copy makes tag of dstRepo name the manifest ref names in srcRepo. What
// the manifest names (config and layers; an index's manifests, and theirs)
// is linked into dstRepo, not copied, and counts against dstRepo's quota.
func (g *Registry) Copy(ctx context.Context, srcRepo, ref, dstRepo, tag string) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	for _, r := range []string{srcRepo, dstRepo} {
		if !validName(r) {
			return Image{}, v1.FieldError("repository", "invalid repository name %q", r)
		}
	}
	if !tagRE.MatchString(tag) {
		return Image{}, v1.FieldError("tag", "invalid tag %q", tag)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	d, _, err := g.resolve(srcRepo, ref)
	if err != nil {
		return Image{}, toAPIError(err, srcRepo, ref)
	}
	var (
		blobs     []sized
		manifests []digest.Digest // children first
		links     = map[digest.Digest][]byte{}
	)
	var walk func(d digest.Digest, depth int) error
	walk = func(d digest.Digest, depth int) error {
		if depth > 8 {
			return v1.Invalid("image %s:%s nests indexes too deep", srcRepo, ref)
		}
		lb, err := os.ReadFile(g.manifestLinkPath(srcRepo, d))
		if err != nil {
			return toAPIError(manifestUnknown(d.String()), srcRepo, d.String())
		}
		body, err := os.ReadFile(g.blobPath(d))
		if err != nil {
			return toAPIError(manifestUnknown(d.String()), srcRepo, d.String())
		}
		var m anyManifest
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("manifest %s in %s: %w", d, srcRepo, err)
		}
		if m.Config != nil {
			for _, desc := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
				if nonDistributable(desc) {
					continue
				}
				fi, err := os.Stat(g.blobPath(desc.Digest))
				if err != nil || !exists(g.layerLinkPath(srcRepo, desc.Digest)) {
					return toAPIError(blobUnknown(desc.Digest), srcRepo, ref)
				}
				blobs = append(blobs, sized{desc.Digest, fi.Size()})
			}
		}
		for _, c := range m.Manifests {
			if err := walk(c.Digest, depth+1); err != nil {
				return err
			}
		}
		if _, done := links[d]; !done {
			links[d] = lb
			manifests = append(manifests, d)
			blobs = append(blobs, sized{d, int64(len(body))})
		}
		return nil
	}
	if err := walk(d, 0); err != nil {
		return Image{}, err
	}
	var charged []sized
	for _, b := range blobs {
		if !exists(g.layerLinkPath(dstRepo, b.digest)) && !exists(g.manifestLinkPath(dstRepo, b.digest)) {
			charged = append(charged, b)
		}
	}
	if err := g.charge(ctx, dstRepo, charged...); err != nil {
		return Image{}, toAPIError(err, dstRepo, tag)
	}
	err = func() error {
		isManifest := map[digest.Digest]bool{}
		for _, md := range manifests {
			isManifest[md] = true
		}
		now := g.now()
		for _, b := range blobs {
			if isManifest[b.digest] {
				continue
			}
			_ = os.Chtimes(g.blobPath(b.digest), now, now)
			if err := g.linkBlob(dstRepo, b.digest); err != nil {
				return err
			}
		}
		for _, md := range manifests {
			_ = os.Chtimes(g.blobPath(md), now, now)
			if p := g.manifestLinkPath(dstRepo, md); !exists(p) {
				if err := g.writeFileAtomic(p, links[md]); err != nil {
					return err
				}
			}
		}
		return g.writeFileAtomic(g.tagPath(dstRepo, tag), []byte(d.String()))
	}()
	if err != nil {
		g.usage.reset()
		return Image{}, err
	}
	return Image{Repository: dstRepo, Tag: tag, Digest: d.String(), Size: g.imageSize(d, 0)}, nil
}

// toAPIError maps registry errors to Berth's error kinds for the Go API.
func toAPIError(err error, repo, ref string) error {
	var re *regError
	if err == nil || !errors.As(err, &re) {
		return err
	}
	kind := v1.ErrInvalid
	switch {
	case re.kind == kindQuota:
		kind = v1.ErrForbidden
	case re.code == codeManifestUnknown, re.code == codeNameUnknown, re.code == codeBlobUnknown:
		kind = v1.ErrNotFound
	case re.code == codeSizeInvalid:
		kind = v1.ErrTooLarge
	case re.code == codeTooManyRequests:
		kind = v1.ErrTooManyRequests
	case re.code == codeDenied:
		kind = v1.ErrForbidden
	}
	return fmt.Errorf("image %s:%s: %w", repo, ref, v1.Errorf(kind, "%s", re.message))
}
