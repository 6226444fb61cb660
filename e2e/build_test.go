package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"berth.dev/berth/internal/testutil"
)

// berthIn runs the CLI in dir (init writes ./NAME).
func (s *server) berthIn(dir string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.run(dir, "", args...)
}

func (s *server) mustBerthIn(dir string, args ...string) string {
	s.t.Helper()
	return s.mustRun(dir, "", args...)
}

// TestInitBuildApply is the whole loop for each runtime: berth init writes
// a function, berth build (or deploy) makes its image without Docker, and
// the function answers through the gateway at its own host. Python and
// Node run on Debian bases built once per machine (minutes the first
// time, cached after).
func TestInitBuildApply(t *testing.T) {
	s := startServer(t)
	work := t.TempDir()
	for _, rt := range []string{"go", "python", "node"} {
		t.Run(rt, func(t *testing.T) {
			fn := "hello-" + rt
			s.mustBerthIn(work, "init", "--runtime", rt, fn)
			dir := filepath.Join(work, fn)
			start := time.Now()
			var out, errOut string
			var code int
			if rt == "node" {
				// deploy = build + apply with the digest, in one step.
				out, errOut, code = s.berthIn(work, "deploy", fn, "--wait", "--timeout", "3m")
			} else {
				out, errOut, code = s.berthIn(work, "build", fn, "-t", fn+":v1")
			}
			if code != 0 && strings.Contains(errOut, "cannot reach the Debian mirror") {
				t.Skipf("the %s base image cannot be built here: %s", rt, strings.TrimSpace(errOut))
			}
			if code != 0 {
				t.Fatalf("build %s: exit %d\nstdout: %s\nstderr: %s", rt, code, out, errOut)
			}
			t.Logf("%s: build took %s", rt, time.Since(start).Round(100*time.Millisecond))
			if strings.Contains(errOut, "first time only") {
				t.Logf("%s: built the base image (first time on this machine)", rt)
			}
			if rt != "node" {
				if !strings.Contains(out, "built "+fn+":v1 sha256:") {
					t.Fatalf("build output: %q", out)
				}
				s.mustBerth("", "apply", "-f", filepath.Join(dir, "berth.yaml"), "--wait", "--timeout", "2m")
			} else if !strings.Contains(out, "function/"+fn) {
				t.Fatalf("deploy output: %q (stderr %q)", out, errOut)
			}
			var body string
			testutil.WaitForState(t, 90*time.Second, fn+" answering through the gateway", func() (bool, string) {
				code, b, err := s.gatewayGet(fn+".default.berth.localhost", "/")
				body = b
				return err == nil && code == 200, fmt.Sprintf("%d %v %s", code, err, b)
			})
			var got map[string]string
			if err := json.Unmarshal([]byte(body), &got); err != nil || got["message"] != "Hello from "+fn || got["runtime"] != rt || got["revision"] != "1" {
				t.Fatalf("answer: %s (%v)", body, err)
			}
			// Same source, same digest: a second build changes nothing.
			if rt != "node" {
				again := s.mustBerthIn(work, "build", fn, "-t", fn+":v1")
				if again != out {
					t.Fatalf("rebuild of the same source differs:\n%s\n%s", out, again)
				}
			}
		})
	}
}

