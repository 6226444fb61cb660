package build

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// A handler written for AWS Lambda builds as it is: the image runs the
// bridge, which runs the handler (lambdabridge's tests run the two).
func TestGoLambdaImage(t *testing.T) {
	dir := filepath.Join("testdata", "golambda")
	if rt, err := Detect(dir); err != nil || rt != RuntimeGoLambda {
		t.Fatalf("Detect = %s, %v; want go-lambda", rt, err)
	}
	res, tarBytes := build(t, dir, "")
	if res.Runtime != RuntimeGoLambda {
		t.Fatalf("built as %s", res.Runtime)
	}
	tag, _ := name.NewTag("f:v1")
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/berth-lambda /handler" {
		t.Errorf("entrypoint %q", got)
	}
	layers, _ := img.Layers()
	rc, _ := layers[0].Uncompressed()
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			head := make([]byte, 4)
			io.ReadFull(tr, head)
			if string(head) != "\x7fELF" {
				t.Errorf("%s is not a program", h.Name)
			}
		}
	}
	if got := strings.Join(names, " "); got != "etc/ tmp/ berth-lambda handler" {
		t.Errorf("layer holds %s", got)
	}
	// Reproducible, as every build.
	if res2, _ := build(t, dir, RuntimeGoLambda); res2.Digest != res.Digest {
		t.Errorf("digests %s and %s", res.Digest, res2.Digest)
	}
}
