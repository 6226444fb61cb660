package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

var specsVersioned = specs.Versioned{SchemaVersion: 2}

// anyManifest holds the fields of every manifest kind the registry accepts.
type anyManifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == mtDockerList }

func isImage(mt string) bool { return mt == ocispec.MediaTypeImageManifest || mt == mtDockerManifest }

// nonDistributable layers are by definition never pushed; their
// descriptors are not checked against the store.
func nonDistributable(d ocispec.Descriptor) bool {
	return strings.Contains(d.MediaType, ".nondistributable.") ||
		strings.Contains(d.MediaType, ".foreign.")
}

func manifestUnknown(ref string) *regError {
	return errorf(http.StatusNotFound, codeManifestUnknown, "manifest unknown").withDetail(map[string]string{"reference": ref})
}

func (g *Registry) serveManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		d, l, err := g.resolve(rt.name, rt.ref)
		if err != nil {
			return err
		}
		f, err := os.Open(g.blobPath(d))
		if errors.Is(err, fs.ErrNotExist) {
			return manifestUnknown(rt.ref)
		} else if err != nil {
			return err
		}
		defer f.Close()
		w.Header().Set("Content-Type", l.MediaType)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Etag", `"`+d.String()+`"`)
		w.Header().Set("Content-Length", strconv.FormatInt(l.Size, 10))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.Copy(w, f)
		}
		return nil
	case http.MethodPut:
		return g.putManifest(w, r, rt)
	case http.MethodDelete:
		g.mu.Lock()
		defer g.mu.Unlock()
		if err := g.deleteRef(rt.name, rt.ref); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	return methodNotAllowed(r)
}

// resolve turns a tag or digest into the digest and link of a manifest in
// repo.
func (g *Registry) resolve(repo, ref string) (digest.Digest, *manifestLink, error) {
	var d digest.Digest
	if strings.Contains(ref, ":") {
		var err error
		if d, err = parseDigest(ref); err != nil {
			return "", nil, err
		}
	} else {
		if !tagRE.MatchString(ref) {
			return "", nil, errorf(http.StatusBadRequest, codeManifestInvalid, "invalid tag %q", ref)
		}
		var err error
		d, err = g.readTag(repo, ref)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, manifestUnknown(ref)
		} else if err != nil {
			return "", nil, err
		}
	}
	l, err := g.readManifestLink(repo, d)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, manifestUnknown(ref)
	} else if err != nil {
		return "", nil, err
	}
	return d, l, nil
}

// deleteRef deletes a tag, or a manifest by digest together with the tags
// that point at it (a tag must never name a manifest that is gone).
// The caller holds g.mu.
func (g *Registry) deleteRef(repo, ref string) error {
	if !strings.Contains(ref, ":") {
		if !tagRE.MatchString(ref) {
			return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid tag %q", ref)
		}
		err := os.Remove(g.tagPath(repo, ref))
		if errors.Is(err, fs.ErrNotExist) {
			return manifestUnknown(ref)
		}
		return err
	}
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	err = os.Remove(g.manifestLinkPath(repo, d))
	if errors.Is(err, fs.ErrNotExist) {
		return manifestUnknown(ref)
	} else if err != nil {
		return err
	}
	g.usage.reset()
	tags, _ := g.listTags(repo)
	for _, t := range tags {
		if td, err := g.readTag(repo, t); err == nil && td == d {
			_ = os.Remove(g.tagPath(repo, t))
		}
	}
	return nil
}

func (g *Registry) putManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		return errorf(http.StatusBadRequest, codeManifestInvalid, "reading manifest: %v", err)
	}
	if len(body) > maxManifestSize {
		return errorf(http.StatusRequestEntityTooLarge, codeSizeInvalid, "manifest larger than %d bytes", maxManifestSize)
	}
	var d digest.Digest
	var tags []string
	if strings.Contains(rt.ref, ":") {
		// Tags may come as ?tag= parameters of a push by digest (the only
		// way to tag a manifest with a non-canonical digest, e.g. sha512).
		tags = r.URL.Query()["tag"]
		for _, t := range tags {
			if !tagRE.MatchString(t) {
				return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid tag %q", t)
			}
		}
		if d, err = parseDigest(rt.ref); err != nil {
			return err
		}
		if !d.Algorithm().Available() {
			return errorf(http.StatusBadRequest, codeDigestInvalid, "unsupported digest algorithm %s", d.Algorithm())
		}
		if got := d.Algorithm().FromBytes(body); got != d {
			return errorf(http.StatusBadRequest, codeDigestInvalid, "manifest digest is %s, not %s", got, d).
				withDetail(map[string]string{"digest": d.String()})
		}
	} else {
		if !tagRE.MatchString(rt.ref) {
			return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid tag %q", rt.ref)
		}
		tags = []string{rt.ref}
		d = digest.Canonical.FromBytes(body)
	}
	l, m, err := parseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	if err := g.storeManifest(r.Context(), rt.name, d, body, l, m, tags); err != nil {
		return err
	}
	for _, t := range tags {
		if t != rt.ref {
			w.Header().Add("OCI-Tag", t)
		}
	}
	if l.Subject != "" {
		w.Header().Set("OCI-Subject", l.Subject.String())
	}
	w.Header().Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// storeManifest stores body, a parsed manifest with digest d, in repo under
