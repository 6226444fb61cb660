package build

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/atomicfile"
)

// GoOptions say what to build.
type GoOptions struct {
	// Dir is the main package's directory.
	Dir string
	// Ref names the image, e.g. "hello:v1" or "berth.dev/examples/hello:v1".
	Ref string
	// Env is baked into the image config, KEY=VALUE.
	Env []string
	// Port is the default PORT (8080).
	Port string
	// Binary is where the program goes in the image (default /app).
	Binary string
	// Output receives the compiler's messages; nil discards them.
	Output io.Writer
}

// epoch is every timestamp in a built image, for reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// Go compiles the package in opts.Dir and writes a docker-save tarball of
// the image to out. The binary is opts.Binary (/app); /tmp and /etc exist.
func Go(ctx context.Context, opts GoOptions, out io.Writer) error {
	tag, err := name.NewTag(opts.Ref)
	if err != nil {
		return v1.FieldError("tag", "%q is not an image name: %v", opts.Ref, err)
	}
	img, err := goImage(ctx, opts)
	if err != nil {
		return err
	}
	return tarball.Write(tag, img, out)
}

// GoToFile is Go writing to path, replaced whole (see atomicfile).
func GoToFile(ctx context.Context, opts GoOptions, path string) error {
	return atomicfile.Write(path, imageFileMode, func(w io.Writer) error { return Go(ctx, opts, w) })
}

func goImage(ctx context.Context, opts GoOptions) (ggcr.Image, error) {
	bin, err := compileGo(ctx, opts.Dir, opts.Output)
	if err != nil {
		return nil, err
	}
	return imageOf(bin, opts)
}

func compileGo(ctx context.Context, dir string, progress io.Writer) ([]byte, error) {
	return compileGoFor(ctx, dir, progress, "linux", goruntime.GOARCH)
}

// compileGoFor builds the main package in dir for goos/goarch.
func compileGoFor(ctx context.Context, dir string, progress io.Writer, goos, goarch string) ([]byte, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, v1.FieldError("path", "%s is not a directory", dir)
	}
	tmp, err := os.MkdirTemp("", "berth-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "app")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	err = cmd.Run()
	if progress != nil && msg.Len() > 0 && err == nil {
		progress.Write(msg.Bytes())
	}
	if err != nil {
		if _, lookErr := exec.LookPath("go"); lookErr != nil {
			return nil, v1.Unavailable("building Go needs the go toolchain on PATH")
		}
		return nil, v1.Invalid("go build failed in %s:\n%s", dir, strings.TrimSpace(msg.String()))
	}
	return os.ReadFile(bin)
}

func imageOf(bin []byte, opts GoOptions) (ggcr.Image, error) {
	if opts.Binary == "" {
		opts.Binary = "/app"
	}
	layerTar, err := rootfs(bin, strings.TrimPrefix(opts.Binary, "/"))
	if err != nil {
		return nil, err
	}
	layer, err := layerOf(layerTar)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return assemble([]ggcr.Layer{layer}, opts.Port, imageConfig{
		entrypoint: []string{opts.Binary}, env: []string{"PATH=/"}, workdir: "/",
	}, opts.Env)
}

// rootfs is the image's one layer: the binary, a sticky /tmp, and /etc for
// the hosts and resolv.conf files the runtime mounts.
func rootfs(bin []byte, binPath string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch},
		{Name: binPath, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
