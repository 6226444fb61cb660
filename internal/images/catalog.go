package images

import (
	"context"
	"sort"

	v1 "berth.dev/berth/api/v1"
)

// List is Catalog without where each image is.
func (s *Service) List(ctx context.Context, a Access) ([]v1.Image, error) {
	entries, err := s.Catalog(ctx, a)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Image, len(entries))
	for i, e := range entries {
		out[i] = v1.Image{Name: e.Name, Digest: e.Digest, Size: e.Size}
	}
	return out, nil
}

// Catalog is the registry's images that a may read, each marked when the
// node has it unpacked, then the node's images the registry does not have.
func (s *Service) Catalog(ctx context.Context, a Access) ([]v1.ImageEntry, error) {
	node, err := s.node.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	onNode := map[string]bool{}
	for _, img := range node {
		onNode[img.Digest] = true
	}
	var out []v1.ImageEntry
	inRegistry := map[string]bool{}
	if s.reg != nil {
		imgs, err := s.reg.List(ctx)
		if err != nil {
			return nil, err
		}
		readable := map[string]bool{}
		for _, img := range imgs {
			// An image hidden from the caller still hides its node copy:
			// the node list must not leak what the registry list keeps.
			inRegistry[img.Digest] = true
			ok, seen := readable[img.Repository]
			if !seen {
				ok = s.check(ctx, a, img.Repository, false) == nil
				readable[img.Repository] = ok
			}
			if !ok {
				continue
			}
			out = append(out, v1.ImageEntry{
				Name: img.Repository + ":" + img.Tag, Repository: img.Repository, Tag: img.Tag,
				Digest: img.Digest, Size: img.Size, Registry: true, Node: onNode[img.Digest],
			})
		}
	}
	var nodeOnly []v1.ImageEntry
	for _, img := range node {
		if inRegistry[img.Digest] {
			continue
		}
		nodeOnly = append(nodeOnly, v1.ImageEntry{Name: img.Name, Digest: img.Digest, Size: img.Size, Node: true})
	}
	sort.Slice(nodeOnly, func(i, j int) bool { return nodeOnly[i].Name < nodeOnly[j].Name })
	return append(out, nodeOnly...), nil
}

// Remove deletes ref from the registry (a tag, or a manifest by digest) and
// from the node; NotFound only when it is in neither. a must allow writing
// ref's repository; images only on the node are the admin's.
func (s *Service) Remove(ctx context.Context, a Access, ref string) error {
	r, ok, err := s.names.mapName(ref)
	if err != nil {
		return err
	}
	if ok {
		if err := s.check(ctx, a, r.repo, true); err != nil {
			return err
		}
	} else if !a.Admin {
		return v1.Errorf(v1.ErrForbidden, "%q is not a name of the built-in registry; removing images only on the node needs an admin token for all environments", ref)
	}
	found := false
	if ok {
		if img, there, err := s.lookup(ctx, r); err != nil {
			return err
		} else if there {
			if err := s.reg.Delete(ctx, r.repo, r.ref()); err != nil {
				return err
			}
			found = true
			// The node's copy pulled from here goes too.
			_ = s.node.RemoveImage(ctx, s.names.pullRef(r.repo, img.Digest))
		}
	}
	err = s.node.RemoveImage(ctx, ref)
	switch {
	case err == nil:
		return nil
	case v1.IsNotFound(err) && found:
		return nil
	}
	return err
}

// Tag makes target name, in the registry, the image source names there. a
// must allow reading source's repository and writing target's. Across
// repositories the content is linked, not copied.
func (s *Service) Tag(ctx context.Context, a Access, source, target string) (v1.Image, error) {
	src, ok, err := s.names.mapName(source)
	if err != nil {
		return v1.Image{}, err
	}
	if s.reg == nil {
		return v1.Image{}, v1.Unavailable("%v", errNoRegistry)
	}
	if !ok {
		return v1.Image{}, v1.FieldError("source", "%q is not a name in the built-in registry", source)
	}
	dst, ok, err := s.names.mapName(target)
	if err != nil {
		return v1.Image{}, err
	}
	if !ok || dst.digest != "" {
		return v1.Image{}, v1.FieldError("target", "%q must be a name with a tag, without another registry's host", target)
	}
	if err := s.check(ctx, a, src.repo, false); err != nil {
		return v1.Image{}, err
	}
	if err := s.check(ctx, a, dst.repo, true); err != nil {
		return v1.Image{}, err
	}
	img, found, err := s.lookup(ctx, src)
	if err != nil {
		return v1.Image{}, err
	}
	if !found {
		return v1.Image{}, v1.NotFound("%q is not in the built-in registry (berth image ls lists what is)", source)
	}
	got, err := s.reg.Copy(ctx, src.repo, img.Digest, dst.repo, dst.tag)
	if err != nil {
		return v1.Image{}, err
	}
	return v1.Image{Name: dst.String(), Digest: got.Digest, Size: got.Size}, nil
}
