package build

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"
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
	img, cf := builtImage(t, tarBytes)
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/berth-lambda /handler" {
		t.Errorf("entrypoint %q", got)
	}
	var names []string
	for _, e := range layerEntries(t, img, 0) {
		names = append(names, e.hdr.Name)
		if e.hdr.Typeflag == tar.TypeReg && !strings.HasPrefix(string(e.data), "\x7fELF") {
			t.Errorf("%s is not a program", e.hdr.Name)
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
