package server

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/archive"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/runtime"
)

// imageService is where images live for the API server and the
// controllers: the built-in registry (what users push, build and import;
// what revisions pin) and the node's containerd (what runs).
//
// Registry names: an image's repository is its name without a registry
// host — "hello:v1" and "docker.io/library/hello:v1" are repository
// hello, tag v1; "team/api:3" is team/api; a name whose first part is a
// host other than this registry keeps it ("berth.dev/examples/hello:v1" is
// repository berth.dev/examples/hello); "127.0.0.1:7070/team/echo:v1"
// (this registry's own address) is team/echo. Hosts with a port other than
// this registry's have no repository here.
type imageService struct {
	driver runtime.ImageService

	mu    sync.RWMutex
	reg   *registry.Registry
	host  string // HOST:PORT the node's containerd pulls from (loopback)
	own   map[string]bool
	token string
}

var (
	_ apiserver.ImageService  = (*imageService)(nil)
	_ apiserver.ImageRegistry = (*imageService)(nil)
)

// setRegistry connects the built-in registry, served on apiAddr. The
// registry is made after the controllers (it shares the API listener), so
// this is set once the server has it.
func (s *imageService) setRegistry(reg *registry.Registry, apiAddr, token string) {
	host, port, _ := net.SplitHostPort(apiAddr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reg, s.token = reg, token
	s.host = net.JoinHostPort(host, port)
	s.own = map[string]bool{s.host: true, "127.0.0.1:" + port: true, "localhost:" + port: true, apiAddr: true}
}

func (s *imageService) registry() (*registry.Registry, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reg, s.host
}

// repoRef is an image name mapped to the built-in registry.
type repoRef struct {
	named  reference.Named // normalized, as containerd names it
	repo   string
	tag    string // "latest" when the name has neither tag nor digest
	digest string
	// hub is true for a name without a registry host (Docker Hub style).
	hub bool
}

func (r repoRef) ref() string {
	if r.digest != "" {
		return r.digest
	}
	return r.tag
}

func (r repoRef) String() string {
	if r.digest != "" {
		return r.repo + "@" + r.digest
	}
	return r.repo + ":" + r.tag
}

// mapName maps ref to a repository of the built-in registry; ok is false
// when the name has none (a host with a port other than this registry's).
func (s *imageService) mapName(ref string) (repoRef, bool, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return repoRef{}, false, v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	r := repoRef{named: named, tag: "latest"}
	if t, ok := named.(reference.Tagged); ok {
		r.tag = t.Tag()
	}
	if c, ok := named.(reference.Canonical); ok {
		r.digest = c.Digest().String()
		if _, tagged := named.(reference.Tagged); !tagged {
			r.tag = ""
		}
	}
	domain, path := reference.Domain(named), reference.Path(named)
	s.mu.RLock()
	own := s.own[domain]
	s.mu.RUnlock()
	switch {
	case domain == "docker.io":
		r.repo = reference.FamiliarName(reference.TrimNamed(named))
		r.hub = !strings.HasPrefix(ref, "docker.io/") && !strings.HasPrefix(ref, "index.docker.io/")
	case own:
		r.repo = path
	case strings.Contains(domain, ":"):
		return r, false, nil
	default:
		r.repo = domain + "/" + path
	}
	return r, true, nil
}

// pullRef is the reference the node's containerd pulls r by: this
// registry on loopback (anonymous pulls from loopback are allowed), by
// digest.
func (s *imageService) pullRef(repo, digest string) string {
	_, host := s.registry()
	return host + "/" + repo + "@" + digest
}

// lookup finds repo:ref (tag or digest) in the registry.
func (s *imageService) lookup(ctx context.Context, r repoRef) (registry.Image, bool, error) {
	reg, _ := s.registry()
	if reg == nil {
		return registry.Image{}, false, nil
	}
	list, err := reg.List(ctx)
	if err != nil {
		return registry.Image{}, false, err
	}
	for _, img := range list {
		if img.Repository != r.repo {
			continue
		}
		if (r.digest != "" && img.Digest == r.digest) || (r.digest == "" && img.Tag == r.tag) {
			return img, true, nil
		}
	}
	if r.digest != "" {
		// An untagged manifest: the registry still serves it by digest.
		if d, err := s.remoteDigest(ctx, r); err == nil {
			return registry.Image{Repository: r.repo, Digest: d}, true, nil
		}
	}
	return registry.Image{}, false, nil
}

func (s *imageService) remoteRef(r repoRef) (name.Reference, error) {
	_, host := s.registry()
	return name.ParseReference(host+"/"+r.String(), name.Insecure)
}

func (s *imageService) remoteOpts(ctx context.Context) []remote.Option {
	s.mu.RLock()
	tok := s.token
	s.mu.RUnlock()
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "berth", Password: tok})}
}

