package build

import (
	"archive/tar"
	"encoding/json"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "berth.dev/berth/api/v1"
)

var specsVersioned = specs.Versioned{SchemaVersion: 2}

// wasmConfig is the artifact's config: what the module is built for.
type wasmConfig struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	LayerDigests []string `json:"layerDigests"`
}

// WriteWasmArtifact writes module to out as an OCI image layout tarball
// holding one artifact named ref: a manifest with config
// v1.MediaTypeWasmConfig and one layer v1.MediaTypeWasmLayer, the module's
// bytes. Nothing in it depends on the time, so the same module gives the
// same digest. It returns the manifest's digest.
func WriteWasmArtifact(ref string, module []byte, out io.Writer) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", v1.FieldError("tag", "%q is not an image name: %v", ref, err)
	}
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return "", v1.Invalid("not a WebAssembly module (no \\0asm header)")
	}
	layer := ocispec.Descriptor{MediaType: v1.MediaTypeWasmLayer, Digest: digest.FromBytes(module), Size: int64(len(module))}
	cfg, _ := json.Marshal(wasmConfig{Architecture: "wasm", OS: "wasip1", LayerDigests: []string{layer.Digest.String()}})
	manifest, _ := json.Marshal(ocispec.Manifest{
		Versioned: specsVersioned,
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: v1.MediaTypeWasmConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{layer},
	})
	md := digest.FromBytes(manifest)
	// The name as the registry's importer reads it: a full reference,
	// Docker Hub's default host left out.
	full := strings.TrimPrefix(tag.Name(), "index.docker.io/")
	full = strings.TrimPrefix(full, "library/")
	index, _ := json.Marshal(ocispec.Index{
		Versioned: specsVersioned,
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(manifest)),
			ArtifactType: v1.MediaTypeWasmConfig,
			Annotations: map[string]string{
				"io.containerd.image.name": full,
				ocispec.AnnotationRefName:  full,
			},
		}},
	})
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})

	tw := tar.NewWriter(out)
	file := func(p string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	blob := func(b []byte) error {
		return file("blobs/sha256/"+digest.FromBytes(b).Encoded(), b)
	}
	for _, step := range []func() error{
		func() error { return file(ocispec.ImageLayoutFile, layout) },
		func() error { return file(ocispec.ImageIndexFile, index) },
		func() error { return blob(manifest) },
		func() error { return blob(cfg) },
		func() error { return blob(module) },
		tw.Close,
	} {
		if err := step(); err != nil {
			return "", err
		}
	}
	return md.String(), nil
}
