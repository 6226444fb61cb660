// Command kubernetes compares the two backends on the same machine, in
// the same run, on the same image:
//
//	cold start     a request to a Function at zero through Berth's gateway,
//	               on the local backend and on the kubernetes backend, beside
//	               a plain `kubectl scale --replicas=1` of an equivalent
//	               Deployment (to its first answer)
//	rollout        a 3-replica Service's rolling update to a new revision
//	               (apply to `rollout status` done), on each backend
//
// It needs root, and a cluster: $BERTH_KUBECONFIG's, or one it starts with
// scripts/k8s/up.sh (and stops). Run from the repository root:
//
//	go run ./bench/kubernetes [-n 10]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

const (
	echoV1 = "berth.bench/echo:v1"
	echoV2 = "berth.bench/echo:v2"
)

func main() {
	n := flag.Int("n", 10, "cold starts per path")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kubernetes:", err)
		os.Exit(1)
	}
}

type series struct {
	name string
	d    []time.Duration
}

func (s series) pct(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	d := append([]time.Duration(nil), s.d...)
	sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
	return d[int(p*float64(len(d)-1)+0.5)]
}

func run(n int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bkube-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	kubeconfig := os.Getenv("BERTH_KUBECONFIG")
	if kubeconfig == "" {
		state := filepath.Join(dir, "cluster")
		out, err := exec.Command("scripts/k8s/up.sh", state).Output()
		if err != nil {
			return fmt.Errorf("scripts/k8s/up.sh: %w", err)
		}
		defer exec.Command("scripts/k8s/down.sh", state).Run()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		kubeconfig = lines[len(lines)-1]
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if bin, e := exec.Command("scripts/k8s/built.sh").Output(); e == nil {
			kubectl = filepath.Join(strings.TrimSpace(string(bin)), "kubectl")
		} else {
			return fmt.Errorf("no kubectl")
		}
	}
	bin := filepath.Join(dir, "berth")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/berth").CombinedOutput(); err != nil {
		return fmt.Errorf("build berth: %v %s", err, out)
	}
	var tars []string
	for _, img := range []struct{ ref, version string }{{echoV1, "v1"}, {echoV2, "v2"}} {
		tar, err := testimage.Build(ctx, dir, img.ref, testimage.Options{Version: img.version})
		if err != nil {
			return err
		}
		tars = append(tars, tar)
	}
	sock, stopCtrd, err := testutil.StartContainerd(filepath.Join(dir, "ctrd"))
	if err != nil {
		return err
	}
	defer stopCtrd()
	defer testutil.RemoveHostNetwork("bkub")

	local, err := startServer(ctx, bin, filepath.Join(dir, "local"), tars,
		"--containerd-socket", sock, "--containerd-namespace", "kubebench", "--subnet-pool", "10.226.0.0/16", "--bridge-prefix", "bkub")
	if err != nil {
		return fmt.Errorf("local server: %w", err)
	}
	defer local.stop()
	ln, err := net.Listen("tcp", "10.244.0.1:0")
	if err != nil {
		return fmt.Errorf("the cluster's bridge: %w", err)
	}
	podsAddr := ln.Addr().String()
	ln.Close()
	kube, err := startServer(ctx, bin, filepath.Join(dir, "kube"), tars,
		"--backend", "kubernetes", "--kubeconfig", kubeconfig, "--namespace-prefix", "bench-", "--cluster-gateway", podsAddr)
	if err != nil {
		return fmt.Errorf("kubernetes server: %w", err)
	}
	defer func() {
		kube.stop()
		exec.Command(kubectl, "--kubeconfig", kubeconfig, "delete", "ns", "bench-default", "bench-plain", "--wait=false").Run()
	}()

	var results []series
	for _, s := range []*server{local, kube} {
		cs, err := s.coldStarts(ctx, n)
		if err != nil {
			return fmt.Errorf("%s cold starts: %w", s.name, err)
		}
		results = append(results, cs)
	}
	plain, err := plainScale(ctx, kubectl, kubeconfig, kube, n)
	if err != nil {
		return fmt.Errorf("kubectl scale: %w", err)
	}
	results = append(results, plain)
	var rollouts []series
	for _, s := range []*server{local, kube} {
		r, err := s.rollout(ctx, 3)
		if err != nil {
			return fmt.Errorf("%s rollout: %w", s.name, err)
		}
		rollouts = append(rollouts, r)
	}

	fmt.Printf("cold start, request to response (%d each)\n", n)
	fmt.Printf("  %-44s %10s %10s %10s\n", "path", "p50", "p90", "max")
	for _, s := range results {
		fmt.Printf("  %-44s %10s %10s %10s\n", s.name, ms(s.pct(0.5)), ms(s.pct(0.9)), ms(s.pct(1)))
	}
	fmt.Printf("3-replica rolling update, apply to rollout complete (3 each)\n")
	for _, s := range rollouts {
		fmt.Printf("  %-44s %10s %10s %10s\n", s.name, ms(s.pct(0.5)), ms(s.pct(0.9)), ms(s.pct(1)))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

type server struct {
	name    string
	bin     string
	data    string
	cmd     *exec.Cmd
	c       *client.Client
	gateway string
	apiAddr string
}

func startServer(ctx context.Context, bin, data string, tars []string, args ...string) (*server, error) {
	s := &server{bin: bin, data: data, name: "local backend"}
	for _, a := range args {
		if a == "kubernetes" {
			s.name = "kubernetes backend"
		}
	}
	logf, err := os.Create(data + ".log")
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, append([]string{"server", "--data-dir", data, "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := os.ReadFile(filepath.Join(data, "client.json"))
		if err == nil {
			var cc struct{ Addr, Token, Gateway string }
			json.Unmarshal(raw, &cc)
			s.c, s.gateway, s.apiAddr = client.New(client.Config{Addr: cc.Addr, Token: cc.Token}), cc.Gateway, strings.TrimPrefix(cc.Addr, "http://")
			if s.c.Health(ctx) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("server did not start; see %s.log", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tar := range tars {
		if _, err := s.berth("", "image", "import", tar); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s.berth("", "delete", "function", "cold")
	s.berth("", "delete", "service", "web")
	for ctx.Err() == nil {
		_, errSvc := s.berth("", "get", "service", "web")
		_, errFn := s.berth("", "get", "function", "cold")
		if errSvc != nil && errFn != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// berth runs the CLI against this server.
func (s *server) berth(stdin string, args ...string) (string, error) {
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(s.data, "client.json"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("berth %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

var slow = &http.Client{Timeout: 2 * time.Minute}

func (s *server) get(host, path string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.gateway+path, nil)
	req.Host = host
	resp, err := slow.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (s *server) coldStarts(ctx context.Context, n int) (series, error) {
	out := series{name: "berth function at zero, " + s.name}
	if _, err := s.berth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: cold}
spec:
  image: %s
  resources: {cpu: 250m, memory: 64Mi}
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  scale: {max: 1, idleTimeout: 1s}
`, echoV1), "apply", "-f", "-"); err != nil {
		return out, err
	}
	for range n {
		if err := s.waitAtZero(ctx); err != nil {
			return out, err
		}
		t0 := time.Now()
		code, err := s.get("cold.default.berth.localhost", "/")
		if err != nil || code != 200 {
			return out, fmt.Errorf("request at zero: %d %v", code, err)
		}
		out.d = append(out.d, time.Since(t0))
	}
	return out, nil
}

// waitAtZero waits until the function has no started instance (on the
// local backend: with its standby prepared).
func (s *server) waitAtZero(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := s.berth("", "get", "function", "cold", "-o", "json")
		if err == nil {
			var fn struct {
				Status struct {
					Desired, ReadyInstances int
					Instances               []struct{ Phase string }
				}
			}
			json.Unmarshal([]byte(out), &fn)
			busy := false
			for _, i := range fn.Status.Instances {
				if i.Phase != "Standby" {
					busy = true
				}
			}
			wantStandby := s.name == "local backend"
			if fn.Status.Desired == 0 && !busy && (len(fn.Status.Instances) == 1) == wantStandby {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the function did not go back to zero")
}

func (s *server) rollout(ctx context.Context, n int) (series, error) {
	out := series{name: "3-replica rollout, " + s.name}
	manifest := func(image string, rev int) string {
		return fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec:
  image: %s
  replicas: 3
  resources: {cpu: 200m, memory: 64Mi}
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  strategy: {maxSurge: 1, maxUnavailable: 0}
  terminationGracePeriodSeconds: 5
  env: [{name: ROUND, value: "%d"}]
`, image, rev)
	}
	if _, err := s.berth(manifest(echoV1, 0), "apply", "-f", "-", "--wait", "--timeout", "5m"); err != nil {
		return out, err
	}
	for i := 1; i <= n; i++ {
		img := echoV2
		if i%2 == 0 {
			img = echoV1
		}
		t0 := time.Now()
		if _, err := s.berth(manifest(img, i), "apply", "-f", "-"); err != nil {
			return out, err
		}
		if _, err := s.berth("", "rollout", "status", "web", "--timeout", "5m"); err != nil {
			return out, err
		}
		out.d = append(out.d, time.Since(t0))
	}
	return out, nil
}

// plainScale times `kubectl scale --replicas=1` of a Deployment equivalent
// to the function's (same image from Berth's registry, same probe and
// limits) to the first answer of its pod.
func plainScale(ctx context.Context, kubectl, kubeconfig string, kube *server, n int) (series, error) {
	out := series{name: "kubectl scale to 1 of a plain Deployment"}
	k := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return string(b), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, b)
		}
		return string(b), nil
	}
	raw, err := kube.berth("", "image", "ls", "-o", "json")
	if err != nil {
		return out, err
	}
	var imgs []struct{ Repository, Tag, Digest string }
	json.Unmarshal([]byte(raw), &imgs)
	image := ""
	for _, i := range imgs {
		if i.Tag == "v1" && strings.HasSuffix(i.Repository, "echo") {
			image = kube.apiAddr + "/" + i.Repository + "@" + i.Digest
		}
	}
	if image == "" {
		return out, fmt.Errorf("echo:v1 not in the registry: %s", raw)
	}
	k("", "create", "namespace", "bench-plain")
	if _, err := k(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: cold, namespace: bench-plain}
spec:
  replicas: 0
  selector: {matchLabels: {app: cold}}
  template:
    metadata: {labels: {app: cold}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      containers:
      - name: app
        image: %s
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        resources: {limits: {cpu: 250m, memory: 64Mi}, requests: {cpu: 250m, memory: 64Mi}}
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
`, image), "apply", "-f", "-"); err != nil {
		return out, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return out, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return out, err
	}
	deploys := cs.AppsV1().Deployments("bench-plain")
	scale := func(replicas int32) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sc, err := deploys.GetScale(ctx, "cold", metav1.GetOptions{})
			if err != nil {
				return err
			}
			sc.Spec.Replicas = replicas
			_, err = deploys.UpdateScale(ctx, "cold", sc, metav1.UpdateOptions{})
			return err
		})
	}
	for range n {
		// At zero, with no pod left.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			pods, err := cs.CoreV1().Pods("bench-plain").List(ctx, metav1.ListOptions{})
			if err == nil && len(pods.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("pods left at zero")
			}
			time.Sleep(200 * time.Millisecond)
		}
		w, err := cs.CoreV1().Pods("bench-plain").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			return out, err
		}
		// The scale subresource, as kubectl scale calls it, then the
		// pod's first answer, as a client behind a Service sees it once
		// the endpoint is ready.
		t0 := time.Now()
		if err := scale(1); err != nil {
			w.Stop()
			return out, err
		}
		ip := ""
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
					ip = p.Status.PodIP
				}
			}
			if ip != "" || time.Since(t0) > 2*time.Minute {
				break
			}
		}
		w.Stop()
		if ip == "" {
			return out, fmt.Errorf("no ready pod")
		}
		resp, err := slow.Get("http://" + net.JoinHostPort(ip, "8080") + "/")
		if err != nil {
			return out, err
		}
		resp.Body.Close()
		out.d = append(out.d, time.Since(t0))
		if err := scale(0); err != nil {
			return out, err
		}
	}
	return out, nil
}
