package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// retagged writes the docker-save archive src again, its image named ref.
func retagged(t *testing.T, src, ref string) string {
	t.Helper()
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

const ownedService = `apiVersion: berth.dev/v1
kind: Service
metadata: {name: app, environment: beta}
spec:
  image: beta/app:v1
  env:
    - {name: ROLLOUT, value: "%d"}
    - {name: DB_PASSWORD, valueFrom: {secret: {name: db, key: password}}}
`

// TestImageOwnershipAcrossEnvironments is issue 11's attack: a deployer of
// environment alpha rewrites the image environment beta deploys from, and
// beta's next ordinary apply runs alpha's image with beta's secrets.
// Repositories beta/... are beta's: alpha's token can neither tag, push
// (through the API or the registry's /v2/), nor remove there, and beta's
// next apply runs beta's image.
func TestImageOwnershipAcrossEnvironments(t *testing.T) {
	s := startServer(t)
	host := strings.TrimPrefix(s.client.Addr(), "http://")
	s.mustBerth("", "env", "create", "alpha")
	s.mustBerth("", "env", "create", "beta")
	s.mustBerth("", "secret", "set", "db", "password=beta-only-51f3", "-e", "beta")
	alphaTok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "alpha", "--role", "deployer", "--name", "alpha-ci"))
	betaTok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "beta", "--role", "deployer", "--name", "beta-ci"))
	as := func(tok string, args ...string) (string, string, int) {
		return s.berth("", append([]string{"--token", tok}, args...)...)
	}
	mustAs := func(tok string, args ...string) string {
		t.Helper()
		out, errOut, code := as(tok, args...)
		if code != 0 {
			t.Fatalf("berth %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	// Each pushes to its own environment's repository.
	mustAs(betaTok, "image", "push", retagged(t, imageV1, "beta/app:v1"))
	mustAs(alphaTok, "image", "push", retagged(t, imageV2, "alpha/evil:v1"))
	dir := t.TempDir()
	mustAs(betaTok, "apply", "-f", writeFile(t, dir, "app.yaml", fmt.Sprintf(ownedService, 1)), "--wait", "--timeout", "2m")
	good := s.service("beta", "app").Status.ImageDigest

	// The attack, every way in. Each must be refused (exit 4: forbidden).
	refused := func(what string, code int, errOut string) {
		t.Helper()
		if code != 4 || !strings.Contains(errOut, "beta") {
			t.Errorf("%s: exit %d, %s; want a refusal", what, code, errOut)
		}
	}
	_, errOut, code := as(alphaTok, "image", "tag", "alpha/evil:v1", "beta/app:v1")
	refused("alpha tagging its image as beta/app:v1", code, errOut)
	_, errOut, code = as(alphaTok, "image", "push", retagged(t, imageV2, "beta/app:v1"))
	refused("alpha pushing an archive named beta/app:v1", code, errOut)
	_, errOut, code = as(alphaTok, "image", "rm", "beta/app:v1")
	refused("alpha removing beta/app:v1", code, errOut)
	evil, err := tarball.ImageFromPath(imageV2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host+"/beta/app:v1", name.Insecure)
	alphaAuth := remote.WithAuth(&authn.Basic{Username: "berth", Password: alphaTok})
	if err := remote.Write(ref, evil, alphaAuth); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("alpha pushing to beta/app:v1 through /v2/: %v; want 403", err)
	}
	// Nor may alpha read beta's images with its token.
	if _, err := remote.Image(ref, alphaAuth); err == nil {
		t.Error("alpha's token pulled beta/app:v1")
	}
	if out := mustAs(alphaTok, "image", "ls"); strings.Contains(out, "beta/app") {
		t.Errorf("alpha's image list shows beta's repository:\n%s", out)
	}

	// Beta's next ordinary apply pins beta's own image.
	mustAs(betaTok, "apply", "-f", writeFile(t, dir, "app.yaml", fmt.Sprintf(ownedService, 2)), "--wait", "--timeout", "2m")
	testutil.WaitForState(t, 60*time.Second, "revision 2 of beta's app to answer", func() (bool, string) {
		code, body, err := s.gatewayGet("app.beta.berth.localhost", "/")
		return err == nil && code == 200 && strings.Contains(body, `"revision":"2"`), fmt.Sprintf("%d %v %s", code, err, body)
	})
	_, body, _ := s.gatewayGet("app.beta.berth.localhost", "/")
	if !strings.Contains(body, `"version":"v1"`) {
		t.Fatalf("beta's app runs another image after its apply: %s", body)
	}
	if got := s.service("beta", "app").Status.ImageDigest; got != good {
		t.Fatalf("beta's revision 2 pinned %s, beta pushed %s", got, good)
	}

	// Beta itself may move its tag.
	mustAs(betaTok, "image", "push", retagged(t, imageV2, "beta/app:v2"))
	mustAs(betaTok, "image", "tag", "beta/app:v2", "beta/app:v1")
}
