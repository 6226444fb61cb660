package images

import (
	"context"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

// clusterNode stands for the nodes of a Kubernetes cluster, which Berth
// does not hold: they pull what they run themselves, by digest, from
// Berth's registry or the image's own. Pinning a remote image therefore
// asks its registry for the digest and keeps nothing; an archive imported
// goes to the registry only.
type clusterNode struct{}

var _ Node = clusterNode{}

func (clusterNode) ResolveImage(ctx context.Context, ref string) (runtime.Image, error) {
	return runtime.Image{}, v1.NotFound("the cluster's nodes hold no images of Berth's")
}

func (clusterNode) PullImage(ctx context.Context, ref string) (runtime.Image, error) {
	named, err := name.ParseReference(ref)
	if err != nil {
		return runtime.Image{}, v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	desc, err := remote.Head(named, remote.WithContext(ctx))
	if err != nil {
		return runtime.Image{}, v1.NotFound("%q: its registry did not give its digest: %v", ref, err)
	}
	return runtime.Image{Name: ref, Digest: desc.Digest.String(), Size: desc.Size}, nil
}

func (clusterNode) ImportImage(ctx context.Context, r io.Reader) ([]runtime.Image, error) {
	return nil, nil
}

func (clusterNode) ListImages(ctx context.Context) ([]runtime.Image, error) { return nil, nil }

func (clusterNode) RemoveImage(ctx context.Context, ref string) error {
	return v1.NotFound("the cluster's nodes hold no images of Berth's")
}

// NodeRef is what a cluster's nodes pull for a revision's image: Berth's
// registry at the address the nodes reach it (NodeAddr), by digest, when
// the image is there; else the image's own registry, by digest.
func (s *Service) NodeRef(image, digest string) string {
	if r, ok, err := s.names.mapName(image); err == nil && ok && digest != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, found, err := s.lookup(ctx, repoRef{repo: r.repo, digest: digest}); err == nil && found {
			addr := s.nodeAddr
			if addr == "" {
				addr = s.names.host
			}
			return addr + "/" + r.repo + "@" + digest
		}
	}
	return v1.PinDigest(image, digest)
}
