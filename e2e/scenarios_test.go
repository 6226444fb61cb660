package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/k8s"
)

// The shared scenarios: one test body each, run against every backend. On
// the local backend they use containerd and CNI bridges; on the
// kubernetes backend a real single-node cluster (internal/testutil/k8s),
// Berth's server on the host, the nodes pulling from its registry, pods
// calling back into its gateway.

// backends are the backends the scenarios run on.
var backends = []string{"local", "kubernetes"}

// backendServer starts a server of the given backend, with echo:v1 and
// echo:v2 in its registry.
func backendServer(t *testing.T, backend string) *server {
	t.Helper()
	var s *server
	switch backend {
	case "local":
		s = startServer(t)
	case "kubernetes":
		s = startKubeServer(t)
	}
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	return s
}

// clusterBridgeIP is the cluster's pod bridge address (scripts/k8s): the
// gateway listens there for pods.
const clusterBridgeIP = "10.244.0.1"

// startKubeServer starts `berth server --backend kubernetes` on the test
// cluster, with namespaces of its own.
func startKubeServer(t *testing.T, args ...string) *server {
	t.Helper()
	requireSystem(t)
	kube := k8s.Cluster(t)
	// A port on the bridge for the gateway's listener for pods.
	ln, err := net.Listen("tcp", clusterBridgeIP+":0")
	if err != nil {
		t.Fatalf("the cluster's bridge %s: %v", clusterBridgeIP, err)
	}
	podsAddr := ln.Addr().String()
	ln.Close()
	b := make([]byte, 2)
	rand.Read(b)
	prefix := "e2e" + hex.EncodeToString(b) + "-"
	s := &server{
		t: t, dataDir: t.TempDir(), gwAddr: "127.0.0.1:0", kube: kube, nsPrefix: prefix,
		extraArgs: append([]string{"--backend", "kubernetes", "--kubeconfig", kube.Kubeconfig,
			"--namespace-prefix", prefix, "--cluster-gateway", podsAddr}, args...),
	}
	s.start()
	t.Cleanup(func() { s.shutdown() })
	return s
}

// namespaces lists the cluster's namespaces of this server.
func (s *server) namespaces() []string {
	out, err := s.kube.Kubectl(context.Background(), "get", "ns", "-o", "name")
	if err != nil {
		s.t.Fatalf("kubectl get ns: %v", err)
	}
	var nss []string
	for _, n := range strings.Fields(out) {
		if n = strings.TrimPrefix(n, "namespace/"); strings.HasPrefix(n, s.nsPrefix) {
			nss = append(nss, n)
		}
	}
	return nss
}

func forEachBackend(t *testing.T, body func(t *testing.T, s *server)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			body(t, backendServer(t, b))
		})
	}
}

const scenarioService = `apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec:
  image: %s
  port: 8080
  replicas: 3
  resources: {cpu: 200m, memory: 64Mi}
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  strategy: {maxSurge: 1, maxUnavailable: 0}
  terminationGracePeriodSeconds: 5
`

// A Service with 3 replicas rolls out under load through Berth's gateway
// with no failed request.
func TestScenarioRollingUpdateUnderLoad(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		dir := t.TempDir()
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "web.yaml", fmt.Sprintf(scenarioService, echoV1)), "--wait", "--timeout", "3m")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		load, err := loadgen.Start(ctx, loadgen.Options{
			URL: "http://" + s.gateway + "/", Host: "web.default.berth.localhost", Concurrency: 8, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		testutil.WaitForState(t, 10*time.Second, "load to flow", func() (bool, string) { return load.Issued() > 20, "" })
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "web.yaml", fmt.Sprintf(scenarioService, echoV2)))
		s.mustBerth("", "rollout", "status", "web", "--timeout", "4m")
		res := load.Stop()
		t.Logf("load during the rollout: %s", res)
		if res.Failures != 0 {
			t.Fatalf("%d of %d requests failed during the rollout: %v", res.Failures, res.Requests, res.Errors)
		}
		if _, body, _ := s.gatewayGet("web.default.berth.localhost", "/"); !strings.Contains(body, `"version":"v2"`) {
			t.Fatalf("after the rollout the gateway serves %s", body)
		}
	})
}

// A Function at zero answers its first request, scales out under 50
// concurrent clients without passing its max, and returns to zero.
func TestScenarioFunctionFromZero(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn}
spec:
  image: %s
  resources: {cpu: 100m, memory: 64Mi}
  scale: {max: 3, idleTimeout: 3s}
  timeout: 90s
