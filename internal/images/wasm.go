package images

import (
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "berth.dev/berth/api/v1"
)

// WasmModule returns the module of a Wasm function's image: ref pinned to
// digest, in the built-in registry, in a repository environment env may
// use. The manifest must be a Wasm artifact (config MediaTypeWasmConfig,
// one layer MediaTypeWasmLayer); anything else is Invalid with a message
// saying how to push one. max bounds the module's size.
func (s *Service) WasmModule(ctx context.Context, env, ref, digest string, max int64) ([]byte, error) {
	r, ok, err := s.names.mapName(ref)
	if err != nil {
		return nil, err
	}
	if !ok || s.reg == nil {
		return nil, v1.NotFound("%q is not in the built-in registry: a Wasm function's module must be pushed there (berth build --runtime go-wasm)", ref)
	}
	if owner, err := s.owners.Owner(ctx, r.repo); err != nil {
		return nil, err
	} else if owner != "" && owner != env {
		return nil, v1.NotFound("%q is in repository %s of environment %q, not usable from environment %q", ref, r.repo, owner, env)
	}
	mt, body, err := s.reg.ReadManifest(ctx, r.repo, digest)
	if err != nil {
		return nil, err
	}
	if mt != ocispec.MediaTypeImageManifest {
		return nil, v1.Invalid("%s is a %s, not a Wasm module: push the module as an OCI artifact with config %s and one layer %s (berth build --runtime go-wasm does)", ref, mt, v1.MediaTypeWasmConfig, v1.MediaTypeWasmLayer)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, v1.Invalid("manifest of %s: %v", ref, err)
	}
	if m.Config.MediaType != v1.MediaTypeWasmConfig {
		return nil, v1.Invalid("%s is not a Wasm module: its config is %q, not %s (a container image cannot run with runtime: wasm)", ref, m.Config.MediaType, v1.MediaTypeWasmConfig)
	}
	var layer *ocispec.Descriptor
	for i, l := range m.Layers {
		if l.MediaType == v1.MediaTypeWasmLayer {
			if layer != nil {
				return nil, v1.Invalid("%s holds more than one %s layer; a Wasm function is one module", ref, v1.MediaTypeWasmLayer)
			}
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return nil, v1.Invalid("%s has no %s layer", ref, v1.MediaTypeWasmLayer)
	}
	if layer.Size > max {
		return nil, v1.Invalid("the module of %s is %d bytes; the most a Wasm function may be is %d", ref, layer.Size, max)
	}
	b, err := s.reg.ReadBlob(ctx, r.repo, layer.Digest.String(), max)
	if err != nil {
		return nil, fmt.Errorf("module of %s: %w", ref, err)
	}
	return b, nil
}
