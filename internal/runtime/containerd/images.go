package containerd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

// normalize turns short Docker names into what containerd stores
// ("echo:v1" → "docker.io/library/echo:v1", no tag → ":latest").
func normalize(ref string) (reference.Named, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	return named, nil
}

// lookupImage finds a local image by name, or by name@digest: then any
// local name of that repository (or, failing that, any name at all)
// pointing at the digest will do, since a digest names content, not a tag.
func (d *Driver) lookupImage(ctx context.Context, ref string) (client.Image, error) {
	named, err := normalize(ref)
	if err != nil {
		return nil, err
	}
	img, err := d.client.GetImage(ctx, named.String())
	if err == nil {
		return img, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, wrap(err, "image %s", ref)
	}
	if canonical, ok := named.(reference.Canonical); ok {
		list, err := d.client.ListImages(ctx, "target.digest=="+canonical.Digest().String())
		if err != nil {
			return nil, wrap(err, "image %s", ref)
		}
		repo := canonical.Name() + ":"
		for _, im := range list {
			if strings.HasPrefix(im.Name(), repo) {
				return im, nil
			}
		}
		if len(list) > 0 {
			return list[0], nil
		}
	}
	return nil, v1.NotFound("image %q is not present on this node; pull or import it first", ref)
}

func (d *Driver) ensureUnpacked(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, d.cfg.Snapshotter)
	if err != nil {
		return wrap(err, "image %s", img.Name())
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, d.cfg.Snapshotter); err != nil {
		return wrap(err, "unpack %s", img.Name())
	}
	return nil
}

func (d *Driver) imageInfo(ctx context.Context, img client.Image) (runtime.Image, error) {
	out := runtime.Image{Name: img.Name(), Digest: img.Target().Digest.String()}
	if size, err := img.Size(ctx); err == nil {
		out.Size = size
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return runtime.Image{}, wrap(err, "config of image %s", img.Name())
	}
	out.Entrypoint = spec.Config.Entrypoint
	out.Cmd = spec.Config.Cmd
	out.Env = spec.Config.Env
	out.WorkingDir = spec.Config.WorkingDir
	out.User = spec.Config.User
	return out, nil
}

// ResolveImage finds a local image; NotFound when absent.
func (d *Driver) ResolveImage(ctx context.Context, ref string) (runtime.Image, error) {
	ctx = d.ctx(ctx)
	img, err := d.lookupImage(ctx, ref)
	if err != nil {
		return runtime.Image{}, err
	}
	return d.imageInfo(ctx, img)
}

// PullImage fetches ref and unpacks it. Registries on localhost or
// 127.0.0.1 (the built-in one, in tests) are spoken to over plain HTTP.
func (d *Driver) PullImage(ctx context.Context, ref string) (runtime.Image, error) {
	ctx = d.ctx(ctx)
	named, err := normalize(ref)
	if err != nil {
		return runtime.Image{}, err
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	img, err := d.client.Pull(ctx, named.String(),
		client.WithResolver(resolver),
		client.WithPullUnpack,
		client.WithPullSnapshotter(d.cfg.Snapshotter),
	)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return runtime.Image{}, fmt.Errorf("%w: %v", v1.NotFound("image %q not found in its registry", ref), err)
		}
		return runtime.Image{}, fmt.Errorf("%w: %v", v1.Unavailable("pull %s", ref), err)
	}
	return d.imageInfo(ctx, img)
}

// ImportImage reads an OCI image layout or docker-save tarball and unpacks
// every image in it.
func (d *Driver) ImportImage(ctx context.Context, r io.Reader) ([]runtime.Image, error) {
	ctx = d.ctx(ctx)
	imgs, err := d.client.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", v1.Invalid("import image archive"), err)
	}
	if len(imgs) == 0 {
		return nil, v1.Invalid("image archive names no image (OCI layouts need an org.opencontainers.image.ref.name annotation)")
	}
	out := make([]runtime.Image, 0, len(imgs))
	for _, im := range imgs {
		img := client.NewImage(d.client, im)
		if err := d.ensureUnpacked(ctx, img); err != nil {
			return nil, err
		}
		info, err := d.imageInfo(ctx, img)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// ListImages returns every image in the namespace.
func (d *Driver) ListImages(ctx context.Context) ([]runtime.Image, error) {
	ctx = d.ctx(ctx)
	imgs, err := d.client.ListImages(ctx)
	if err != nil {
		return nil, wrap(err, "list images")
	}
	out := make([]runtime.Image, 0, len(imgs))
	for _, img := range imgs {
		info, err := d.imageInfo(ctx, img)
		if err != nil {
			// Other platforms, or content being garbage-collected: list
			// what is known rather than fail the whole list.
			info = runtime.Image{Name: img.Name(), Digest: img.Target().Digest.String()}
		}
		out = append(out, info)
	}
	return out, nil
}

// RemoveImage deletes the image's name; containerd collects the content
// and snapshots no other image or container uses.
func (d *Driver) RemoveImage(ctx context.Context, ref string) error {
	ctx = d.ctx(ctx)
	img, err := d.lookupImage(ctx, ref)
	if err != nil {
		return err
	}
	if err := d.client.ImageService().Delete(ctx, img.Name(), images.SynchronousDelete()); err != nil {
		return wrap(err, "remove image %s", ref)
	}
	return nil
}
