package k8s

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// The node is Ready and schedules a namespace's pods: the promise every
// backend test builds on.
func TestClusterRunsPods(t *testing.T) {
	k := Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ready, err := k.Kubectl(ctx, "get", "node", "localhost", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		t.Fatal(err)
	}
	if ready != "True" {
		t.Fatalf("node localhost Ready = %q, want True", ready)
	}
	if k.StateDir == "" {
		t.Skip("skipping the pod: the cluster is not one of up.sh's, so no image can be imported into it")
	}
	ns := k.Namespace(t)
	// The pause image up.sh imported: a pod that runs without any registry.
	if _, err := k.Kubectl(ctx, "-n", ns, "run", "p", "--image=localhost/berth-k8s/pause:1",
		"--image-pull-policy=Never", "--restart=Never", `--overrides={"spec":{"terminationGracePeriodSeconds":1}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/p", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	ip, err := k.Kubectl(ctx, "-n", ns, "get", "pod", "p", "-o", "jsonpath={.status.podIP}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ip, "10.244.0.") {
		t.Fatalf("pod IP %q, want one of the cluster's bridge 10.244.0.0/24", ip)
	}
}

// The whole smoke check (scripts/k8s/smoke.sh): Deployment, Services from
// the host and from pods by name, logs, exec, resource metrics, a pull
// from a plain-HTTP registry on 127.0.0.1.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the smoke check in -short mode")
	}
	k := Cluster(t)
	if k.StateDir == "" {
		t.Skip("skipping: the smoke check needs a cluster up.sh started")
	}
	for _, tool := range []string{"skopeo", "go"} {
		if _, err := exec.LookPath(tool); err != nil && !(tool == "go" && exists("/usr/local/go/bin/go")) {
			t.Skipf("skipping: the smoke check needs %s", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(scriptsDir(), "smoke.sh"), k.StateDir)
	out, err := cmd.CombinedOutput()
	t.Logf("smoke.sh:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}
