package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "berth.dev/berth/api/v1"
)

// Media types of docker-save archives, as containerd's importer names them.
const (
	mtDockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList      = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig    = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer     = "application/vnd.docker.image.rootfs.diff.tar"
	mtDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	// annImageName is containerd's name annotation in OCI layouts.
	annImageName = "io.containerd.image.name"
	// maxManifestBytes is what the registry accepts for one manifest.
	maxManifestBytes = 4 << 20
)

// archive is an image archive spooled to disk once: the file, where each
// regular file of the tar starts in it, and its sha256. Nothing is
// unpacked; blobs are read from the spool where they lie, and the spool is
// what the node's containerd imports.
type archive struct {
	f     *os.File
	size  int64
	files map[string]tarFile // cleaned name → content
}

type tarFile struct {
	off, size int64
	sha256    digest.Digest
	head      []byte // the first bytes, for compression detection
}

// spoolArchive copies r to a new file at p, indexing the tar as it goes.
func spoolArchive(ctx context.Context, r io.Reader, p string) (*archive, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	a := &archive{f: f, files: map[string]tarFile{}}
	if err := a.index(ctx, r); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func (a *archive) Close() error { return a.f.Close() }

// countingWriter counts what the tar reader has consumed: archive/tar reads
// headers and data exactly, so after Next the count is where the entry's
// data starts in the spool.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type headWriter struct{ b []byte }

func (h *headWriter) Write(p []byte) (int, error) {
	if room := 10 - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// readError marks a failure to read the request body, as opposed to a tar
// that does not parse.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

type bodyReader struct {
	ctx context.Context
	r   io.Reader
}

func (b bodyReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

func (a *archive) index(ctx context.Context, r io.Reader) error {
	cw := &countingWriter{w: a.f}
	src := io.TeeReader(bodyReader{ctx, r}, cw)
	tr := tar.NewReader(src)
	links := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return tarError(err)
		}
		name := cleanName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			off := cw.n
			h, head := sha256.New(), &headWriter{}
			if _, err := io.Copy(io.MultiWriter(h, head), tr); err != nil {
				return tarError(err)
			}
			a.files[name] = tarFile{off: off, size: hdr.Size, sha256: digest.NewDigest(digest.SHA256, h), head: head.b}
		case tar.TypeSymlink:
			// As containerd resolves them: relative to the link's directory.
			links[name] = cleanName(path.Join(path.Dir(hdr.Name), hdr.Linkname))
		}
	}
	// The rest (the end-of-archive blocks and any padding) belongs to the
	// archive containerd reads too.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return tarError(err)
	}
	a.size = cw.n
	for name, target := range links {
		if f, ok := a.files[target]; ok {
			a.files[name] = f
		}
	}
	return nil
}

