package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// TestKill9Reattach: a server killed with SIGKILL comes back on the same
// data dir, re-attaches to the containers it left (they are not
// restarted), and its state is intact.
func TestKill9Reattach(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	manifest := fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: keep}
spec:
  image: %s
  replicas: 2
`, echoV1)
	s.mustBerth(manifest, "apply", "-f", "-", "--wait", "--timeout", "2m")
	before := s.service("default", "keep")
	if len(before.Status.Instances) != 2 {
		t.Fatalf("before: %s", instancesOf(before))
	}
	// Each instance answers with its hostname, which is its instance name.
	for _, i := range before.Status.Instances {
		code, body, err := direct(http.MethodGet, i.IP, i.Port, "/")
		if err != nil || code != 200 || !strings.Contains(body, i.Name) {
			t.Fatalf("instance %s before the kill: %d %v %s", i.Name, code, err, body)
		}
	}

	s.kill9()
	// While the server is down the containers keep serving.
	for _, i := range before.Status.Instances {
		if code, _, err := direct(http.MethodGet, i.IP, i.Port, "/"); err != nil || code != 200 {
			t.Fatalf("instance %s while the server is down: %d %v", i.Name, code, err)
		}
	}
	s.start()

	after := s.service("default", "keep")
	if after.Metadata.Generation != before.Metadata.Generation || after.Status.Revision != before.Status.Revision {
		t.Fatalf("state changed across the restart: generation %d→%d revision %d→%d",
			before.Metadata.Generation, after.Metadata.Generation, before.Status.Revision, after.Status.Revision)
	}
	testutil.WaitForState(t, 30*time.Second, "the gateway to serve after the restart", func() (bool, string) {
		code, body, err := s.gatewayGet("keep.default.berth.localhost", "/")
		return err == nil && code == 200, fmt.Sprint(code, err, body)
	})
	after = s.service("default", "keep")
	if len(after.Status.Instances) != 2 {
		t.Fatalf("after: %s", instancesOf(after))
	}
	for n, i := range after.Status.Instances {
		b := before.Status.Instances[n]
		if i.Name != b.Name || i.Restarts != 0 || !i.StartedAt.Equal(b.StartedAt) || i.IP != b.IP {
			t.Fatalf("instance was restarted or replaced across the server restart:\nbefore %s\nafter  %s", instancesOf(before), instancesOf(after))
		}
	}
	// And it is still under control: a scale-down works.
	s.mustBerth(strings.Replace(manifest, "replicas: 2", "replicas: 1", 1), "apply", "-f", "-", "--wait", "--timeout", "2m")
	testutil.WaitForState(t, 30*time.Second, "scale down to 1", func() (bool, string) {
		insts, err := s.client.List(context.Background(), v1.KindInstance, "default")
		return err == nil && len(insts) == 1, fmt.Sprint(len(insts))
	})
}

// TestBadInput: every malformed request gets a precise error and changes
// nothing.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	good := `apiVersion: berth.dev/v1
kind: Service
metadata: {name: good}
spec: {image: berth.test/echo:v1}
`
	cases := []struct {
		name, content string
		code          int
		want          []string
	}{
		{"malformed yaml", "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: x\n", 3, []string{"bad.yaml"}},
		{"unknown field", "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: x}\nspec:\n  image: a\n  replicaz: 3\n", 3, []string{"bad.yaml", "spec.replicaz"}},
		{"bad name", "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {image: a}\n", 3, []string{"metadata.name"}},
		{"error in the second document", good + "---\napiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: y}\nspec: {image: a, port: 70000}\n", 3, []string{"document 2", "spec.port"}},
		{"unknown kind", "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata: {name: x}\n", 3, []string{"Deployment"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := writeFile(t, dir, "bad.yaml", c.content)
			out, errOut, code := s.berth("", "apply", "-f", f)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Fatalf("error lacks %q: %s", w, errOut)
				}
			}
		})
	}
	// Nothing of the good first document was applied.
	if _, _, code := s.berth("", "get", "service", "good"); code != 5 {
		t.Fatalf("a file with a bad document applied its good one (get exit %d)", code)
	}

	t.Run("missing environment", func(t *testing.T) {
		_, errOut, code := s.berth("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: x, environment: nowhere}\nspec: {image: a}\n", "apply", "-f", "-")
		if code != 5 || !strings.Contains(errOut, "nowhere") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})

	t.Run("missing image", func(t *testing.T) {
		s.mustBerth("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: noimg}\nspec: {image: berth.test/absent:v9}\n", "apply", "-f", "-")
		testutil.WaitForState(t, 30*time.Second, "the status to name the missing image", func() (bool, string) {
			svc := s.service("default", "noimg")
			for _, c := range svc.Status.Conditions {
				if c.Reason == "ImageNotFound" && strings.Contains(c.Message, "berth.test/absent:v9") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", svc.Status.Conditions)
		})
	})

	t.Run("oversized body", func(t *testing.T) {
		big := strings.Repeat("x", 5<<20)
		body := `{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"big"},"spec":{"image":"a","env":[{"name":"A","value":"` + big + `"}]}}`
		req, _ := http.NewRequest(http.MethodPut, s.client.Addr()+"/api/v1/environments/default/services/big", strings.NewReader(body))
		tok, _ := os.ReadFile(s.dataDir + "/token")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})

	t.Run("no token", func(t *testing.T) {
		resp, err := httpClient.Get(s.client.Addr() + "/api/v1/environments/default/services")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})

	t.Run("token file is private", func(t *testing.T) {
		st, err := os.Stat(s.dataDir + "/token")
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v %v", st.Mode(), err)
		}
	})

	// The server survived all of it.
	if err := s.client.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestServerStartErrors: a server that cannot start says why and exits
// non-zero, without touching the running one.
func TestServerStartErrors(t *testing.T) {
	s := startServer(t)
	busyAPI := strings.TrimPrefix(s.client.Addr(), "http://")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"API port in use", []string{"--data-dir", t.TempDir(), "--api", busyAPI, "--gateway", "127.0.0.1:0"}, busyAPI},
		{"gateway port in use", []string{"--data-dir", t.TempDir(), "--api", "127.0.0.1:0", "--gateway", s.gateway}, s.gateway},
		{"data dir in use", []string{"--data-dir", s.dataDir, "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"}, "in use"},
		{"relative data dir", []string{"--data-dir", "rel/dir"}, "absolute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"server", "--containerd-socket", socket}, c.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, berthBin, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("server started; output:\n%s", out)
			}
			if ctx.Err() != nil {
				t.Fatalf("server did not exit: %s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("error does not mention %q:\n%s", c.want, out)
			}
		})
	}
	if err := s.client.Health(context.Background()); err != nil {
		t.Fatalf("the running server was disturbed: %v", err)
	}
}
