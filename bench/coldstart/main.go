// Command coldstart measures a function's cold start, request to response,
// beside the floors measured in the same run on the same image:
//
//	runc run            the OCI runtime alone (host network, no CNI)
//	containerd          CNI attach + containerd create + start + first ready probe
//	containerd standby  start + first ready probe of a prepared container
//	berth               a request to a function at zero through the gateway
//
// and where the containerd path spends its time. Run as root:
//
//	go run ./bench/coldstart [-n 30] [-moments 6] [-runtimes 100]
//
// With -moments N it also runs N rounds of the hard moments (moments.go):
// right after a deploy, after a burst, after a server restart, two
// functions at once, ten instances at once. With -runtimes N, N cold
// starts each of Go, Python, Node and Lambda handler (go-lambda,
// node-lambda) functions (runtimes.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network/cni"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/runtime/containerd"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

const image = "berth.bench/echo:cold"

var (
	maxWasmInstances int
	wasmArrivals     int
)

func main() {
	n := flag.Int("n", 30, "cold starts per path")
	flag.IntVar(&maxWasmInstances, "wasm-max-instances", 8000, "the most Wasm instances to hold at once in the capacity step (0: skip the Wasm extras)")
	flag.IntVar(&wasmArrivals, "wasm-arrivals", 100, "requests a second arriving in the Wasm capacity step (0: all at once)")
	rounds := flag.Int("moments", 0, "rounds of the hard moments (about 20 cold starts each); 0 skips them")
	perRuntime := flag.Int("runtimes", 0, "cold starts of Go, Python, Node and Lambda handler functions each; 0 skips them")
	flag.StringVar(&runtimeFunctions, "functions", "", "with -runtimes, only these functions (comma-separated, e.g. go-hello,python-imports,node-imports); empty: all")
	wasmOnly := flag.Bool("wasm-inprocess", false, "measure only the Wasm path, through an in-process gateway (no root, no containerd, no API server)")
	flag.Parse()
	if *wasmOnly {
		dir, err := os.MkdirTemp("", "bcold-wasm-")
		if err == nil {
			defer os.RemoveAll(dir)
			err = wasmInProcess(context.Background(), dir, *n, maxWasmInstances)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/coldstart:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *rounds, *perRuntime); err != nil {
		fmt.Fprintln(os.Stderr, "bench/coldstart:", err)
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
	i := int(p*float64(len(d)-1) + 0.5)
	return d[i]
}

func run(n, rounds, perRuntime int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bcold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock, stop, err := testutil.StartContainerd(filepath.Join(dir, "c"))
	if err != nil {
		return err
	}
	defer stop()
	tar, err := testimage.Build(ctx, dir, image, testimage.Options{Version: "cold"})
	if err != nil {
		return err
	}
	drv, err := containerd.New(ctx, containerd.Config{Socket: sock, Namespace: "coldbench", StateDir: filepath.Join(dir, "state")})
	if err != nil {
		return err
	}
	defer drv.Close()
	f, err := os.Open(tar)
	if err != nil {
		return err
	}
	if _, err := drv.ImportImage(ctx, f); err != nil {
		return err
	}
	f.Close()
	net, err := cni.New(ctx, cni.Config{DataDir: filepath.Join(dir, "net"), SubnetPool: "10.227.0.0/16", BridgePrefix: "bcold"})
	if err != nil {
		return err
	}
	defer testutil.RemoveHostNetwork("bcold")

	runcS, err := runcFloor(ctx, dir, n)
	if err != nil {
		return fmt.Errorf("runc floor: %w", err)
	}
	parts := map[string]*series{}
	for _, p := range []string{"cni attach", "create", "start", "first ready"} {
		parts[p] = &series{name: "  " + p}
	}
	plain, standby := series{name: "containerd create+start"}, series{name: "containerd standby start"}
	thaw := series{name: "frozen standby thaw"}
	var standbyMem, frozenMem []uint64
	for i := range n {
		id := fmt.Sprintf("cold-%d", i)
		t0 := time.Now()
		att, err := net.Attach(ctx, id, "default")
		if err != nil {
			return err
		}
		t1 := time.Now()
		spec := runtime.ContainerSpec{ID: id, Image: image, NetNSPath: att.NetNSPath, Env: []string{"PORT=8080"}, LogPath: filepath.Join(dir, "logs", id+".log")}
		if err := drv.Create(ctx, spec); err != nil {
			return err
		}
		t2 := time.Now()
		if err := drv.Start(ctx, id); err != nil {
			return err
		}
		t3 := time.Now()
		if err := waitReady(ctx, "http://"+att.IP.String()+":8080/ready"); err != nil {
			return err
		}
		t4 := time.Now()
		parts["cni attach"].d = append(parts["cni attach"].d, t1.Sub(t0))
		parts["create"].d = append(parts["create"].d, t2.Sub(t1))
		parts["start"].d = append(parts["start"].d, t3.Sub(t2))
		parts["first ready"].d = append(parts["first ready"].d, t4.Sub(t3))
		plain.d = append(plain.d, t4.Sub(t0))
		// The same container again, prepared ahead: only start + ready.
		drv.Stop(ctx, id, 0)
		drv.Delete(ctx, id)
		if err := drv.Create(ctx, spec); err != nil {
			return err
		}
		// What a standby holds while it waits: the created task's cgroup
		// (runc's init, paused before the program's exec).
		if st, err := drv.Stats(ctx, id); err == nil {
			standbyMem = append(standbyMem, st.MemoryBytes)
		}
		s0 := time.Now()
		if err := drv.Start(ctx, id); err != nil {
			return err
		}
		if err := waitReady(ctx, "http://"+att.IP.String()+":8080/ready"); err != nil {
			return err
		}
		standby.d = append(standby.d, time.Since(s0))
		// Started, ready, then frozen: a wake is a thaw and the first
		// response.
		if err := drv.Freeze(ctx, id); err != nil {
			return err
		}
		if st, err := drv.Stats(ctx, id); err == nil {
			frozenMem = append(frozenMem, st.MemoryBytes)
		}
		f0 := time.Now()
		if err := drv.Thaw(ctx, id); err != nil {
			return err
		}
		if err := waitReady(ctx, "http://"+att.IP.String()+":8080/ready"); err != nil {
			return err
		}
		thaw.d = append(thaw.d, time.Since(f0))
		drv.Stop(ctx, id, 0)
		drv.Delete(ctx, id)
		net.Detach(ctx, id, "default")
	}

	berth, wasmFns, extras, err := berthColdStarts(ctx, dir, sock, tar, n)
	if err != nil {
		return fmt.Errorf("berth: %w", err)
	}

	fmt.Printf("cold start, request to first response, %d starts each, static Go HTTP server image\n", n)
	fmt.Printf("%-30s %10s %10s %10s\n", "path", "p50", "p90", "p99")
	all := []series{runcS, plain, *parts["cni attach"], *parts["create"], *parts["start"], *parts["first ready"], standby, thaw, berth}
	for _, f := range wasmFns {
		all = append(all, f.cold)
	}
	for _, s := range all {
		fmt.Printf("%-40s %10s %10s %10s\n", s.name, ms(s.pct(0.5)), ms(s.pct(0.9)), ms(s.pct(0.99)))
	}
	if len(standbyMem) > 0 {
		slices.Sort(standbyMem)
		fmt.Printf("memory of a standby (its cgroup, created task not started): median %.2f MiB over %d; "+
			"the network namespace and veth pair add kernel memory outside it\n",
			float64(standbyMem[len(standbyMem)/2])/(1<<20), len(standbyMem))
	}
	if len(frozenMem) > 0 {
		slices.Sort(frozenMem)
		fmt.Printf("memory of a frozen standby of the same image (started, ready, frozen): median %.2f MiB over %d\n",
			float64(frozenMem[len(frozenMem)/2])/(1<<20), len(frozenMem))
	}
	if err := extras(); err != nil {
		return fmt.Errorf("wasm: %w", err)
	}
	if rounds > 0 {
		if err := moments(ctx, dir, sock, tar, rounds); err != nil {
			return fmt.Errorf("moments: %w", err)
		}
	}
	if perRuntime > 0 {
		if err := runtimes(ctx, dir, sock, tar, perRuntime); err != nil {
			return fmt.Errorf("runtimes: %w", err)
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

var fast = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// waitReady polls url until it answers 200, in sub-millisecond steps.
func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := fast.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return fmt.Errorf("%s not ready in 30s", url)
}

// runcFloor times `runc run -d` of the echo binary in a plain bundle on the
// host network until it answers.
func runcFloor(ctx context.Context, dir string, n int) (series, error) {
	s := series{name: "runc run (host network)"}
	bundle := filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
		return s, err
	}
	bin, err := buildEcho(ctx, dir)
	if err != nil {
		return s, err
	}
	if err := os.Rename(bin, filepath.Join(rootfs, "echo")); err != nil {
		return s, err
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return s, fmt.Errorf("runc spec: %v %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	raw, _ := os.ReadFile(cfgPath)
	var spec map[string]any
	json.Unmarshal(raw, &spec)
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"/echo"}
	proc["terminal"] = false
	proc["env"] = []string{"PATH=/", "PORT=18999"}
	linux := spec["linux"].(map[string]any)
	var nss []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			nss = append(nss, ns)
		}
	}
	linux["namespaces"] = nss
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	raw, _ = json.Marshal(spec)
	os.WriteFile(cfgPath, raw, 0o644)
	for i := range n {
		id := fmt.Sprintf("bcold-runc-%d-%d", os.Getpid(), i)
		t0 := time.Now()
		// The container inherits runc's stdio: a file, not a pipe, or
		// reading runc's output would wait for the container to exit.
		out, err := os.Create(filepath.Join(dir, "runc.out"))
		if err != nil {
			return s, err
		}
		cmd := exec.Command("runc", "run", "-d", "--bundle", bundle, id)
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		out.Close()
		if err != nil {
			msg, _ := os.ReadFile(out.Name())
			return s, fmt.Errorf("runc run: %v %s", err, msg)
		}
		if err := waitReady(ctx, "http://127.0.0.1:18999/ready"); err != nil {
			return s, err
		}
		s.d = append(s.d, time.Since(t0))
		exec.Command("runc", "kill", id, "KILL").Run()
		exec.Command("runc", "delete", "-f", id).Run()
	}
	return s, nil
}

func buildEcho(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "echo-bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./internal/testutil/testimage/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v %s", err, b)
	}
	return out, nil
}

