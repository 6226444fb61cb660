package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestDeployFromBuiltInRegistry: an image pushed to the server's own
// registry (/v2/ on the API address, the admin token as password) is pulled
// by containerd when a Service names it.
func TestDeployFromBuiltInRegistry(t *testing.T) {
	s := startServer(t)
	host := strings.TrimPrefix(s.client.Addr(), "http://")
	img, err := tarball.ImageFromPath(imageV1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/team/echo:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(s.dataDir + "/token")
	auth := &authn.Basic{Username: "berth", Password: strings.TrimSpace(string(tok))}
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push to the built-in registry: %v", err)
	}
	// Without credentials a push is refused.
	other, _ := name.ParseReference(host+"/team/other:v1", name.Insecure)
	if err := remote.Write(other, img); err == nil {
		t.Fatal("an anonymous push was accepted")
	}
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: pulled}
spec: {image: "%s/team/echo:v1"}
`, host), "apply", "-f", "-", "--wait", "--timeout", "2m")
	code, body, err := s.gatewayGet("pulled.default.berth.localhost", "/")
	if err != nil || code != 200 || !strings.Contains(body, `"version":"v1"`) {
		t.Fatalf("service from the registry: %d %v %s", code, err, body)
	}
	want, _ := img.Digest()
	if got := s.service("default", "pulled").Status.ImageDigest; got != want.String() {
		t.Fatalf("revision pinned %s, pushed %s", got, want)
	}
}