func (s *imageService) remoteDigest(ctx context.Context, r repoRef) (string, error) {
	ref, err := s.remoteRef(r)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(ref, s.remoteOpts(ctx)...)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// ResolveImage pins a revision's image. In order: the built-in registry
// (then the node pulls it from there if it lacks it), the node's own
// images, a pull from the name's registry. A Docker Hub name found
// nowhere is an error that says where to put the image.
func (s *imageService) ResolveImage(ctx context.Context, ref string) (string, error) {
	r, ok, err := s.mapName(ref)
	if err != nil {
		return "", err
	}
	if ok {
		img, found, err := s.lookup(ctx, r)
		if err != nil {
			return "", err
		}
		if found {
			if err := s.ensureOnNode(ctx, r.repo, img.Digest); err != nil {
				return "", err
			}
			return img.Digest, nil
		}
	}
	local, err := s.driver.ResolveImage(ctx, ref)
	if err == nil {
		return local.Digest, nil
	}
	if !v1.IsNotFound(err) {
		return "", err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	img, perr := s.driver.PullImage(pctx, ref)
	if perr == nil {
		return img.Digest, nil
	}
	if ok && r.hub {
		return "", v1.NotFound("%q is not in the built-in registry (repository %s) nor on the node, and pulling it from Docker Hub failed (%v); push it with `berth image push`, import it with `berth image import FILE` or build it with `berth build`", ref, r.repo, perr)
	}
	return "", v1.NotFound("%q is not in the built-in registry nor on the node (import it with `berth image import FILE`), and the pull failed: %v", ref, perr)
}

// ensureOnNode pulls repo@digest from the built-in registry into the
// node's containerd unless an image with that digest is there already.
func (s *imageService) ensureOnNode(ctx context.Context, repo, digest string) error {
	pinned := s.pullRef(repo, digest)
	if _, err := s.driver.ResolveImage(ctx, pinned); err == nil {
		return nil
	} else if !v1.IsNotFound(err) {
		return err
	}
	if _, err := s.driver.PullImage(ctx, pinned); err != nil {
		return fmt.Errorf("pull %s from the built-in registry: %w", pinned, err)
	}
	return nil
}

// Import stores every image of an OCI layout tar or docker-save tar in
// the registry and on the node.
func (s *imageService) Import(ctx context.Context, r io.Reader) ([]v1.Image, error) {
	return s.load(ctx, r, true)
}

// Push stores the archive's images in the registry only.
func (s *imageService) Push(ctx context.Context, r io.Reader) ([]v1.Image, error) {
	return s.load(ctx, r, false)
}

func (s *imageService) load(ctx context.Context, r io.Reader, onNode bool) ([]v1.Image, error) {
	reg, _ := s.registry()
	if reg == nil {
		if !onNode {
			return nil, v1.Unavailable("this server has no registry")
		}
		imgs, err := s.driver.ImportImage(ctx, r)
		if err != nil {
			return nil, err
		}
		out := make([]v1.Image, len(imgs))
		for i, img := range imgs {
			out[i] = toAPIImage(img)
		}
		return out, nil
	}
	work, err := os.MkdirTemp("", "berth-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	archive, err := readArchive(r, work)
	if err != nil {
		return nil, err
	}
	var out []v1.Image
	for _, a := range archive {
		rr, ok, err := s.mapName(a.name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, v1.FieldError("image", "%q names another registry (host with a port); tag it with a name without a host to store it here", a.name)
		}
		if rr.tag == "" {
			rr.tag = "latest"
		}
		rr.digest = ""
		dst, err := s.remoteRef(rr)
		if err != nil {
			return nil, v1.FieldError("image", "%q cannot be stored as repository %s: %v", a.name, rr.repo, err)
		}
		if a.index != nil {
			err = remote.WriteIndex(dst, a.index, s.remoteOpts(ctx)...)
		} else {
			err = remote.Write(dst, a.image, s.remoteOpts(ctx)...)
		}
		if err != nil {
			return nil, fmt.Errorf("store %s in the registry: %w", rr, err)
		}
		d, size, err := a.digestSize()
		if err != nil {
			return nil, err
		}
		img := v1.Image{Name: reference.FamiliarString(rr.named), Digest: d, Size: size}
		if !onNode {
			img.Name = rr.String()
		}
		out = append(out, img)
	}
	if onNode {
		if err := s.importToNode(ctx, archive, work); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// importToNode gives containerd the same manifests the registry got (an
// OCI layout of them), so the node and the registry agree on digests, under
// the names the archive gave.
func (s *imageService) importToNode(ctx context.Context, images []archiveImage, work string) error {
	dir := filepath.Join(work, "node-layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for _, a := range images {
		rr, _, _ := s.mapName(a.name)
		ann := layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          rr.named.String(),
			"org.opencontainers.image.ref.name": rr.tag,
		})
		if a.index != nil {
			err = p.AppendIndex(a.index, ann)
		} else {
			err = p.AppendImage(a.image, ann)
		}
		if err != nil {
			return fmt.Errorf("prepare import: %w", err)
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.TarDir(dir, pw)) }()
	_, err = s.driver.ImportImage(ctx, pr)
	pr.CloseWithError(err)
	return err
}

// archiveImage is one named image of an archive: an image or an index.
type archiveImage struct {
	name  string
	image ggcr.Image
	index ggcr.ImageIndex
}

func (a archiveImage) digestSize() (string, int64, error) {
	var (
		d   ggcr.Hash
		raw []byte
		err error
	)
	if a.index != nil {
		if d, err = a.index.Digest(); err == nil {
			raw, err = a.index.RawManifest()
		}
		return d.String(), int64(len(raw)), err
	}
	if d, err = a.image.Digest(); err != nil {
		return "", 0, err
	}
	m, err := a.image.Manifest()
	if err != nil {
		return "", 0, err
	}
	raw, _ = a.image.RawManifest()
	size := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return d.String(), size, nil
}

// readArchive spools a docker-save tar or an OCI image layout tar into
// work and returns its named images. A docker-save tar is read in place;
// an OCI layout is unpacked first.
func readArchive(r io.Reader, work string) ([]archiveImage, error) {
	spool := filepath.Join(work, "archive.tar")
	names, err := spoolTar(r, spool)
	if err != nil {
		return nil, err
	}
	switch {
	case names["manifest.json"]:
		return readDockerSave(spool)
	case names["index.json"]:
		dir := filepath.Join(work, "archive")
		if err := untar(spool, dir); err != nil {
			return nil, err
		}
		return readOCILayout(dir)
	}
	return nil, v1.Invalid("not an image archive: neither a docker-save tar (manifest.json) nor an OCI image layout tar (index.json)")
}

// spoolTar copies r to path and returns the names of the files in it.
func spoolTar(r io.Reader, path string) (map[string]bool, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return nil, fmt.Errorf("%w: %v", v1.Invalid("read image archive"), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, v1.Invalid("image archive is not a valid tar: %v", err)
		}
		names[strings.TrimPrefix(filepath.Clean("/"+hdr.Name), "/")] = true
	}
}

func readDockerSave(path string) ([]archiveImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, v1.Invalid("docker-save archive: %v", err)
	}
	var out []archiveImage
	for _, d := range m {
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return nil, v1.Invalid("docker-save archive: bad tag %q: %v", t, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, v1.Invalid("docker-save archive, image %s: %v", t, err)
			}
			out = append(out, archiveImage{name: t, image: img})
		}
	}
	if len(out) == 0 {
		return nil, v1.Invalid("docker-save archive names no image (no RepoTags)")
	}
	return out, nil
}