`, echoV1), "apply", "-f", "-")
		testutil.WaitForState(t, 60*time.Second, "the function at zero", func() (bool, string) {
			fn := s.function("default", "fn")
			return fn.Status.Revision == 1 && fn.Status.ReadyInstances == 0 && started(fn) == 0, fnState(fn)
		})
		code, body, err := s.gatewayGet("fn.default.berth.localhost", "/")
		if err != nil || code != 200 || !strings.Contains(body, `"version":"v1"`) {
			t.Fatalf("first request at zero: %d %v %s", code, err, body)
		}

		s.burstWithinMax(t, "fn", 50, "/sleep?ms=2000", 3, longClient)
		testutil.WaitForState(t, 3*time.Minute, "back to zero", func() (bool, string) {
			fn := s.function("default", "fn")
			return fn.Status.Desired == 0 && started(fn) == 0, fnState(fn)
		})
	})
}

const namedService = `apiVersion: berth.dev/v1
kind: Service
metadata: {name: %s, environment: %s}
spec:
  image: %s
  port: 8080
  resources: {cpu: 100m, memory: 64Mi}
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  env: [{name: VERSION, value: %s}]
`

// Two environments with the same service name each reach their own by
// name, from inside (a workload calling http://hello/).
func TestScenarioSameNameInTwoEnvironments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		dir := t.TempDir()
		for _, env := range []string{"alpha", "beta"} {
			s.mustBerth("", "env", "create", env)
			s.mustBerth("", "apply", "-f", writeFile(t, dir, env+"-hello.yaml", fmt.Sprintf(namedService, "hello", env, echoV1, "hello-from-"+env)))
			s.mustBerth("", "apply", "-f", writeFile(t, dir, env+"-caller.yaml", fmt.Sprintf(namedService, "caller", env, echoV1, "caller")))
		}
		for _, env := range []string{"alpha", "beta"} {
			s.mustBerth("", "rollout", "status", "hello", "-e", env, "--timeout", "3m")
			s.mustBerth("", "rollout", "status", "caller", "-e", env, "--timeout", "3m")
		}
		for _, env := range []string{"alpha", "beta"} {
			testutil.WaitForState(t, 60*time.Second, env+"'s caller reaching its own hello by name", func() (bool, string) {
				code, body, err := s.gatewayGet("caller."+env+".berth.localhost", "/call?url=http://hello/&timeout=5s")
				return err == nil && code == 200 && strings.Contains(body, `"version":"hello-from-`+env+`"`), fmt.Sprintf("%d %v %s", code, err, body)
			})
		}
	})
}

// A secret reaches the container, and is not in plain text in Berth's
// state.
func TestScenarioSecretReachesTheContainerOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		const value = "s3cret-" + "7d1f0c2a9b"
		s.mustBerth("", "secret", "set", "db", "password="+value)
		s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec:
  image: %s
  port: 8080
  resources: {cpu: 100m, memory: 64Mi}
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  env: [{name: DB_PASSWORD, valueFrom: {secret: {name: db, key: password}}}]
`, echoV1), "apply", "-f", "-", "--wait", "--timeout", "3m")
		testutil.WaitForState(t, 60*time.Second, "the secret in the container's environment", func() (bool, string) {
			code, body, err := s.gatewayGet("web.default.berth.localhost", "/env")
			return err == nil && code == 200 && strings.Contains(body, "DB_PASSWORD="+value), fmt.Sprintf("%d %v", code, err)
		})
		state, err := os.ReadFile(filepath.Join(s.dataDir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(state, []byte(value)) {
			t.Fatal("the secret's value is in plain text in Berth's state")
		}
	})
}