// berthColdStarts runs a real server and times requests to a function at
// zero through the gateway. Wasm functions deployed beside it get one
// request each per round, in the same run. extras, called after the table
// is printed, measures throughput, memory and capacity on the same server
// and then stops it; it must be called.
func berthColdStarts(ctx context.Context, dir, sock, tar string, n int) (s series, fns []*wasmFn, extras func() error, err error) {
	s = series{name: "berth function (gateway)"}
	bin := filepath.Join(dir, "berth")
	if err := buildBerth(bin); err != nil {
		return s, nil, nil, err
	}
	srv := &berthServer{bin: bin, data: filepath.Join(dir, "data"), sock: sock, logPath: filepath.Join(dir, "server.log"),
		namespace: "coldberth", pool: "10.228.0.0/16", bridges: "bcoldb"}
	stop := func() {
		srv.stop()
		testutil.RemoveHostNetwork(srv.bridges)
	}
	if err := srv.start(ctx); err != nil {
		stop()
		return s, nil, nil, err
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	c, gw := srv.c, srv.gw
	f, _ := os.Open(tar)
	_, err = c.ImportImage(ctx, f)
	f.Close()
	if err != nil {
		return s, nil, nil, err
	}
	manifest := fmt.Sprintf(`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":"cold","environment":"default"},
"spec":{"image":%q,"scale":{"max":1,"idleTimeout":"1s"},"readinessProbe":{"httpGet":{"path":"/ready"}}}}`, image)
	if err := applyJSON(ctx, c, manifest); err != nil {
		return s, nil, nil, err
	}
	fns, err = setupWasm(ctx, c, gw, dir)
	if err != nil {
		return s, nil, nil, fmt.Errorf("wasm: %w", err)
	}
	for range n {
		// Wait until it is at zero with a prepared standby.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var fn v1.Function
			if err := c.Get(ctx, v1.KindFunction, "default", "cold", &fn); err != nil {
				return s, nil, nil, err
			}
			prepared := false
			for _, i := range fn.Status.Instances {
				prepared = prepared || (i.Phase == v1.PhaseStandby && i.IP != "") // an address: prepared, not only asked for
			}
			if prepared && fn.Status.ReadyInstances == 0 && len(fn.Status.Instances) == 1 {
				break
			}
			if time.Now().After(deadline) {
				return s, nil, nil, fmt.Errorf("function did not go back to zero: %+v", fn.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		code, d, err := get(gw, "cold", "/")
		if err != nil {
			return s, nil, nil, err
		}
		if code != 200 {
			return s, nil, nil, fmt.Errorf("status %d", code)
		}
		s.d = append(s.d, d)
		if err := coldWasm(gw, fns); err != nil {
			return s, nil, nil, err
		}
	}
	extras = func() error {
		defer stop()
		if maxWasmInstances <= 0 {
			return nil
		}
		return wasmExtras(ctx, c, gw, srv.cmd.Process.Pid, image, fns, maxWasmInstances)
	}
	return s, fns, extras, nil
}
