package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/testutil"
)

const echoService = `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: echo
spec:
  image: %s
  replicas: 3
  port: 8080
  readinessProbe:
    httpGet: {path: /ready}
    periodSeconds: 1
  livenessProbe:
    httpGet: {path: /healthz}
    periodSeconds: 1
    failureThreshold: 2
  volumes:
    - name: data
      mountPath: /data
  strategy: {maxSurge: 1, maxUnavailable: 0}
  terminationGracePeriodSeconds: 5
  route: {path: /echo, stripPrefix: true}
`

func instancesOf(svc *v1.Service) string {
	var b strings.Builder
	for _, i := range svc.Status.Instances {
		fmt.Fprintf(&b, "[%s rev=%d %s ready=%v restarts=%d exit=%+v] ", i.Name, i.Revision, i.Phase, i.Ready, i.Restarts, i.LastExit)
	}
	return fmt.Sprintf("ready=%d/%d updated=%d rev=%d %s", svc.Status.ReadyReplicas, svc.Status.Replicas, svc.Status.UpdatedReplicas, svc.Status.Revision, b.String())
}

// TestServiceLifecycle walks a Service through what a user does with one:
// deploy, reach, break, heal, update under load, roll back, read logs.
func TestServiceLifecycle(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()

	out := s.mustBerth("", "image", "import", imageV1)
	if !strings.Contains(out, echoV1) {
		t.Fatalf("image import output lacks the image name: %q", out)
	}
	s.mustBerth("", "image", "import", imageV2)

	manifest := writeFile(t, dir, "echo.yaml", fmt.Sprintf(echoService, echoV1))
	out = s.mustBerth("", "apply", "-f", manifest, "--wait", "--timeout", "2m")
	if !strings.Contains(out, "service/echo created") {
		t.Fatalf("apply output: %q", out)
	}

	svc := s.service("default", "echo")
	if svc.Status.ReadyReplicas != 3 || len(svc.Status.Instances) != 3 || svc.Status.Revision != 1 {
		t.Fatalf("after apply --wait: %s", instancesOf(svc))
	}
	if !strings.HasPrefix(svc.Status.ImageDigest, "sha256:") {
		t.Fatalf("tag not resolved to a digest: %q", svc.Status.ImageDigest)
	}

	t.Run("gateway balances across ready instances", func(t *testing.T) {
		seen := map[string]int{}
		for range 60 {
			code, body, err := s.gatewayGet("echo.default.berth.localhost", "/")
			if err != nil || code != 200 {
				t.Fatalf("GET via host: %d %v %s", code, err, body)
			}
			var r struct{ Hostname, Version string }
			json.Unmarshal([]byte(body), &r)
			seen[r.Hostname]++
		}
		if len(seen) < 2 {
			t.Fatalf("60 requests reached only %v", seen)
		}
		code, body, err := s.gatewayGet("anything.example", "/echo/")
		if err != nil || code != 200 || !strings.Contains(body, `"version":"v1"`) {
			t.Fatalf("GET via route path: %d %v %s", code, err, body)
		}
		code, _, _ = s.gatewayGet("nope.default.berth.localhost", "/")
		if code != http.StatusNotFound {
			t.Fatalf("unknown service: want 404, got %d", code)
		}
	})

	t.Run("get and describe", func(t *testing.T) {
		out := s.mustBerth("", "get", "services")
		if !strings.Contains(out, "echo") || !strings.Contains(out, "3/3") {
			t.Fatalf("get services:\n%s", out)
		}
		out = s.mustBerth("", "get", "service", "echo", "-o", "json")
		var got v1.Service
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Status.ReadyReplicas != 3 {
			t.Fatalf("get -o json: %v\n%s", err, out)
		}
		out = s.mustBerth("", "describe", "service", "echo")
		for _, want := range []string{"echo", echoV1, "Instances", "Events"} {
			if !strings.Contains(out, want) {
				t.Fatalf("describe lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("a container that exits is restarted", func(t *testing.T) {
		victim := s.service("default", "echo").Status.Instances[0]
		direct(http.MethodGet, victim.IP, victim.Port, "/exit?code=3")
		testutil.WaitForState(t, 60*time.Second, "the instance to be restarted and ready", func() (bool, string) {
			svc := s.service("default", "echo")
			for _, i := range svc.Status.Instances {
				if i.Name == victim.Name {
					ok := i.Restarts >= 1 && i.LastExit != nil && i.LastExit.Code == 3 && i.LastExit.Reason == "Error" && i.Ready
					return ok, instancesOf(svc)
				}
			}
			return false, instancesOf(svc)
		})
		out := s.mustBerth("", "describe", "service", "echo")
		if !strings.Contains(out, "BackOff") {
			t.Fatalf("describe shows no BackOff event after a crash:\n%s", out)
		}
	})

	t.Run("a failing liveness probe restarts", func(t *testing.T) {
		victim := s.service("default", "echo").Status.Instances[1]
		direct(http.MethodGet, victim.IP, victim.Port, "/fail-liveness")
		testutil.WaitForState(t, 60*time.Second, "a liveness restart", func() (bool, string) {
			svc := s.service("default", "echo")
			for _, i := range svc.Status.Instances {
				if i.Name == victim.Name {
					return i.LastExit != nil && i.LastExit.Reason == "LivenessFailed" && i.Ready, instancesOf(svc)
				}
			}
			return false, instancesOf(svc)
		})
	})

	t.Run("a volume keeps data across revisions", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.gateway+"/file?path=/data/note", strings.NewReader("kept"))
		req.Host = "echo.default.berth.localhost"
		resp, err := httpClient.Do(req)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("write to volume: %v %v", err, resp)
		}
		resp.Body.Close()
	})

	t.Run("rolling update under load fails no request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		load, err := loadgen.Start(ctx, loadgen.Options{
			URL: "http://" + s.gateway + "/", Host: "echo.default.berth.localhost",
			Concurrency: 8, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		// Make sure the load is flowing before the rollout starts.
		testutil.WaitForState(t, 10*time.Second, "load to flow", func() (bool, string) {
			return load.Issued() > 20, ""
		})
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "echo.yaml", fmt.Sprintf(echoService, echoV2)))
		s.mustBerth("", "rollout", "status", "echo", "--timeout", "3m")
		res := load.Stop()
		t.Logf("load during rollout: %s", res)
		if res.Failures != 0 {
			t.Fatalf("%d of %d requests failed during the rollout: %v", res.Failures, res.Requests, res.Errors)
		}
		svc := s.service("default", "echo")
		if svc.Status.Revision != 2 || svc.Status.UpdatedReplicas != 3 || svc.Status.ReadyReplicas != 3 {
			t.Fatalf("after rollout: %s", instancesOf(svc))
		}
		// Old instances may still be draining; none may serve.
		for _, i := range svc.Status.Instances {
			if i.Revision != 2 && i.Phase != v1.PhaseTerminating {
				t.Fatalf("instance of an old revision left serving: %s", instancesOf(svc))
			}
		}
		testutil.WaitForState(t, 30*time.Second, "the old instances to be gone", func() (bool, string) {
			svc := s.service("default", "echo")
			return len(svc.Status.Instances) == 3, instancesOf(svc)
		})
		_, body, _ := s.gatewayGet("echo.default.berth.localhost", "/")
		if !strings.Contains(body, `"version":"v2"`) {
			t.Fatalf("after rollout the gateway serves %s", body)
		}
		_, body, _ = s.gatewayGet("echo.default.berth.localhost", "/file?path=/data/note")
		if body != "kept" {
			t.Fatalf("volume content after a new revision: %q", body)
		}
	})

	t.Run("rollout history and undo", func(t *testing.T) {
		out := s.mustBerth("", "rollout", "history", "echo")
		if !strings.Contains(out, echoV1) || !strings.Contains(out, echoV2) {
			t.Fatalf("history:\n%s", out)
		}
		s.mustBerth("", "rollout", "undo", "echo")
		s.mustBerth("", "rollout", "status", "echo", "--timeout", "3m")
		svc := s.service("default", "echo")
		if svc.Status.Revision != 3 || svc.Spec.Image != echoV1 {
			t.Fatalf("after undo: image %s, %s", svc.Spec.Image, instancesOf(svc))
		}
		_, body, _ := s.gatewayGet("echo.default.berth.localhost", "/")
		if !strings.Contains(body, `"version":"v1"`) {
			t.Fatalf("after undo the gateway serves %s", body)
		}
	})

	t.Run("logs are kept and readable", func(t *testing.T) {
		s.gatewayGet("echo.default.berth.localhost", "/log?msg=hello-from-the-test")
		testutil.WaitForState(t, 10*time.Second, "the log line", func() (bool, string) {
			out, _, _ := s.berth("", "logs", "echo")
			return strings.Contains(out, "hello-from-the-test"), out
		})
		// Lines of instances replaced by the rollouts are still there.
		out := s.mustBerth("", "logs", "echo")
		if strings.Count(out, "listening on") < 6 {
			t.Fatalf("logs of stopped instances are missing:\n%s", out)
		}
	})

	t.Run("delete drains and removes everything", func(t *testing.T) {
		s.mustBerth("", "delete", "service", "echo")
		testutil.WaitForState(t, 60*time.Second, "instances to go", func() (bool, string) {
			insts, err := s.client.List(context.Background(), v1.KindInstance, "default")
			return err == nil && len(insts) == 0, fmt.Sprint(len(insts), err)
		})
		_, _, code := s.berth("", "get", "service", "echo")
		if code != 5 {
			t.Fatalf("get of a deleted service: exit %d, want 5 (not found)", code)
		}
	})
}

// TestOOMKilled: a process over its memory limit is killed by the kernel
// and the platform says so.
func TestOOMKilled(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	manifest := fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: hog}
spec:
  image: %s
  args: ["-hog-mb", "200"]
  resources: {memory: 48Mi}
`, echoV1)
	s.mustBerth(manifest, "apply", "-f", "-")
	testutil.WaitForState(t, 60*time.Second, "an OOMKilled exit", func() (bool, string) {
		svc := s.service("default", "hog")
		for _, i := range svc.Status.Instances {
			if i.LastExit != nil && i.LastExit.Reason == "OOMKilled" {
				return true, ""
			}
		}
		return false, instancesOf(svc)
	})
	out := s.mustBerth("", "get", "instances")
	if !strings.Contains(out, "OOMKilled") {
		t.Fatalf("get instances does not show OOMKilled:\n%s", out)
	}
}