func readOCILayout(dir string) ([]archiveImage, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, v1.Invalid("OCI image layout: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, v1.Invalid("OCI image layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Invalid("OCI image layout: %v", err)
	}
	var out []archiveImage
	for _, desc := range im.Manifests {
		n := desc.Annotations["io.containerd.image.name"]
		if n == "" {
			n = desc.Annotations["org.opencontainers.image.ref.name"]
		}
		if n == "" || !strings.ContainsAny(n, "/:") {
			// A bare tag ("v1") names no repository.
			continue
		}
		a := archiveImage{name: n}
		if desc.MediaType.IsIndex() {
			a.index, err = idx.ImageIndex(desc.Digest)
		} else {
			a.image, err = idx.Image(desc.Digest)
		}
		if err != nil {
			return nil, v1.Invalid("OCI image layout, %s: %v", n, err)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, v1.Invalid("image archive names no image (OCI layouts need an org.opencontainers.image.ref.name annotation with a full name, e.g. team/api:v1)")
	}
	return out, nil
}

// untar unpacks the tar at path into dir (regular files and directories;
// names cannot escape dir).
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return v1.Invalid("image archive is not a valid tar: %v", err)
		}
		target := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return v1.Invalid("image archive: %s: %v", hdr.Name, err)
			}
		}
	}
}

// List is the registry's images, each marked when the node has it
// unpacked, then the node's images the registry does not have.
func (s *imageService) List(ctx context.Context) ([]v1.Image, error) {
	entries, err := s.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Image, len(entries))
	for i, e := range entries {
		out[i] = v1.Image{Name: e.Name, Digest: e.Digest, Size: e.Size}
	}
	return out, nil
}

