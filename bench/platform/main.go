// Command platform measures a real Berth server end to end, each figure
// beside its baseline from the same run:
//
//	(a) gateway overhead: the echo container reached directly, through
//	    Debian's nginx, and through Berth's gateway (runs bench/gateway);
//	(b) a rolling update of 3 replicas under constant load: failed
//	    requests and seconds per replica;
//	(c) the server's resident memory when idle, with and without workloads;
//	(d) a function at zero under a step to 50 clients;
//	(e) route changes: how long a new service's readiness and a deletion
//	    take to reach the gateway, and a burst of them under load.
//
// It starts its own server (and containerd) on a temp data dir; run it as
// root on a machine with the packages of scripts/install-deps.sh:
//
//	go run ./bench/platform
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "length of each gateway measurement")
	conc := flag.String("c", "1,32", "concurrent connections for the gateway measurement, a comma-separated list")
	protos := flag.String("proto", "h1,h2c", "protocols for the gateway measurement")
	runs := flag.Int("runs", 3, "runs of each gateway measurement, interleaved")
	tool := flag.String("tool", "auto", "HTTP/1.1 load generator for the gateway measurement: wrk, go or auto")
	only := flag.String("only", "", "run only these parts, e.g. \"a\" or \"a,e\" (default: all)")
	keep := flag.Bool("keep", false, "keep the data dir")
	flag.Parse()
	loadTool = *tool
	if err := run(*duration, *conc, *protos, *runs, *only, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/platform:", err)
		os.Exit(1)
	}
}

var loadTool = "auto"

type bench struct {
	dir, bin string
	cmd      *exec.Cmd
	c        *client.Client
	gateway  string
	api      string
	token    string
}

func run(duration time.Duration, conc, protos string, runs int, only string, keep bool) error {
	part := func(p string) bool { return only == "" || strings.Contains(only, p) }
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bbench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{dir: dir, bin: filepath.Join(dir, "berth")}
	if out, err := exec.Command("go", "build", "-o", b.bin, "./cmd/berth").CombinedOutput(); err != nil {
		return fmt.Errorf("build berth: %v\n%s", err, out)
	}
	if err := b.start(); err != nil {
		return err
	}
	defer b.stop()

	rssEmpty := rssKiB(b.cmd.Process.Pid)

	for _, v := range []string{"v1", "v2"} {
		tar, err := testimage.Build(ctx, dir, "berth.bench/echo:"+v, testimage.Options{Version: v})
		if err != nil {
			return err
		}
		if _, err := b.berth("image", "import", tar); err != nil {
			return err
		}
	}

	// (a) One replica, so direct and gateway reach the same container.
	if _, err := b.apply(1, "v1"); err != nil {
		return err
	}
	if part("a") {
		if err := b.overhead(ctx, duration, conc, protos, runs); err != nil {
			return err
		}
	}
	if only != "" && !part("b") && !part("c") && !part("d") {
		if part("e") {
			if err := b.routeChanges(ctx); err != nil {
				return err
			}
		}
		return b.cleanup(ctx)
	}

	// (b) Rolling update of 3 replicas under load.
	if _, err := b.apply(3, "v1"); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	load, err := loadgen.Start(lctx, loadgen.Options{URL: "http://" + b.gateway + "/", Host: "echo.default.berth.localhost", Concurrency: 8})
	if err != nil {
		cancel()
		return err
	}
	t0 := time.Now()
	if _, err := b.apply(3, "v2"); err != nil {
		cancel()
		return err
	}
	took := time.Since(t0)
	res := load.Stop()
	cancel()
	fmt.Printf("\n(b) rolling update of 3 replicas (maxSurge 1, maxUnavailable 0) under 8 concurrent clients\n")
	fmt.Printf("    %-28s %8.1fs (%.1fs per replica)\n", "apply --wait took", took.Seconds(), took.Seconds()/3)
	fmt.Printf("    %-28s %8d of %d (%s)\n", "failed requests", res.Failures, res.Requests, res)

	// (c) Idle RSS.
	time.Sleep(2 * time.Second) // let the rollout's garbage settle before reading RSS
	fmt.Printf("\n(c) berth server resident memory (VmRSS)\n")
	fmt.Printf("    %-28s %8d KiB\n", "idle, no workloads", rssEmpty)
	fmt.Printf("    %-28s %8d KiB\n", "idle, 3 replicas running", rssKiB(b.cmd.Process.Pid))
	fmt.Printf("    %-28s %8d KiB\n", "its containerd", rssKiB(containerdPid(dir)))
	// (d) A function at zero hit by a step from 0 to 50 concurrent clients.
	if err := b.stepLoad(ctx); err != nil {
		return err
	}

	// (e) last: with it before (b), the rollout's apply --wait was seen
	// to return at once (0.1 s) in one run.
	if part("e") {
		if err := b.routeChanges(ctx); err != nil {
			return err
		}
	}
	return b.cleanup(ctx)
}