// Deleting an environment leaves nothing behind in the cluster, and a
// restarted server adopts what runs without restarting it.
func TestScenarioKubernetesLifecycle(t *testing.T) {
	s := backendServer(t, "kubernetes")
	dir := t.TempDir()
	s.mustBerth("", "env", "create", "gone")
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "hello.yaml", fmt.Sprintf(namedService, "hello", "default", echoV1, "v1")), "--wait", "--timeout", "3m")
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "gone.yaml", fmt.Sprintf(namedService, "hello", "gone", echoV1, "v1")), "--wait", "--timeout", "3m")
	if nss := s.namespaces(); len(nss) != 2 {
		t.Fatalf("namespaces %v, want one per environment", nss)
	}
	out, err := s.kube.Kubectl(context.Background(), "get", "deploy,svc,networkpolicy,limitrange", "-n", s.nsPrefix+"gone", "-l", "app.kubernetes.io/managed-by=berth", "-o", "name")
	if err != nil || !strings.Contains(out, "deployment.apps/hello") || !strings.Contains(out, "service/hello") || !strings.Contains(out, "networkpolicy.networking.k8s.io/berth-seal") {
		t.Fatalf("what Berth made in the cluster: %v\n%s", err, out)
	}

	s.mustBerth("", "env", "delete", "gone", "--cascade")
	testutil.WaitForState(t, 3*time.Minute, "the environment's namespace to be gone", func() (bool, string) {
		nss := s.namespaces()
		return len(nss) == 1 && nss[0] == s.nsPrefix+"default", fmt.Sprint(nss)
	})

	before := s.service("default", "hello").Status.Instances
	s.kill9()
	// The workload keeps running while no server is there.
	out, err = s.kube.Kubectl(context.Background(), "get", "pods", "-n", s.nsPrefix+"default", "-l", "berth.dev/workload=hello", "-o", "jsonpath={.items[*].status.phase}")
	if err != nil || !strings.Contains(out, "Running") {
		t.Fatalf("pods while the server is down: %v %s", err, out)
	}
	s.start()
	testutil.WaitForState(t, 60*time.Second, "the restarted server to serve hello", func() (bool, string) {
		code, body, err := s.gatewayGet("hello.default.berth.localhost", "/")
		return err == nil && code == 200, fmt.Sprintf("%d %v %s", code, err, body)
	})
	after := s.service("default", "hello").Status.Instances
	if len(after) != len(before) || len(after) == 0 || after[0].Name != before[0].Name || after[0].Restarts != before[0].Restarts {
		t.Fatalf("instances before the restart %+v, after %+v: the new server must adopt them as they are", before, after)
	}
}

