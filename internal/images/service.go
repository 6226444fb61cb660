package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/distribution/reference"
	"golang.org/x/sync/singleflight"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/runtime"
)

// Node is the node's image store: the runtime driver's image calls.
type Node interface {
	// ResolveImage finds a local image; NotFound when absent.
	ResolveImage(ctx context.Context, ref string) (runtime.Image, error)
	// PullImage fetches ref from its registry and unpacks it.
	PullImage(ctx context.Context, ref string) (runtime.Image, error)
	// ImportImage reads an OCI image layout or docker-save tarball and
	// unpacks every image in it.
	ImportImage(ctx context.Context, r io.Reader) ([]runtime.Image, error)
	ListImages(ctx context.Context) ([]runtime.Image, error)
	RemoveImage(ctx context.Context, ref string) error
}

// Registry is the built-in registry's Go API as this package writes and
// reads it.
type Registry interface {
	List(ctx context.Context) ([]registry.Image, error)
	Resolve(ctx context.Context, repo, ref string) (registry.Image, error)
	PutBlob(ctx context.Context, repo, digest string, size int64, r io.Reader) error
	PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (string, error)
	Copy(ctx context.Context, srcRepo, ref, dstRepo, tag string) (registry.Image, error)
	Delete(ctx context.Context, repo, ref string) error
	ReadManifest(ctx context.Context, repo, ref string) (mediaType string, body []byte, err error)
	ReadBlob(ctx context.Context, repo, digest string, max int64) ([]byte, error)
}

var _ Registry = (*registry.Registry)(nil)

// Config is what the image service needs from the composition root.
type Config struct {
	// Node is this machine's image store; nil when instances run on a
	// cluster, whose nodes pull by digest themselves.
	Node Node
	// NodeAddr is where a cluster's nodes reach the registry (HOST:PORT);
	// empty means RegistryAddr.
	NodeAddr string
	// Registry is the built-in registry; nil when the server has none,
	// and then images live on the node only.
	Registry Registry
	// RegistryAddr is the address the registry is served on (the API's
	// listen address): names on it are the registry's own, and the node
	// pulls from it on loopback.
	RegistryAddr string
	// Owners decides whose repositories are whose; nil makes every
	// repository shared.
	Owners *Owners
	// PullTimeout bounds one pull from a remote registry, however long
	// its callers are willing to wait; default 2 minutes.
	PullTimeout time.Duration
	// CheckHost, when set, vets the registry host of a pull from outside
	// (the egress policy): a pull must not reach another environment's
	// instances, the host's own listeners or metadata addresses.
	CheckHost func(ctx context.Context, host string) error
	// TempDir holds archives while they are imported; default os.TempDir.
	TempDir string
	Logger  *slog.Logger
}

// Service is the image service of the API server and the controllers.
type Service struct {
	node      Node
	checkHost func(ctx context.Context, host string) error
	nodeless  bool
	nodeAddr  string
	reg       Registry
	names     names
	owners    *Owners
	timeout   time.Duration
	tempDir   string
	log       *slog.Logger
	// pulls shares one pull among every caller that wants the same
	// reference at once.
	pulls singleflight.Group
	// waiting, when set (by tests), learns of each caller that waits for
	// a pull.
	waiting func(ref string)
}

// New makes the service.
func New(cfg Config) *Service {
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nodeless := cfg.Node == nil
	if nodeless {
		cfg.Node = clusterNode{}
	}
	return &Service{
		node: cfg.Node, checkHost: cfg.CheckHost, nodeless: nodeless, nodeAddr: cfg.NodeAddr, reg: cfg.Registry, names: newNames(cfg.RegistryAddr), owners: cfg.Owners,
		timeout: cfg.PullTimeout, tempDir: cfg.TempDir, log: cfg.Logger,
	}
}

// lookup finds repo:ref (tag or digest) in the registry.
func (s *Service) lookup(ctx context.Context, r repoRef) (registry.Image, bool, error) {
	if s.reg == nil {
		return registry.Image{}, false, nil
	}
	img, err := s.reg.Resolve(ctx, r.repo, r.ref())
	switch {
	case err == nil:
		return img, true, nil
	case v1.IsNotFound(err), v1.IsInvalid(err):
		// Invalid: a name the registry's grammar refuses is not there.
		return registry.Image{}, false, nil
	}
	return registry.Image{}, false, err
}

