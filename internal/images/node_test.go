package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	ctrdarchive "github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

// fakeNode is a node image store that behaves where it matters here:
// imports go through containerd's own importer into a real content store,
// so the digests it holds are the ones a real node would; pulls come from
// a table of remote images, and may be held until the test releases them.
type fakeNode struct {
	t     *testing.T
	store content.Store

	mu     sync.Mutex
	images map[string]runtime.Image // name → image
	remote map[string]string        // ref → digest a pull yields
	gate   chan struct{}            // when set, pulls wait for it to close
	pulls  map[string]int           // ref → PullImage calls
}

func TestMain(m *testing.M) {
	// containerd's content store logs to its global logger.
	_ = log.SetLevel("error")
	os.Exit(m.Run())
}

func newFakeNode(t *testing.T) *fakeNode {
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &fakeNode{t: t, store: cs, images: map[string]runtime.Image{}, remote: map[string]string{}, pulls: map[string]int{}}
}

var _ Node = (*fakeNode)(nil)

// normalize is containerd's name for ref, as the real driver looks it up.
func normalize(ref string) (reference.Named, error) {
	n, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	return n, nil
}

func (n *fakeNode) ResolveImage(ctx context.Context, ref string) (runtime.Image, error) {
	named, err := normalize(ref)
	if err != nil {
		return runtime.Image{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if img, ok := n.images[named.String()]; ok {
		return img, nil
	}
	// By digest, any name holding it will do (as the containerd driver).
	if c, ok := named.(reference.Canonical); ok {
		for _, img := range n.images {
			if img.Digest == c.Digest().String() {
				return img, nil
			}
		}
	}
	return runtime.Image{}, v1.NotFound("image %q is not present on this node", ref)
}

func (n *fakeNode) PullImage(ctx context.Context, ref string) (runtime.Image, error) {
	n.mu.Lock()
	n.pulls[ref]++
	gate := n.gate
	n.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return runtime.Image{}, ctx.Err()
		}
	}
	named, err := normalize(ref)
	if err != nil {
		return runtime.Image{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d, ok := n.remote[ref]
	if !ok {
		if c, isDigest := named.(reference.Canonical); isDigest && strings.HasPrefix(ref, "127.0.0.1:") {
			d, ok = c.Digest().String(), true // the built-in registry has what it was asked for
		}
	}
	if !ok {
		return runtime.Image{}, fmt.Errorf("%w: not found", v1.NotFound("image %q not found in its registry", ref))
	}
	img := runtime.Image{Name: named.String(), Digest: d}
	n.images[img.Name] = img
	return img, nil
}

func (n *fakeNode) ImportImage(ctx context.Context, r io.Reader) ([]runtime.Image, error) {
	idx, err := ctrdarchive.ImportIndex(ctx, n.store, r)
	if err != nil {
		return nil, v1.Invalid("import image archive: %v", err)
	}
	b, err := content.ReadBlob(ctx, n.store, idx)
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []runtime.Image
	for _, m := range index.Manifests {
		name := m.Annotations[annImageName]
		if name == "" {
			name = m.Annotations[ocispec.AnnotationRefName]
		}
		if name == "" {
			continue
		}
		img := runtime.Image{Name: name, Digest: m.Digest.String()}
		n.images[name] = img
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, v1.Invalid("image archive names no image")
	}
	return out, nil
}

func (n *fakeNode) ListImages(ctx context.Context) ([]runtime.Image, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []runtime.Image
	for _, img := range n.images {
		out = append(out, img)
	}
	return out, nil
}

func (n *fakeNode) RemoveImage(ctx context.Context, ref string) error {
	named, err := normalize(ref)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.images[named.String()]; ok {
		delete(n.images, named.String())
		return nil
	}
	if c, ok := named.(reference.Canonical); ok {
		for name, img := range n.images {
			if img.Digest == c.Digest().String() {
				delete(n.images, name)
				return nil
			}
		}
	}
	return v1.NotFound("image %q is not present on this node", ref)
}

// has reports whether the node holds an image with digest d.
func (n *fakeNode) has(d string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, img := range n.images {
		if img.Digest == d {
			return true
		}
	}
	return false
}

func (n *fakeNode) pullCount(ref string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pulls[ref]
}
