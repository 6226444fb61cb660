package testimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"berth.dev/berth/internal/build"
)

// DefaultPort is the port the echo image listens on when PORT is unset.
const DefaultPort = "8080"

// Options vary the image.
type Options struct {
	// Version is baked into the image env as VERSION and answered on "/".
	Version string
}

// Build writes a docker-save tarball of the echo image, tagged ref (e.g.
// "berth.test/echo:v1"), into outDir and returns its path. It is built the
// way `berth build` builds Go: the same code, so the tests exercise it.
func Build(ctx context.Context, outDir, ref string, opts Options) (string, error) {
	_, self, _, ok := goruntime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testimage: cannot locate the echo source")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	var env []string
	if opts.Version != "" {
		env = append(env, "VERSION="+opts.Version)
	}
	file := strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(ref) + ".tar"
	path := filepath.Join(outDir, file)
	err := build.GoToFile(ctx, build.GoOptions{
		Dir: filepath.Join(filepath.Dir(self), "echo"), Ref: ref, Env: env, Port: DefaultPort, Binary: "/echo",
	}, path)
	if err != nil {
		return "", fmt.Errorf("testimage: %w", err)
	}
	return path, nil
}