// ResolveImage pins a revision's image: the digest of ref. In order: the
// built-in registry (then the node pulls it from there if it lacks it), the
// node's own images, a pull from the name's registry. A NotFound error
// when the image cannot be had says where to put it. Callers resolving the
// same reference at once share one pull; ctx bounds only the caller's own
// wait, so a caller that gives up does not cancel the pull for the others.
func (s *Service) ResolveImage(ctx context.Context, ref string) (string, error) {
	r, ok, err := s.names.mapName(ref)
	if err != nil {
		return "", err
	}
	if ok {
		img, found, err := s.lookup(ctx, r)
		if err != nil {
			return "", err
		}
		if found {
			if img.ArtifactType == v1.MediaTypeWasmConfig {
				// A Wasm module runs in the server, not on a node.
				return img.Digest, nil
			}
			if err := s.ensureOnNode(ctx, r.repo, img.Digest); err != nil {
				return "", err
			}
			return img.Digest, nil
		}
	}
	local, err := s.node.ResolveImage(ctx, ref)
	if err == nil {
		return local.Digest, nil
	}
	if !v1.IsNotFound(err) {
		return "", err
	}
	img, perr := s.pull(ctx, ref)
	if perr == nil {
		return img.Digest, nil
	}
	if ctx.Err() != nil {
		return "", perr
	}
	if ok && r.hub {
		return "", v1.NotFound("%q is not in the built-in registry (repository %s) nor on the node, and pulling it from Docker Hub failed (%v); push it with `berth image push`, import it with `berth image import FILE` or build it with `berth build`", ref, r.repo, perr)
	}
	return "", v1.NotFound("%q is not in the built-in registry nor on the node (import it with `berth image import FILE`), and the pull failed: %v", ref, perr)
}

// ResolveImageIn is ResolveImage for a workload of environment env: an
// image in a repository of another environment is refused (NotFound, as
// the image cannot be had there), so one environment can neither read
// another's images nor be made to run what another pushes.
func (s *Service) ResolveImageIn(ctx context.Context, env, ref string) (string, error) {
	if r, ok, err := s.names.mapName(ref); err == nil && ok {
		owner, err := s.owners.Owner(ctx, r.repo)
		if err != nil {
			return "", err
		}
		if owner != "" && owner != env {
			return "", v1.NotFound("%q is in repository %s of environment %q; a workload of environment %q may use the images of its own repositories (%s/...) and the shared ones", ref, r.repo, owner, env, env)
		}
	}
	return s.ResolveImage(ctx, ref)
}

// pull fetches ref onto the node, once however many callers ask at once.
// The pull runs under PullTimeout, detached from any one caller; each
// caller waits at most until its ctx ends.
func (s *Service) pull(ctx context.Context, ref string) (runtime.Image, error) {
	if err := s.vetHost(ctx, ref); err != nil {
		return runtime.Image{}, err
	}
	ch := s.pulls.DoChan(ref, func() (any, error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		return s.node.PullImage(pctx, ref)
	})
	if s.waiting != nil {
		s.waiting(ref)
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return runtime.Image{}, res.Err
		}
		return res.Val.(runtime.Image), nil
	case <-ctx.Done():
		return runtime.Image{}, fmt.Errorf("%w: %w", v1.Unavailable("%s is still being pulled; try again", ref), ctx.Err())
	}
}

// vetHost refuses a pull from a registry host the egress policy denies;
// the built-in registry's own addresses are always allowed.
func (s *Service) vetHost(ctx context.Context, ref string) error {
	if s.checkHost == nil {
		return nil
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	host := reference.Domain(named)
	if s.names.own[host] {
		return nil
	}
	if err := s.checkHost(ctx, host); err != nil {
		return v1.Errorf(v1.ErrForbidden, "pull %s: %v", ref, err)
	}
	return nil
}

// ensureOnNode pulls repo@digest from the built-in registry into the
// node's containerd unless an image with that digest is there already.
func (s *Service) ensureOnNode(ctx context.Context, repo, digest string) error {
	if s.nodeless {
		return nil // a cluster's nodes pull it when they run it
	}
	pinned := s.names.pullRef(repo, digest)
	if _, err := s.node.ResolveImage(ctx, pinned); err == nil {
		return nil
	} else if !v1.IsNotFound(err) {
		return err
	}
	if _, err := s.pull(ctx, pinned); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("pull %s from the built-in registry: %w", pinned, err)
	}
	return nil
}

// Pull fetches ref from its registry onto the node.
func (s *Service) Pull(ctx context.Context, ref string) (v1.Image, error) {
	img, err := s.pull(ctx, ref)
	if err != nil {
		return v1.Image{}, err
	}
	return toAPIImage(img), nil
}

func toAPIImage(i runtime.Image) v1.Image {
	return v1.Image{Name: i.Name, Digest: i.Digest, Size: i.Size}
}

// check is Owners.Check, every repository shared when there are no owners.
func (s *Service) check(ctx context.Context, a Access, repo string, write bool) error {
	if s.owners == nil {
		return (&Owners{}).Check(ctx, a, repo, write)
	}
	return s.owners.Check(ctx, a, repo, write)
}

var errNoRegistry = errors.New("this server has no registry")
