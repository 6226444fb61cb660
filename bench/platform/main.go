// Command platform measures a real Berth server end to end, each figure
// beside its baseline from the same run:
//
//	(a) gateway overhead: the echo container reached directly, through
//	    Debian's nginx, and through Berth's gateway (runs bench/gateway);
//	(b) a rolling update of 3 replicas under constant load: failed
//	    requests and seconds per replica;
//	(c) the server's resident memory when idle, with and without workloads.
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
	"os"
	"os/exec"
	"path/filepath"
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
	conc := flag.Int("c", 32, "concurrent connections for the gateway measurement")
	keep := flag.Bool("keep", false, "keep the data dir")
	flag.Parse()
	if err := run(*duration, *conc, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/platform:", err)
		os.Exit(1)
	}
}

type bench struct {
	dir, bin string
	cmd      *exec.Cmd
	c        *client.Client
	gateway  string
}

func run(duration time.Duration, conc int, keep bool) error {
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
	var svc v1.Service
	if err := b.c.Get(ctx, v1.KindService, "default", "echo", &svc); err != nil {
		return err
	}
	inst := svc.Status.Instances[0]
	directURL := fmt.Sprintf("http://%s:%d/", inst.IP, inst.Port)
	fmt.Printf("(a) gateway overhead, 1 replica of the echo image, %d connections, %v each\n", conc, duration)
	gw := exec.Command("go", "run", "./bench/gateway",
		"-direct", directURL, "-gateway", "http://"+b.gateway+"/", "-host", "echo.default.berth.localhost",
		"-duration", duration.String(), "-c", fmt.Sprint(conc))
	gw.Stdout, gw.Stderr = os.Stdout, os.Stderr
	if err := gw.Run(); err != nil {
		return fmt.Errorf("bench/gateway: %w", err)
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
				b.gateway = cc.Gateway
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
