package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/distribution/reference"

	v1 "berth.dev/berth/api/v1"
)

// Import stores every image of an OCI image layout tar or docker-save tar
// in the registry and on the node. a must allow writing every repository
// the archive names; nothing is stored otherwise.
func (s *Service) Import(ctx context.Context, a Access, r io.Reader) ([]v1.Image, error) {
	return s.load(ctx, a, r, true)
}

// Push stores the archive's images in the registry only.
func (s *Service) Push(ctx context.Context, a Access, r io.Reader) ([]v1.Image, error) {
	return s.load(ctx, a, r, false)
}

// target is where one image of an archive goes.
type target struct {
	img  archiveImage
	ref  repoRef
	name string // as answered: the name imported, or REPO:TAG pushed
}

func (s *Service) load(ctx context.Context, a Access, r io.Reader, onNode bool) ([]v1.Image, error) {
	if s.reg == nil {
		if !onNode {
			return nil, v1.Unavailable("%v", errNoRegistry)
		}
		if !a.Admin {
			return nil, v1.Errorf(v1.ErrForbidden, "this server has no registry: an import writes the node's shared image store, which needs an admin token for all environments")
		}
		imgs, err := s.node.ImportImage(ctx, r)
		if err != nil {
			return nil, err
		}
		out := make([]v1.Image, len(imgs))
		for i, img := range imgs {
			out[i] = toAPIImage(img)
		}
		return out, nil
	}
	work, err := os.MkdirTemp(s.tempDir, "berth-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	arc, err := spoolArchive(ctx, r, filepath.Join(work, "archive.tar"))
	if err != nil {
		return nil, err
	}
	defer arc.Close()
	imgs, err := arc.images()
	if err != nil {
		return nil, err
	}

	// Every name is mapped and allowed before anything is written: an
	// archive naming one repository the caller may not write stores
	// nothing, on the node neither.
	targets := make([]target, 0, len(imgs))
	for _, img := range imgs {
		rr, ok, err := s.names.mapName(img.name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, v1.FieldError("image", "%q names another registry (host with a port); tag it with a name without a host to store it here", img.name)
		}
		if rr.tag == "" {
			rr.tag = "latest"
		}
		rr.digest = ""
		if err := s.check(ctx, a, rr.repo, true); err != nil {
			return nil, err
		}
		t := target{img: img, ref: rr, name: reference.FamiliarString(rr.named)}
		if !onNode {
			t.name = rr.String()
		}
		targets = append(targets, t)
	}
	out := make([]v1.Image, 0, len(targets))
	for _, t := range targets {
		if err := s.store(ctx, arc, t); err != nil {
			return nil, err
		}
		out = append(out, v1.Image{Name: t.name, Digest: t.img.root.Digest.String(), Size: t.img.size})
	}
	if !onNode {
		return out, nil
	}
	// The node reads the archive as it is, with containerd's own
	// importer. Its manifests are the registry's byte for byte (an OCI
	// layout's are the archive's own; a docker-save archive's are made
	// the same way on both sides), so both hold the same digests. Should
	// containerd have chosen differently (it reuses compressed copies of
	// uncompressed layers it holds already), the node pulls the
	// registry's.
	if _, err := s.node.ImportImage(ctx, arc.reader()); err != nil {
		return nil, fmt.Errorf("images stored in the registry; importing them on the node failed: %w", err)
	}
	for _, t := range targets {
		if err := s.ensureOnNode(ctx, t.ref.repo, t.img.root.Digest.String()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// store writes one image into its repository: blobs, then manifests, the
// tagged one last, so the tag never names anything incomplete.
func (s *Service) store(ctx context.Context, arc *archive, t target) error {
	repo := t.ref.repo
	for _, b := range t.img.blobs {
		if err := s.reg.PutBlob(ctx, repo, b.desc.Digest.String(), b.file.size, arc.open(b.file)); err != nil {
			return fmt.Errorf("store %s in the registry: %w", t.ref, err)
		}
	}
	for i, m := range t.img.manifests {
		tag := ""
		if i == len(t.img.manifests)-1 {
			tag = t.ref.tag
		}
		d, err := s.reg.PutManifest(ctx, repo, tag, m.desc.MediaType, m.body)
		if err != nil {
			return fmt.Errorf("store %s in the registry: %w", t.ref, err)
		}
		if d != m.desc.Digest.String() {
			return fmt.Errorf("store %s in the registry: manifest stored as %s, expected %s", t.ref, d, m.desc.Digest)
		}
	}
	return nil
}