func tarError(err error) error {
	var re *readError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %w", v1.Invalid("read image archive"), re.err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return v1.Invalid("image archive is not a valid tar: %v", err)
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// reader is the whole archive, for the node's importer.
func (a *archive) reader() io.Reader { return io.NewSectionReader(a.f, 0, a.size) }

func (a *archive) open(f tarFile) io.Reader { return io.NewSectionReader(a.f, f.off, f.size) }

func (a *archive) readFile(f tarFile, limit int64, what string) ([]byte, error) {
	if f.size > limit {
		return nil, v1.Invalid("image archive: %s is larger than %d bytes", what, limit)
	}
	b := make([]byte, f.size)
	if _, err := io.ReadFull(a.open(f), b); err != nil {
		return nil, err
	}
	return b, nil
}

// archiveImage is one named image of an archive and everything it needs
// stored, in the order the registry accepts it: blobs, then manifests with
// children before their index, the root (what name names) last.
type archiveImage struct {
	name      string
	root      ocispec.Descriptor
	blobs     []archiveBlob
	manifests []archiveManifest
	// size is what the image weighs (manifest, config and layers; an
	// index counts its own bytes), as `berth image ls` shows.
	size int64
}

type archiveBlob struct {
	desc ocispec.Descriptor
	file tarFile
}

type archiveManifest struct {
	desc ocispec.Descriptor
	body []byte
}

// images reads the archive as containerd's importer does: an OCI image
// layout when it has an oci-layout file, else a docker-save archive
// (manifest.json).
func (a *archive) images() ([]archiveImage, error) {
	if f, ok := a.files[ocispec.ImageLayoutFile]; ok {
		b, err := a.readFile(f, 1<<20, ocispec.ImageLayoutFile)
		if err != nil {
			return nil, err
		}
		var l ocispec.ImageLayout
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, v1.Invalid("OCI image layout: %s: %v", ocispec.ImageLayoutFile, err)
		}
		if l.Version != "" {
			if l.Version != ocispec.ImageLayoutVersion {
				return nil, v1.Invalid("OCI image layout version %q; supported: %s", l.Version, ocispec.ImageLayoutVersion)
			}
			return a.ociImages()
		}
	}
	if _, ok := a.files["manifest.json"]; ok {
		return a.dockerImages()
	}
	if _, ok := a.files[ocispec.ImageIndexFile]; ok {
		return nil, v1.Invalid("OCI image layout without an oci-layout file naming its version")
	}
	return nil, v1.Invalid("not an image archive: neither a docker-save tar (manifest.json) nor an OCI image layout tar (oci-layout, index.json)")
}

func (a *archive) ociImages() ([]archiveImage, error) {
	f, ok := a.files[ocispec.ImageIndexFile]
	if !ok {
		return nil, v1.Invalid("OCI image layout without %s", ocispec.ImageIndexFile)
	}
	b, err := a.readFile(f, maxManifestBytes, ocispec.ImageIndexFile)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, v1.Invalid("OCI image layout: %s: %v", ocispec.ImageIndexFile, err)
	}
	var out []archiveImage
	for _, desc := range idx.Manifests {
		// The name containerd gives the image; a bare tag ("v1", as
		// skopeo writes oci:DIR:v1) names no repository.
		n := desc.Annotations[annImageName]
		if n == "" {
			n = desc.Annotations[ocispec.AnnotationRefName]
		}
		if n == "" || !strings.ContainsAny(n, "/:") {
			continue
		}
		img := archiveImage{name: n}
		w := walker{a: a, img: &img, seen: map[digest.Digest]bool{}}
		if img.root, err = w.manifest(desc, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, v1.Invalid("image archive names no image (OCI layouts need an org.opencontainers.image.ref.name annotation with a full name, e.g. team/api:v1)")
	}
	return out, nil
}

// walker collects what one image of an OCI layout needs.
type walker struct {
	a    *archive
	img  *archiveImage
	seen map[digest.Digest]bool
}

func (w *walker) file(d digest.Digest) (tarFile, bool) {
	if d.Validate() != nil {
		return tarFile{}, false
	}
	f, ok := w.a.files[path.Join(ocispec.ImageBlobsDir, string(d.Algorithm()), d.Encoded())]
	return f, ok
}