func (b *bench) cleanup(ctx context.Context) error {
	_, _ = b.berth("delete", "service", "echo")
	_, _ = b.berth("delete", "function", "step")
	// Let the agent stop the containers before the server goes.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l, err := b.c.List(ctx, v1.KindInstance, ""); err == nil && len(l) == 0 {
			break
		}
	}
	return nil
}

// overhead runs bench/gateway against the echo container: direct, through
// nginx and through the server's gateway (tracing and metrics on, as by
// default), with the server's CPU time and allocations per request.
func (b *bench) overhead(ctx context.Context, duration time.Duration, conc, protos string, runs int) error {
	var svc v1.Service
	if err := b.c.Get(ctx, v1.KindService, "default", "echo", &svc); err != nil {
		return err
	}
	inst := svc.Status.Instances[0]
	directURL := fmt.Sprintf("http://%s:%d/", inst.IP, inst.Port)
	fmt.Printf("(a) gateway overhead, 1 replica of the echo image (resources: 2 CPUs), connections %s, %v each\n", conc, duration)
	gwBin := filepath.Join(b.dir, "bench-gateway")
	if out, err := exec.Command("go", "build", "-o", gwBin, "./bench/gateway").CombinedOutput(); err != nil {
		return fmt.Errorf("build bench/gateway: %v\n%s", err, out)
	}
	gw := exec.Command(gwBin,
		"-direct", directURL, "-gateway", "http://"+b.gateway+"/", "-host", "echo.default.berth.localhost",
		"-duration", duration.String(), "-c", conc, "-proto", protos, "-runs", fmt.Sprint(runs), "-tool", loadTool,
		"-gateway-pid", fmt.Sprint(b.cmd.Process.Pid), "-metrics", b.api+"/metrics", "-token", b.token)
	gw.Stdout, gw.Stderr = os.Stdout, os.Stderr
	if err := gw.Run(); err != nil {
		return fmt.Errorf("bench/gateway: %w", err)
	}
	fmt.Println()
	return nil
}

// routeChanges measures how long a change takes to reach the gateway (a
// new service's first ready instance; a deletion) and runs a burst of
// changes while the echo service is under load.
func (b *bench) routeChanges(ctx context.Context) error {
	fmt.Printf("(e) route changes\n")
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	load, err := loadgen.Start(lctx, loadgen.Options{URL: "http://" + b.gateway + "/", Host: "echo.default.berth.localhost", Concurrency: 8})
	if err != nil {
		return err
	}
	gwStatus := func(host string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.gateway+"/", nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	const n = 5
	var ready, deleted []time.Duration
	t0 := time.Now()
	// The burst: n services applied at once, then deleted at once.
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- b.applyService(fmt.Sprintf("burst-%d", i))
		}()
	}
	for i := range n {
		name := fmt.Sprintf("burst-%d", i)
		host := name + ".default.berth.localhost"
		// Ready in the API, then first routed by the gateway.
		var apiReady time.Time
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
			if apiReady.IsZero() {
				var svc v1.Service
				if b.c.Get(ctx, v1.KindService, "default", name, &svc) == nil && svc.Status.ReadyReplicas >= 1 {
					apiReady = time.Now()
				}
			}
			if gwStatus(host) == http.StatusOK {
				if apiReady.IsZero() {
					apiReady = time.Now() // routed before the status said ready
				}
				ready = append(ready, time.Since(apiReady))
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			return err
		}
	}
	created := time.Since(t0)
	t1 := time.Now()
	for i := range n {
		name := fmt.Sprintf("burst-%d", i)
		if err := b.c.Delete(ctx, v1.KindService, "default", name); err != nil {
			return err
		}
		gone := time.Now()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if st := gwStatus(name + ".default.berth.localhost"); st == http.StatusNotFound {
				deleted = append(deleted, time.Since(gone))
				break
			}
		}
	}
	res := load.Stop()
	fmt.Printf("    %-44s %s\n", "ready in the API → routed by the gateway", durations(ready))
	fmt.Printf("    %-44s %s\n", "deleted in the API → 404 from the gateway", durations(deleted))
	fmt.Printf("    %-44s %d services created in %.1fs, deleted in %.1fs\n", "burst", n, created.Seconds(), time.Since(t1).Seconds())
	fmt.Printf("    %-44s %d of %d (%s)\n\n", "failed requests to echo meanwhile", res.Failures, res.Requests, res)
	return nil
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none measured"
	}
	slices.Sort(ds)
	return fmt.Sprintf("min %.1f ms, median %.1f ms, max %.1f ms (%d changes)",
		float64(ds[0])/1e6, float64(ds[len(ds)/2])/1e6, float64(ds[len(ds)-1])/1e6, len(ds))
}