// Catalog is List with where each image is.
func (s *imageService) Catalog(ctx context.Context) ([]apiserver.ImageEntry, error) {
	node, err := s.driver.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	onNode := map[string]bool{}
	for _, img := range node {
		onNode[img.Digest] = true
	}
	var out []apiserver.ImageEntry
	inRegistry := map[string]bool{}
	if reg, _ := s.registry(); reg != nil {
		imgs, err := reg.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, img := range imgs {
			inRegistry[img.Digest] = true
			out = append(out, apiserver.ImageEntry{
				Name: img.Repository + ":" + img.Tag, Repository: img.Repository, Tag: img.Tag,
				Digest: img.Digest, Size: img.Size, Registry: true, Node: onNode[img.Digest],
			})
		}
	}
	var nodeOnly []apiserver.ImageEntry
	for _, img := range node {
		if inRegistry[img.Digest] {
			continue
		}
		nodeOnly = append(nodeOnly, apiserver.ImageEntry{Name: img.Name, Digest: img.Digest, Size: img.Size, Node: true})
	}
	sort.Slice(nodeOnly, func(i, j int) bool { return nodeOnly[i].Name < nodeOnly[j].Name })
	return append(out, nodeOnly...), nil
}

func (s *imageService) Pull(ctx context.Context, ref string) (v1.Image, error) {
	img, err := s.driver.PullImage(ctx, ref)
	if err != nil {
		return v1.Image{}, err
	}
	return toAPIImage(img), nil
}

// Remove deletes ref from the registry (a tag, or a manifest by digest)
// and from the node; NotFound only when it is in neither.
func (s *imageService) Remove(ctx context.Context, ref string) error {
	found := false
	r, ok, err := s.mapName(ref)
	if err != nil {
		return err
	}
	if reg, _ := s.registry(); reg != nil && ok {
		if img, there, err := s.lookup(ctx, r); err != nil {
			return err
		} else if there {
			if err := reg.Delete(ctx, r.repo, r.ref()); err != nil {
				return err
			}
			found = true
			// The node's copy pulled from here goes too.
			if img.Digest != "" {
				_ = s.driver.RemoveImage(ctx, s.pullRef(r.repo, img.Digest))
			}
		}
	}
	err = s.driver.RemoveImage(ctx, ref)
	switch {
	case err == nil:
		return nil
	case v1.IsNotFound(err) && found:
		return nil
	}
	return err
}

// Tag makes target name the image source names, in the registry.
func (s *imageService) Tag(ctx context.Context, source, target string) (v1.Image, error) {
	src, ok, err := s.mapName(source)
	if err != nil {
		return v1.Image{}, err
	}
	if reg, _ := s.registry(); reg == nil {
		return v1.Image{}, v1.Unavailable("this server has no registry")
	}
	if !ok {
		return v1.Image{}, v1.FieldError("source", "%q is not a name in the built-in registry", source)
	}
	img, found, err := s.lookup(ctx, src)
	if err != nil {
		return v1.Image{}, err
	}
	if !found {
		return v1.Image{}, v1.NotFound("%q is not in the built-in registry (berth image ls lists what is)", source)
	}
	dst, ok, err := s.mapName(target)
	if err != nil {
		return v1.Image{}, err
	}
	if !ok || dst.digest != "" {
		return v1.Image{}, v1.FieldError("target", "%q must be a name with a tag, without another registry's host", target)
	}
	srcRef, err := s.remoteRef(repoRef{repo: src.repo, digest: img.Digest})
	if err != nil {
		return v1.Image{}, err
	}
	dstRef, err := s.remoteRef(dst)
	if err != nil {
		return v1.Image{}, v1.FieldError("target", "%q: %v", target, err)
	}
	opts := s.remoteOpts(ctx)
	desc, err := remote.Get(srcRef, opts...)
	if err != nil {
		return v1.Image{}, fmt.Errorf("read %s: %w", source, err)
	}
	// Across repositories the blobs are mounted, not copied.
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = remote.WriteIndex(dstRef, idx, opts...)
		}
		if err != nil {
			return v1.Image{}, fmt.Errorf("tag %s: %w", target, err)
		}
	} else {
		im, err := desc.Image()
		if err == nil {
			err = remote.Write(dstRef, im, opts...)
		}
		if err != nil {
			return v1.Image{}, fmt.Errorf("tag %s: %w", target, err)
		}
	}
	return v1.Image{Name: dst.String(), Digest: img.Digest, Size: img.Size}, nil
}

func toAPIImage(i runtime.Image) v1.Image {
	return v1.Image{Name: i.Name, Digest: i.Digest, Size: i.Size}
}
