package server

import (
	"context"
	"io"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

// imageService adapts the runtime driver to what the API server and the
// service controller need of images.
type imageService struct {
	driver runtime.Driver
}

func toAPIImage(i runtime.Image) v1.Image {
	return v1.Image{Name: i.Name, Digest: i.Digest, Size: i.Size}
}

func (s *imageService) Import(ctx context.Context, r io.Reader) ([]v1.Image, error) {
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

func (s *imageService) List(ctx context.Context) ([]v1.Image, error) {
	imgs, err := s.driver.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Image, len(imgs))
	for i, img := range imgs {
		out[i] = toAPIImage(img)
	}
	return out, nil
}

func (s *imageService) Pull(ctx context.Context, ref string) (v1.Image, error) {
	img, err := s.driver.PullImage(ctx, ref)
	if err != nil {
		return v1.Image{}, err
	}
	return toAPIImage(img), nil
}

func (s *imageService) Remove(ctx context.Context, ref string) error {
	return s.driver.RemoveImage(ctx, ref)
}

// ResolveImage pins a revision's image: the local image if there is one,
// else a pull from its registry.
func (s *imageService) ResolveImage(ctx context.Context, ref string) (string, error) {
	img, err := s.driver.ResolveImage(ctx, ref)
	if err == nil {
		return img.Digest, nil
	}
	if !v1.IsNotFound(err) {
		return "", err
	}
	img, perr := s.driver.PullImage(ctx, ref)
	if perr != nil {
		return "", v1.NotFound("not found locally (import it with `berth image import FILE`) and pull failed: %v", perr)
	}
	return img.Digest, nil
}