// manifest adds the manifest desc names, and what it names, to the image.
func (w *walker) manifest(desc ocispec.Descriptor, depth int) (ocispec.Descriptor, error) {
	if depth > 8 {
		return desc, v1.Invalid("image indexes nested too deep")
	}
	f, ok := w.file(desc.Digest)
	if !ok {
		return desc, v1.Invalid("the archive lacks manifest %s", desc.Digest)
	}
	if desc.Digest.Algorithm() != digest.SHA256 || f.sha256 != desc.Digest {
		return desc, v1.Invalid("manifest %s: content does not match its digest (the registry keeps sha256 manifests)", desc.Digest)
	}
	body, err := w.a.readFile(f, maxManifestBytes, "manifest "+desc.Digest.String())
	if err != nil {
		return desc, err
	}
	var m struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return desc, v1.Invalid("manifest %s: %v", desc.Digest, err)
	}
	if desc.MediaType == "" {
		desc.MediaType = m.MediaType
	}
	desc.Size = f.size
	isIndex := desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == mtDockerList
	if isIndex {
		for _, c := range m.Manifests {
			if _, err := w.manifest(c, depth+1); err != nil {
				return desc, err
			}
		}
	} else if m.Config != nil {
		w.img.size += f.size
		for _, b := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			bf, ok := w.file(b.Digest)
			if !ok {
				if strings.Contains(b.MediaType, ".nondistributable.") || strings.Contains(b.MediaType, ".foreign.") {
					continue // never shipped, never stored
				}
				return desc, v1.Invalid("manifest %s names blob %s, which the archive lacks", desc.Digest, b.Digest)
			}
			w.img.size += bf.size
			if !w.seen[b.Digest] {
				w.seen[b.Digest] = true
				w.img.blobs = append(w.img.blobs, archiveBlob{desc: b, file: bf})
			}
		}
	}
	if depth == 0 && isIndex {
		w.img.size = f.size
	}
	if !w.seen[desc.Digest] {
		w.seen[desc.Digest] = true
		w.img.manifests = append(w.img.manifests, archiveManifest{desc: desc, body: body})
	}
	return desc, nil
}

// dockerManifest is the manifest containerd's importer makes for each image
// of a docker-save archive, field for field, so that marshalled by
// encoding/json it has the digest the node will hold.
type dockerManifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        ocispec.Descriptor   `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
}

func (a *archive) dockerImages() ([]archiveImage, error) {
	b, err := a.readFile(a.files["manifest.json"], maxManifestBytes, "manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, v1.Invalid("docker-save archive: manifest.json: %v", err)
	}
	var out []archiveImage
	for _, e := range entries {
		cf, ok := a.files[cleanName(e.Config)]
		if !ok {
			return nil, v1.Invalid("docker-save archive: image config %q not found", e.Config)
		}
		m := dockerManifest{
			SchemaVersion: 2,
			MediaType:     mtDockerManifest,
			Config:        ocispec.Descriptor{MediaType: mtDockerConfig, Digest: cf.sha256, Size: cf.size},
		}
		blobs := []archiveBlob{{desc: m.Config, file: cf}}
		size := cf.size
		for _, l := range e.Layers {
			lf, ok := a.files[cleanName(l)]
			if !ok {
				return nil, v1.Invalid("docker-save archive: layer %q not found", l)
			}
			// containerd labels any compressed layer (gzip or zstd) gzip,
			// and keeps an uncompressed one as it is.
			mt := mtDockerLayerGzip
			if compression.DetectCompression(lf.head) == compression.Uncompressed {
				mt = mtDockerLayer
			}
			desc := ocispec.Descriptor{MediaType: mt, Digest: lf.sha256, Size: lf.size}
			m.Layers = append(m.Layers, desc)
			blobs = append(blobs, archiveBlob{desc: desc, file: lf})
			size += lf.size
		}
		body, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		root := ocispec.Descriptor{MediaType: mtDockerManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
		for _, t := range e.RepoTags {
			out = append(out, archiveImage{
				name: t, root: root, blobs: dedupe(blobs),
				manifests: []archiveManifest{{desc: root, body: body}},
				size:      size + int64(len(body)),
			})
		}
	}
	if len(out) == 0 {
		return nil, v1.Invalid("docker-save archive names no image (no RepoTags)")
	}
	return out, nil
}

func dedupe(blobs []archiveBlob) []archiveBlob {
	seen := map[digest.Digest]bool{}
	out := blobs[:0:0]
	for _, b := range blobs {
		if !seen[b.desc.Digest] {
			seen[b.desc.Digest] = true
			out = append(out, b)
		}
	}
	return out
}