func (b *bench) applyService(name string) error {
	cmd := exec.Command(b.bin, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(b.dir, "data", "client.json"))
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: %s}
spec:
  image: berth.bench/echo:v1
  replicas: 1
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
`, name))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apply %s: %v %s", name, err, out)
	}
	return nil
}

// stepLoad applies a function at zero (max 10, concurrency 1) and measures
// how long a step to 50 concurrent clients takes to get it all the
// instances it may have, and how many requests fail meanwhile.
func (b *bench) stepLoad(ctx context.Context) error {
	cmd := exec.Command(b.bin, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(b.dir, "data", "client.json"))
	cmd.Stdin = strings.NewReader(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: step}
spec:
  image: berth.bench/echo:v1
  scale: {max: 10, idleTimeout: 30s}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apply step function: %v %s", err, out)
	}
	fnState := func() (ready int32, standby bool) {
		var fn v1.Function
		if b.c.Get(ctx, v1.KindFunction, "default", "step", &fn) != nil {
			return 0, false
		}
		for _, i := range fn.Status.Instances {
			standby = standby || i.Phase == v1.PhaseStandby
		}
		return fn.Status.ReadyInstances, standby
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if ready, standby := fnState(); ready == 0 && standby {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("step function never reached zero with a standby")
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	load, err := loadgen.Start(lctx, loadgen.Options{URL: "http://" + b.gateway + "/sleep?ms=100", Host: "step.default.berth.localhost", Concurrency: 50, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	var first, full time.Duration
	for time.Since(t0) < 20*time.Second {
		ready, _ := fnState()
		if ready >= 1 && first == 0 {
			first = time.Since(t0)
		}
		if ready >= 10 {
			full = time.Since(t0)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // keep the load on a little at full scale
	res := load.Stop()
	fmt.Printf("\n(d) function at zero (max 10, concurrency 1), step to 50 concurrent clients of a 100 ms handler\n")
	fmt.Printf("    %-28s %8.2fs\n", "first instance ready after", first.Seconds())
	if full > 0 {
		fmt.Printf("    %-28s %8.2fs\n", "all 10 instances ready after", full.Seconds())
	} else {
		fmt.Printf("    %-28s %8s\n", "all 10 instances ready after", "not within 20s")
	}
	fmt.Printf("    %-28s %8d of %d (%s)\n", "failed requests", res.Failures, res.Requests, res)
	return nil
}

func (b *bench) start() error {
	log, err := os.Create(filepath.Join(b.dir, "server.log"))
	if err != nil {
		return err
	}
	b.cmd = exec.Command(b.bin, "server", "--data-dir", filepath.Join(b.dir, "data"),
		"--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0",
		"--subnet-pool", "10.226.0.0/16", "--bridge-prefix", "bbench", "--containerd-namespace", "bench")
	b.cmd.Stdout, b.cmd.Stderr = log, log
	if err := b.cmd.Start(); err != nil {
		return err
	}
	cfgPath := filepath.Join(b.dir, "data", "client.json")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if raw, err := os.ReadFile(cfgPath); err == nil {
			var cc struct{ Addr, Token, Gateway string }
			if json.Unmarshal(raw, &cc) == nil {
				b.gateway, b.api, b.token = cc.Gateway, cc.Addr, cc.Token
				b.c = client.New(client.Config{Addr: cc.Addr, Token: cc.Token})
				if b.c.Health(context.Background()) == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not start; see %s", log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the server and the containerd it started (both by PID).
func (b *bench) stop() {
	pid := containerdPid(b.dir)
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	testutil.RemoveHostNetwork("bbench")
}

func (b *bench) berth(args ...string) (string, error) {
	cmd := exec.Command(b.bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(b.dir, "data", "client.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (b *bench) apply(replicas int, version string) (string, error) {
	manifest := fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: echo}
spec:
  image: berth.bench/echo:%s
  replicas: %d
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  terminationGracePeriodSeconds: 5
  # Explicit, so the container is not held to the default 500m and the
  # upstream is not what the gateway measurement measures.
  resources: {cpu: "2", memory: 256Mi}
`, version, replicas)
	cmd := exec.Command(b.bin, "apply", "-f", "-", "--wait", "--timeout", "5m")
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(b.dir, "data", "client.json"))
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("apply: %v\n%s", err, out)
	}
	return string(out), nil
}

func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var n int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
			return n
		}
	}
	return -1
}

func containerdPid(dir string) int {
	raw, err := os.ReadFile(filepath.Join(dir, "data", "containerd", "containerd.pid"))
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscanf(string(bytes.TrimSpace(raw)), "%d", &pid)
	return pid
}
