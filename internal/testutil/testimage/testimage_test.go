package testimage_test

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"berth.dev/berth/internal/testutil/testimage"
)

func TestBuild(t *testing.T) {
	path, err := testimage.Build(context.Background(), t.TempDir(), "berth.test/echo:v1", testimage.Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/echo" {
		t.Errorf("entrypoint = %q", cf.Config.Entrypoint)
	}
	env := map[string]bool{}
	for _, e := range cf.Config.Env {
		env[e] = true
	}
	if !env["PORT=8080"] || !env["VERSION=v1"] {
		t.Errorf("env = %q", cf.Config.Env)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
}