// What goes wrong on a cluster is said plainly: an unreachable cluster and
// credentials RBAC refuses stop the server at start with the reason (which
// verb on which resource); an image the nodes cannot pull shows as the
// instance's ImagePullBackOff in describe.
func TestKubernetesSaysWhatWentWrong(t *testing.T) {
	requireSystem(t)
	kube := k8s.Cluster(t)
	dir := t.TempDir()
	ctx := context.Background()

	// A service account with no role at all, and a kubeconfig of its token.
	ns := kube.Namespace(t)
	if _, err := kube.Kubectl(ctx, "create", "serviceaccount", "nobody", "-n", ns); err != nil {
		t.Fatal(err)
	}
	token, err := kube.Kubectl(ctx, "create", "token", "nobody", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	server, err := kube.Kubectl(ctx, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := kube.Kubectl(ctx, "config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := func(name, server string) string {
		return writeFile(t, dir, name+".kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server, ca, strings.TrimSpace(token)))
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := "https://" + closed.Addr().String()
	closed.Close()
	for _, c := range []struct {
		name, kubeconfig string
		want             []string
	}{
		{"unreachable", kubeconfig("unreachable", unreachable), []string{"unreachable", closed.Addr().String()}},
		{"RBAC denied", kubeconfig("nobody", server), []string{"refused", `"list"`, "namespaces"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, berthBin, "server", "--data-dir", t.TempDir(), "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0",
				"--backend", "kubernetes", "--kubeconfig", c.kubeconfig, "--cluster-gateway", clusterBridgeIP+":0").CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("server did not refuse to start (%v):\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("the error does not say %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("image the nodes cannot pull", func(t *testing.T) {
		// Nodes are told to pull Berth's registry from a closed port.
		s := startKubeServer(t, "--registry-advertise", unreachable[len("https://"):])
		s.mustBerth("", "image", "import", imageV1)
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "web.yaml", fmt.Sprintf(namedService, "web", "default", echoV1, "v1")))
		testutil.WaitForState(t, 2*time.Minute, "describe to show the pull failure", func() (bool, string) {
			out, _, _ := s.berth("", "describe", "service", "web")
			return strings.Contains(out, "ImagePullBackOff") || strings.Contains(out, "ErrImagePull"), out
		})
	})
}

// berth install runs Berth itself in the cluster: the server's pod comes
// up with the RBAC install gives it (in-cluster config), its API answers
// through the berth-api Service, and it makes an environment's namespace.
func TestInstallRunsBerthInTheCluster(t *testing.T) {
	requireSystem(t)
	kube := k8s.Cluster(t)
	if kube.ContainerdSocket == "" {
		testutil.Skip(t, "the test cluster's containerd is unknown: berth's image cannot be put on its node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// Berth's own image, built the way `berth build` builds Go.
	src, _ := filepath.Abs("../cmd/berth")
	tar := filepath.Join(dir, "berth.tar")
	const image = "berth.local/berth:e2e"
	if err := build.GoToFile(ctx, build.GoOptions{Dir: src, Ref: image, Binary: "/berth"}, tar); err != nil {
		t.Fatal(err)
	}
	if err := kube.ImportImage(ctx, tar); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	rand.Read(b)
	ns, prefix := "berth-e2e-"+hex.EncodeToString(b), "in"+hex.EncodeToString(b)+"-"
	state := filepath.Join(dir, "state")
	t.Cleanup(func() {
		ctx := context.Background()
		kube.Kubectl(ctx, "delete", "namespace", ns, prefix+"default", prefix+"inside", "--wait=false")
		kube.Kubectl(ctx, "delete", "clusterrole,clusterrolebinding", "berth", "--ignore-not-found")
	})
	install := exec.CommandContext(ctx, berthBin, "install", "--kubeconfig", kube.Kubeconfig, "--image", image,
		"--namespace", ns, "--namespace-prefix", prefix, "--state", "hostpath:"+state)
	if out, err := install.CombinedOutput(); err != nil || !strings.Contains(string(out), "deployment/berth applied") {
		t.Fatalf("berth install: %v\n%s", err, out)
	}
	if out, err := kube.Kubectl(ctx, "rollout", "status", "deployment/berth", "-n", ns, "--timeout=3m"); err != nil {
		logs, _ := kube.Kubectl(ctx, "logs", "deployment/berth", "-n", ns, "--tail=30")
		t.Fatalf("Berth's pod did not come up: %v %s\n%s", err, out, logs)
	}
	ip, err := kube.Kubectl(ctx, "get", "svc", "berth-api", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(state, "token"))
	if err != nil {
		t.Fatalf("the server's token on its state volume: %v", err)
	}
	env := append(os.Environ(), "BERTH_ADDR=http://"+net.JoinHostPort(ip, "7070"), "BERTH_TOKEN="+strings.TrimSpace(string(token)))
	cli := func(args ...string) string {
		cmd := exec.CommandContext(ctx, berthBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	testutil.WaitForState(t, 60*time.Second, "the in-cluster API through berth-api", func() (bool, string) {
		cmd := exec.CommandContext(ctx, berthBin, "get", "environments")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), "default"), fmt.Sprintf("%v %s", err, out)
	})
	cli("env", "create", "inside")
	testutil.WaitForState(t, 60*time.Second, "the environment's namespace, made by the server in the pod", func() (bool, string) {
		out, err := kube.Kubectl(ctx, "get", "namespace", prefix+"inside", "-o", "name")
		return err == nil && strings.Contains(out, prefix+"inside"), fmt.Sprint(err)
	})
	if out := cli("get", "environment", "inside", "-o", "json"); !strings.Contains(out, `"namespace": "`+prefix+`inside"`) && !strings.Contains(out, `"namespace":"`+prefix+`inside"`) {
		t.Fatalf("the environment's status does not name its namespace:\n%s", out)
	}
}

// Async invocations and topic triggers work the same on both backends:
// the queue calls the function through the gateway, waking it from zero,
// and a message published to a topic reaches its subscriber.
func TestScenarioAsyncAndTopics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *server) {
		s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Topic
metadata: {name: orders}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: worker}
spec:
  image: %s
  resources: {cpu: 100m, memory: 64Mi}
  scale: {max: 1}
  timeout: 90s
  async: {maxRetries: 2, backoff: 100ms}
  triggers: [{topic: orders}]
`, echoV1), "apply", "-f", "-")
		ctx := context.Background()
		id := strings.TrimSpace(s.mustBerth("", "invoke", "worker", "--async", "-d", "flaky k1 1"))
		testutil.WaitForState(t, 3*time.Minute, "the async invocation to succeed after a retry", func() (bool, string) {
			inv, err := s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == v1.InvocationSucceeded && inv.Attempts == 2, fmt.Sprintf("%+v %v", inv, err)
		})
		s.mustBerth("", "publish", "orders", "-d", "order-1234")
		testutil.WaitForState(t, 3*time.Minute, "the topic's message in the worker's logs", func() (bool, string) {
			out, _, _ := s.berth("", "logs", "worker")
			return strings.Contains(out, `body "order-1234"`), out
		})
	})
}