// tags: the content it names must be in repo, and the manifest itself
// within repo's quota.
func (g *Registry) storeManifest(ctx context.Context, repo string, d digest.Digest, body []byte, l *manifestLink, m *anyManifest, tags []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.checkReferences(repo, l.MediaType, m); err != nil {
		return err
	}
	if !exists(g.manifestLinkPath(repo, d)) {
		if err := g.charge(ctx, repo, sized{d, int64(len(body))}); err != nil {
			return err
		}
	}
	err := func() error {
		if p := g.blobPath(d); !exists(p) {
			if err := g.writeFileAtomic(p, body); err != nil {
				return err
			}
		}
		now := g.now()
		_ = os.Chtimes(g.blobPath(d), now, now)
		lb, _ := json.Marshal(l)
		if err := g.writeFileAtomic(g.manifestLinkPath(repo, d), lb); err != nil {
			return err
		}
		for _, t := range tags {
			if err := g.writeFileAtomic(g.tagPath(repo, t), []byte(d.String())); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		g.usage.reset()
	}
	return err
}

// parseManifest checks that body is a manifest of a kind we serve and
// extracts what the repository records about it.
func parseManifest(contentType string, body []byte) (*manifestLink, *anyManifest, error) {
	var m anyManifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	if mt == "" {
		mt = m.MediaType
	}
	if m.MediaType != "" && m.MediaType != mt {
		return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid,
			"mediaType %q does not match Content-Type %q", m.MediaType, mt)
	}
	if !isImage(mt) && !isIndex(mt) {
		return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid, "unsupported manifest media type %q", mt)
	}
	if m.SchemaVersion != 2 {
		return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid, "schemaVersion must be 2")
	}
	if isImage(mt) && (m.Config == nil || m.Config.Digest.Validate() != nil) {
		return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid, "image manifest without a valid config descriptor")
	}
	l := &manifestLink{MediaType: mt, Size: int64(len(body)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if l.ArtifactType == "" && isImage(mt) && mt == ocispec.MediaTypeImageManifest {
		// The spec: an image manifest without artifactType is described by
		// its config's media type in the referrers list.
		l.ArtifactType = m.Config.MediaType
	}
	if m.Subject != nil {
		if m.Subject.Digest.Validate() != nil {
			return nil, nil, errorf(http.StatusBadRequest, codeManifestInvalid, "invalid subject digest")
		}
		l.Subject = m.Subject.Digest
	}
	return l, &m, nil
}

// checkReferences refuses a manifest naming content the repository does
// not have: an image's config and layers must be blobs linked in repo, an
// index's entries manifests in repo. The subject is exempt: the spec lets a
// referrer arrive before what it refers to.
func (g *Registry) checkReferences(repo, mt string, m *anyManifest) error {
	var missing []string
	if isImage(mt) {
		for _, desc := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			if nonDistributable(desc) {
				continue
			}
			if desc.Digest.Validate() != nil {
				return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid descriptor digest %q", desc.Digest)
			}
			if !g.blobLinked(repo, desc.Digest) {
				missing = append(missing, desc.Digest.String())
			}
		}
	} else {
		for _, desc := range m.Manifests {
			if desc.Digest.Validate() != nil {
				return errorf(http.StatusBadRequest, codeManifestInvalid, "invalid descriptor digest %q", desc.Digest)
			}
			if !exists(g.manifestLinkPath(repo, desc.Digest)) {
				missing = append(missing, desc.Digest.String())
			}
		}
	}
	if len(missing) > 0 {
		return errorf(http.StatusBadRequest, codeManifestBlobUnknown, "manifest references unknown content").
			withDetail(map[string][]string{"digests": missing})
	}
	return nil
}

func (g *Registry) serveTags(w http.ResponseWriter, r *http.Request, rt route) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(r)
	}
	if !exists(g.repoPath(rt.name)) {
		return errorf(http.StatusNotFound, codeNameUnknown, "repository %q not known", rt.name).
			withDetail(map[string]string{"name": rt.name})
	}
	tags, err := g.listTags(rt.name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, codeUnsupported, "invalid n %q", ns)
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				next := url.Values{"n": {ns}, "last": {tags[n-1]}}
				w.Header().Set("Link", `</v2/`+rt.name+`/tags/list?`+next.Encode()+`>; rel="next"`)
			}
		}
	}
	if tags == nil {
		tags = []string{}
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
}

func (g *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, rt route) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(r)
	}
	subject, err := parseDigest(rt.ref)
	if err != nil {
		return err
	}
	artifactType := r.URL.Query().Get("artifactType")
	descs, err := g.referrers(rt.name, subject, artifactType)
	if err != nil {
		return err
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specsVersioned,
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	})
}

// referrers lists descriptors of the manifests in repo whose subject is
// subject. It reads the small link files, never the manifests themselves.
func (g *Registry) referrers(repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	ds, err := listDigests(g.repoPath(repo) + "/" + dirMans)
	if err != nil {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	for _, d := range ds {
		l, err := g.readManifestLink(repo, d)
		if err != nil {
			continue // deleted meanwhile
		}
		if l.Subject != subject || (artifactType != "" && l.ArtifactType != artifactType) {
			continue
		}
		out = append(out, ocispec.Descriptor{
			MediaType:    l.MediaType,
			Digest:       d,
			Size:         l.Size,
			ArtifactType: l.ArtifactType,
			Annotations:  l.Annotations,
		})
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
	return nil
}