// TestBuildErrorsAreClean: an unsupported runtime and a compile error are
// messages for the user, not stack traces.
func TestBuildErrorsAreClean(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeFile(t, dir, "go.mod", "module broken\n\ngo 1.22\n")
	writeFile(t, dir, "main.go", "package main\n\nfunc main() { notDefined() }\n")
	_, errOut, code := s.berth("", "build", dir, "-t", "broken:v1", "--runtime", "ruby")
	if code == 0 || !strings.Contains(errOut, `unsupported runtime "ruby"; supported: go, node, python`) || strings.Contains(errOut, "goroutine") {
		t.Fatalf("bad runtime: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = s.berth("", "build", dir, "-t", "broken:v1")
	if code == 0 || !strings.Contains(errOut, "undefined: notDefined") || strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
		t.Fatalf("compile error: exit %d, stderr %q", code, errOut)
	}
	empty := t.TempDir()
	_, errOut, code = s.berth("", "build", empty, "-t", "x:v1")
	if code == 0 || !strings.Contains(errOut, "--runtime") {
		t.Fatalf("nothing to build: exit %d, stderr %q", code, errOut)
	}
}

type imageRow struct {
	Name, Repository, Tag, Digest string
	Registry, Node                bool
}

func (s *server) images() []imageRow {
	s.t.Helper()
	var rows []imageRow
	if err := json.Unmarshal([]byte(s.mustBerth("", "image", "ls", "-o", "json")), &rows); err != nil {
		s.t.Fatal(err)
	}
	return rows
}

func findImage(rows []imageRow, repo, tag string) (imageRow, bool) {
	for _, r := range rows {
		if r.Repository == repo && r.Tag == tag {
			return r, true
		}
	}
	return imageRow{}, false
}

// TestImagesFlowThroughTheRegistry: import lands in the registry and on
// the node with one digest; containerd-style pulls by 127.0.0.1:PORT work;
// push stores in the registry only, and a manifest naming the image
// without a host gets it from the registry, the node pulling it on the way.
func TestImagesFlowThroughTheRegistry(t *testing.T) {
	s := startServer(t)
	host := strings.TrimPrefix(s.client.Addr(), "http://")

	s.mustBerth("", "image", "import", imageV1)
	row, ok := findImage(s.images(), "berth.test/echo", "v1")
	if !ok || !row.Registry || !row.Node {
		t.Fatalf("imported image not listed in the registry and on the node: %+v", s.images())
	}
	ref, _ := name.ParseReference(host+"/berth.test/echo:v1", name.Insecure)
	img, err := remote.Image(ref) // anonymous, from loopback
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if d, _ := img.Digest(); d.String() != row.Digest {
		t.Fatalf("registry serves %s, ls says %s", d, row.Digest)
	}

	// push: registry only, not unpacked on the node.
	out := s.mustBerth("", "image", "push", imageV2)
	if !strings.Contains(out, "pushed berth.test/echo:v2 sha256:") {
		t.Fatalf("push output: %q", out)
	}
	v2, ok := findImage(s.images(), "berth.test/echo", "v2")
	if !ok || !v2.Registry || v2.Node {
		t.Fatalf("pushed image: %+v", v2)
	}
	// A name without a host, in another repository.
	out = s.mustBerth("", "image", "tag", "berth.test/echo:v2", "echo:v2")
	if !strings.Contains(out, "tagged echo:v2 "+v2.Digest) {
		t.Fatalf("tag output: %q", out)
	}
	s.mustBerth(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: plain}
spec: {image: "echo:v2"}
`, "apply", "-f", "-", "--wait", "--timeout", "2m")
	code, body, err := s.gatewayGet("plain.default.berth.localhost", "/")
	if err != nil || code != 200 || !strings.Contains(body, `"version":"v2"`) {
		t.Fatalf("service from the registry by a short name: %d %v %s", code, err, body)
	}
	if got := s.service("default", "plain").Status.ImageDigest; got != v2.Digest {
		t.Fatalf("revision pinned %s, registry has %s", got, v2.Digest)
	}
	if r, _ := findImage(s.images(), "echo", "v2"); !r.Node {
		t.Fatalf("the node did not pull echo:v2: %+v", r)
	}

	s.mustBerth("", "image", "rm", "echo:v2")
	if _, ok := findImage(s.images(), "echo", "v2"); ok {
		t.Fatal("echo:v2 still listed after rm")
	}
	_, errOut, code2 := s.berth("", "image", "rm", "echo:v2")
	if code2 == 0 || !strings.Contains(errOut, "not") {
		t.Fatalf("second rm: exit %d %q", code2, errOut)
	}

	// A Docker Hub name that is nowhere: the service says why and where
	// to put the image (there is no internet here; with it, the pull
	// would be tried first).
	s.mustBerth(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: nowhere}
spec: {image: "no-such-image:v1"}
`, "apply", "-f", "-")
	testutil.WaitForState(t, 90*time.Second, "the missing image reported", func() (bool, string) {
		svc := s.service("default", "nowhere")
		for _, c := range svc.Status.Conditions {
			if c.Reason == "ImageNotFound" {
				return strings.Contains(c.Message, "not in the built-in registry") && strings.Contains(c.Message, "berth image push"), c.Message
			}
		}
		return false, fmt.Sprintf("%+v", svc.Status.Conditions)
	})
}
