package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

// cgroupLimit reads a limit the kernel enforces on the container of
// instance inst (any containerd ID that ends with its name): the v1 file
// or, on a cgroup v2 host, the v2 one.
func cgroupLimit(t *testing.T, ns, inst, v1Controller, v1File, v2File string) string {
	t.Helper()
	pattern := filepath.Join("/sys/fs/cgroup", v1Controller, ns, "*"+inst, v1File)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		pattern = filepath.Join("/sys/fs/cgroup", ns, "*"+inst, v2File)
	}
	matches, _ := filepath.Glob(pattern)
	if len(matches) != 1 {
		t.Fatalf("cgroup files matching %s: %v", pattern, matches)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestLimits: a workload without limits runs with its environment's
// default limits, which `get` shows and the kernel enforces; what no node
// could run is refused with the numbers; an environment's own admin cannot
// raise its quota.
func TestLimits(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	dir := t.TempDir()
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "dev.yaml", `apiVersion: berth.dev/v1
kind: Environment
metadata: {name: dev}
spec:
  quota: {cpu: "2", memory: 1Gi}
  limits:
    default: {cpu: 250m, memory: 96Mi}
    max: {memory: 512Mi}
`))
	web := writeFile(t, dir, "web.yaml", fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, environment: dev}
spec:
  image: %s
`, echoV1))
	s.mustBerth("", "apply", "-f", web, "--wait", "--timeout", "2m")

	// What the quota counts is in the stored spec…
	var svc v1.Service
	if err := json.Unmarshal([]byte(s.mustBerth("", "get", "service", "web", "-e", "dev", "-o", "json")), &svc); err != nil {
		t.Fatal(err)
	}
	want := v1.Resources{CPU: "250m", Memory: "96Mi", Pids: v1.DefaultPids}
	if svc.Spec.Resources != want || len(svc.Status.Instances) != 1 {
		t.Fatalf("stored resources %+v, want %+v; status %s", svc.Spec.Resources, want, instancesOf(&svc))
	}
	if out := s.mustBerth("", "get", "service", "web", "-e", "dev", "-o", "yaml"); !strings.Contains(out, "memory: 96Mi") {
		t.Errorf("get -o yaml does not show the default memory:\n%s", out)
	}
	if out := s.mustBerth("", "apply", "-f", web); !strings.Contains(out, "unchanged") {
		t.Errorf("re-apply of the same manifest: %s", out)
	}
	// …and what the kernel enforces.
	inst := svc.Status.Instances[0].Name
	if got := cgroupLimit(t, s.ns, inst, "memory", "memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(96<<20) {
		t.Errorf("memory limit of %s = %s, want %d", inst, got, 96<<20)
	}
	if got := cgroupLimit(t, s.ns, inst, "cpu", "cpu.cfs_quota_us", "cpu.max"); !strings.HasPrefix(got, "25000") {
		t.Errorf("cpu quota of %s = %s, want 25000 (a quarter of a 100ms period)", inst, got)
	}

	if got := cgroupLimit(t, s.ns, inst, "pids", "pids.max", "pids.max"); got != "1024" {
		t.Errorf("pids limit of %s = %s, want 1024", inst, got)
	}

	// What this node could never run is refused, with the numbers.
	cores := strconv.Itoa(goruntime.NumCPU())
	for _, tc := range []struct{ spec, want string }{
		{"resources: {cpu: \"100000\"}", "spec.resources.cpu: 100000 cores per instance is more than this node has, " + cores + " cores"},
		{"resources: {memory: 900Ti}", "spec.resources.memory: 900Ti of memory per instance is more than this node has"},
		{"replicas: 1000", "spec.replicas: 1000 replicas × 256Mi of memory = 250Gi, more than this node has"},
	} {
		f := writeFile(t, dir, "big.yaml", fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: big}\nspec:\n  image: %s\n  %s\n", echoV1, tc.spec))
		if _, errOut, code := s.berth("", "apply", "-f", f); code != 3 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d\n%s\nwant %s", tc.spec, code, errOut, tc.want)
		}
	}
	if _, errOut, code := s.berth("", "get", "service", "big"); code != 5 {
		t.Errorf("a refused service exists: exit %d %s", code, errOut)
	}
	// Above the environment's max per instance.
	f := writeFile(t, dir, "db.yaml", fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: db, environment: dev}\nspec:\n  image: %s\n  resources: {memory: 1Gi}\n", echoV1))
	if _, errOut, code := s.berth("", "apply", "-f", f); code != 3 || !strings.Contains(errOut, `1Gi per instance is above the most environment "dev" allows, 512Mi`) {
		t.Errorf("above the max: exit %d %s", code, errOut)
	}

	// The environment's admin may not raise its own quota.
	tok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "dev", "--role", "admin", "--name", "dev-admin"))
	raise := writeFile(t, dir, "raise.yaml", `apiVersion: berth.dev/v1
kind: Environment
metadata: {name: dev}
spec:
  quota: {cpu: "64", memory: 64Gi}
  limits:
    default: {cpu: 250m, memory: 96Mi}
    max: {memory: 512Mi}
`)
	_, errOut, code := s.berth("", "--token", tok, "apply", "-f", raise)
	if code != 4 || !strings.Contains(errOut, `token "dev-admin" (role admin, environments dev) may not change spec.quota of environment "dev"`) {
		t.Errorf("environment admin raising its quota: exit %d %s", code, errOut)
	}
	var env v1.Environment
	if err := json.Unmarshal([]byte(s.mustBerth("", "get", "environment", "dev", "-o", "json")), &env); err != nil {
		t.Fatal(err)
	}
	if q := env.Spec.Quota; q == nil || q.CPU != "2" || q.Memory != "1Gi" {
		t.Errorf("quota after the refused change: %+v", q)
	}
	// The admin of all environments may.
	s.mustBerth("", "apply", "-f", raise)
}
