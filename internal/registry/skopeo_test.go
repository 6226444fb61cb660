package registry

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestSkopeoRoundTrip pushes an OCI layout into the registry with skopeo,
// over plain HTTP on loopback with the token as password, pulls it back
// into another layout, and checks that the image is the same, byte for byte
// (same manifest digest).
func TestSkopeoRoundTrip(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		testutil.Skip(t, "skopeo not installed (Debian package skopeo)")
	}
	_, srv := newTestRegistry(t, nil)
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	p, err := layout.Write(src, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "v1"})); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), skopeo, append([]string{"--insecure-policy"}, args...)...)
		// Keep skopeo away from the host's files: its auth file, and its
		// blob-info cache, which as root it would create under
		// /var/lib/containers; these variables make containers/image treat
		// the process as rootless, so the cache goes to XDG_DATA_HOME.
		home := t.TempDir()
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home,
			"REGISTRY_AUTH_FILE="+filepath.Join(home, "auth.json"),
			"_CONTAINERS_USERNS_CONFIGURED=1", "_CONTAINERS_ROOTLESS_UID=65534")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ref := "docker://" + host + "/skopeo/app:v1"
	creds := "berth:" + testToken
	run("copy", "--dest-tls-verify=false", "--dest-creds", creds, "oci:"+src+":v1", ref)

	st, h, _ := do(t, srv, "HEAD", "/v2/skopeo/app/manifests/v1", nil)
	if st != 200 || h.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("registry has %d %q, want %s", st, h.Get("Docker-Content-Digest"), want)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	run("copy", "--src-tls-verify=false", "--src-creds", creds, ref, "oci:"+dst+":v1")
	b, err := os.ReadFile(filepath.Join(dst, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != want.String() {
		t.Fatalf("pulled layout index %s, want manifest %s", b, want)
	}
	// Every blob came back intact: skopeo verified digests as it wrote them,
	// and the layout holds all of them.
	for _, l := range mustLayers(t, img) {
		if _, err := os.Stat(filepath.Join(dst, "blobs", "sha256", l)); err != nil {
			t.Fatalf("layer %s missing from pulled layout: %v", l, err)
		}
	}
}

func mustLayers(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Hex)
	}
	return out
}
