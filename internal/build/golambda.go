package build

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
)

// bridgeSource is the Lambda Runtime API bridge (lambdabridge/main.go):
// standard library only, so it compiles from this one file wherever the
// go toolchain builds the handler.
//
//go:embed lambdabridge/main.go
var bridgeSource []byte

// Paths of a go-lambda image's two programs.
const (
	lambdaBridgePath  = "/berth-lambda"
	lambdaHandlerPath = "/handler"
)

// goLambdaImage builds a Go Lambda handler (aws-lambda-go's lambda.Start)
// into an image whose entrypoint is the bridge: it serves the Lambda
// Runtime API to the handler and turns the instance's HTTP requests into
// its invocations, so the handler runs unchanged.
func goLambdaImage(ctx context.Context, opts Options) (ggcr.Image, error) {
	handler, err := compileGo(ctx, opts.Dir, opts.Progress)
	if err != nil {
		return nil, err
	}
	bridge, err := compileBridge(ctx)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfsWith(map[string][]byte{lambdaBridgePath[1:]: bridge, lambdaHandlerPath[1:]: handler})
	if err != nil {
		return nil, err
	}
	layer, err := layerOf(layerTar)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return assemble([]ggcr.Layer{layer}, opts.Port, imageConfig{
		entrypoint: []string{lambdaBridgePath, lambdaHandlerPath}, env: []string{"PATH=/"}, workdir: "/",
	}, opts.Env)
}

func compileBridge(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "berth-lambda-bridge-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), bridgeSource, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module berth.dev/lambdabridge\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	bin, err := compileGo(ctx, dir, nil)
	if err != nil {
		return nil, fmt.Errorf("the Lambda Runtime API bridge: %w", err)
	}
	return bin, nil
}

// rootfsWith is rootfs with several programs.
func rootfsWith(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{lambdaBridgePath[1:], lambdaHandlerPath[1:]} {
		b, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
