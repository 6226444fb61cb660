package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/wasm"
	"berth.dev/berth/internal/wasm/wasmtest"
)

// wasmFn is a Wasm function the bench deploys beside the container one.
type wasmFn struct {
	name, what string
	module     []byte
	cold       series
}

// setupWasm pushes and applies three Wasm functions: the smallest module
// there is (a hand-assembled CGI hello), a plain Go main, and a Go
// net/http/cgi handler; it waits until each answers.
func setupWasm(ctx context.Context, c *client.Client, gw, dir string) ([]*wasmFn, error) {
	plain, err := wasmtest.BuildGoPlain(dir)
	if err != nil {
		return nil, err
	}
	cgi, err := wasmtest.BuildGoHandler(dir)
	if err != nil {
		return nil, err
	}
	fns := []*wasmFn{
		{name: "w-tiny", what: "wasm, 150-byte module", module: wasmtest.Hello()},
		{name: "w-plain", what: "wasm, Go main (no net/http)", module: plain},
		{name: "w-cgi", what: "wasm, Go net/http/cgi", module: cgi},
	}
	for _, f := range fns {
		var arc bytes.Buffer
		if _, err := build.WriteWasmArtifact(f.name+":v1", f.module, &arc); err != nil {
			return nil, err
		}
		if _, err := c.PushImageArchive(ctx, &arc); err != nil {
			return nil, err
		}
		manifest := fmt.Sprintf(`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":%q,"environment":"default"},
"spec":{"runtime":"wasm","image":"%s:v1","concurrency":1000,"scale":{"max":10},"timeout":"60s","resources":{"memory":"64Mi"}}}`, f.name, f.name)
		if err := applyJSON(ctx, c, manifest); err != nil {
			return nil, err
		}
		f.cold.name = "berth " + f.what
	}
	for _, f := range fns {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if code, _, _ := get(gw, f.name, "/"); code == 200 {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s does not answer", f.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return fns, nil
}

func applyJSON(ctx context.Context, c *client.Client, manifest string) error {
	obj, err := v1.DecodeObject([]byte(manifest))
	if err != nil {
		return err
	}
	v1.SetDefaults(obj)
	_, _, err = c.Apply(ctx, obj, false)
	return err
}

// get sends one request on a fresh connection, as a first request does.
func get(gw, fn, path string) (int, time.Duration, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+gw+path, nil)
	req.Host = fn + ".default.berth.localhost"
	t0 := time.Now()
	resp, err := fast.Do(req)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(t0), nil
}

// coldWasm times one request to each Wasm function: each is at zero, as
// every Wasm request is (no instance outlives its request).
func coldWasm(gw string, fns []*wasmFn) error {
	for _, f := range fns {
		code, d, err := get(gw, f.name, "/")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%s: status %d", f.name, code)
		}
		f.cold.d = append(f.cold.d, d)
	}
	return nil
}

// rss is a process's resident memory.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// wasmExtras measures, in the same server: requests/s of a hello handler
// as Wasm and as a container; the server's memory per running Wasm
// instance; how many instances run at once.
func wasmExtras(ctx context.Context, c *client.Client, gw string, pid int, image string, fns []*wasmFn, maxInstances int) error {
	// The container: the same echo image as the cold starts, kept warm.
	manifest := fmt.Sprintf(`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":"hello-c","environment":"default"},
"spec":{"image":%q,"concurrency":64,"scale":{"min":1,"max":1},"readinessProbe":{"httpGet":{"path":"/ready"}}}}`, image)
	if err := applyJSON(ctx, c, manifest); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if code, _, _ := get(gw, "hello-c", "/"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hello-c does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("\nrequests/s of a hello handler through the gateway, 16 keep-alive clients, 5 s each\n")
	fmt.Printf("%-34s %10s %10s %10s %9s\n", "function", "req/s", "p50", "p99", "failures")
	targets := []struct{ name, what string }{{"hello-c", "container (Go net/http, warm)"}}
	for _, f := range fns {
		targets = append(targets, struct{ name, what string }{f.name, f.what})
	}
	for _, tg := range targets {
		res, err := loadgen.Run(ctx, loadgen.Options{
			URL: "http://" + gw + "/", Host: tg.name + ".default.berth.localhost",
			Concurrency: 16, Duration: 5 * time.Second,
		})
		if err != nil {
			return err
		}
		fmt.Printf("%-34s %10.0f %10s %10s %9d\n", tg.what, res.RPS, ms(res.P50), ms(res.P99), res.Failures)
	}
	if m, err := containerMemory(ctx, c, "hello-c"); err == nil && m > 0 {
		fmt.Printf("\ncontainer instance memory (its cgroup, idle after the load): %s\n", mib(m))
	}

	return holdTable(gw, pid, "server", maxInstances, serverRunning(ctx, c, "w-cgi"))
}

// holdTable holds ever more Go (net/http/cgi) instances running at once
// and prints the resident memory of process pid at the peak: memory per
// running instance, and how many one machine holds. Requests arrive at
// wasmArrivals a second (less than two shared cores start: a Go
// instance's start is several ms of CPU) and each sleeps 3 s plus the time
// the others take to arrive, so that all are running at the end of the
// arrivals; with wasmArrivals 0 they arrive at once and sleep 3 s plus
// 5 ms each. running, when not nil, counts the instances running now; the
// peak is the N the memory is divided by.
func holdTable(gw string, pid int, whose string, maxInstances int, running func() int) error {
	fmt.Printf("\n%s memory with N Go (net/http/cgi) instances held running at once\n", whose)
	fmt.Printf("%8s %8s %9s %12s %12s %14s %10s\n", "N", "ok", "failures", "peak running", "RSS", "per instance", "wall")
	runtimeGC(gw)
	base := rss(pid)
	fmt.Printf("%8d %8s %9s %12s %12s %14s %10s\n", 0, "", "", "", mib(base), "", "")
	var per int64
	for _, n := range []int{100, 500, 1000, 2000, 4000, 8000} {
		// The machine is shared: never plan past 60 % of the memory
		// available when the step starts.
		if n > maxInstances || per*int64(n) > memAvailable()*6/10 {
			break
		}
		d := 3*time.Second + time.Duration(n)*5*time.Millisecond
		if wasmArrivals > 0 {
			d = 3*time.Second + time.Duration(n)*time.Second/time.Duration(wasmArrivals)
		}
		ok, failed, peak, peakRunning, wall, why := holdInstances(gw, "w-cgi", pid, n, d, running)
		held := "?"
		div := n
		if running != nil {
			held, div = strconv.Itoa(peakRunning), max(peakRunning, 1)
		}
		per = 0
		if ok > 0 {
			per = (peak - base) / int64(div)
		}
		fmt.Printf("%8d %8d %9d %12s %12s %14s %10s\n", n, ok, failed, held, mib(peak), mib(per), wall.Round(10*time.Millisecond))
		printFailures(why)
		if failed > 0 || peak > 14<<30 {
			break
		}
	}
	return nil
}

// memAvailable is the kernel's estimate of the memory that can be used
// without swapping (MemAvailable), or 12 GiB when it cannot be read.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 12 << 30
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 12 << 30
}

// runtimeGC lets the server settle between phases (the Go GC returns
// freed instance memory on its own schedule).
func runtimeGC(gw string) { time.Sleep(2 * time.Second) }

// failures counts failed requests by what they got: a status and the
// start of its body, or the client's error.
type failures struct {
	mu sync.Mutex
	by map[string]int
}

func (f *failures) add(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by == nil {
		f.by = map[string]int{}
	}
	f.by[why]++
}

// printFailures prints each reason with its count, most frequent first.
func printFailures(f *failures) {
	type reason struct {
		why string
		n   int
	}
	var rs []reason
	for w, n := range f.by {
		rs = append(rs, reason{w, n})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || rs[i].n == rs[j].n && rs[i].why < rs[j].why })
	for _, r := range rs {
		fmt.Printf("%8s %6d × %s\n", "", r.n, r.why)
	}
}

// holdInstances starts n requests that each keep an instance running for
// d, and samples the server's RSS meanwhile. why says what the failed
// requests got.
func holdInstances(gw, fn string, pid, n int, d time.Duration, running func() int) (ok, failed int, peak int64, peakRunning int, wall time.Duration, why *failures) {
	// The gateway allows 512 connections per client address: spread the
	// clients over loopback addresses, as many machines' clients would be.
	var next atomic.Int64
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			i := next.Add(1)
			src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/200%200), byte(1+i%200))}
			return (&net.Dialer{Timeout: 10 * time.Second, LocalAddr: src}).DialContext(ctx, network, addr)
		},
		MaxConnsPerHost: 0, MaxIdleConnsPerHost: n,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: d + 60*time.Second}
	var okN, failN atomic.Int64
	why = &failures{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var peakV, peakR atomic.Int64
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r := rss(pid); r > peakV.Load() {
					peakV.Store(r)
				}
				if running != nil {
					if r := int64(running()); r > peakR.Load() {
						peakR.Store(r)
					}
				}
			}
		}
	}()
	t0 := time.Now()
	for i := range n {
		if wasmArrivals > 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second / time.Duration(wasmArrivals))))
		}
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+gw+"/sleep?d="+d.String(), nil)
			req.Host = fn + ".default.berth.localhost"
			resp, err := cl.Do(req)
			if err != nil {
				failN.Add(1)
				why.add(shortErr(err))
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			if resp.StatusCode == 200 {
				okN.Add(1)
			} else {
				failN.Add(1)
				why.add(fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body))))
			}
		})
	}
	wg.Wait()
	wall = time.Since(t0)
	close(stop)
	time.Sleep(2 * time.Second)
	return int(okN.Load()), int(failN.Load()), peakV.Load(), int(peakR.Load()), wall, why
}

// shortErr is a client error without what differs per request (the
// source address), so that equal failures count together.
func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Sprintf("%s %s: %v", op.Op, op.Net, op.Err)
	}
	return err.Error()
}

// serverRunning reads the server's count of a Wasm function's running
// instances from its metrics, at most once a second (a scrape is not
// free); the capacity step's peak is divided by it.
func serverRunning(ctx context.Context, c *client.Client, fn string) func() int {
	var last time.Time
	var n int
	return func() int {
		if time.Since(last) < time.Second {
			return n
		}
		last = time.Now()
		rc, err := c.Metrics(ctx)
		if err != nil {
			return n
		}
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "berth_wasm_instances_running{") && strings.Contains(line, `workload="`+fn+`"`) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				n = int(v)
			}
		}
		return n
	}
}

// containerMemory reads a function's instance memory from the server's
// metrics (what `berth top` shows).
func containerMemory(ctx context.Context, c *client.Client, fn string) (int64, error) {
	rc, err := c.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var total float64
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "berth_instance_memory_bytes{") && strings.Contains(line, `name="`+fn+`"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return int64(total), sc.Err()
}

// wasmInProcess measures the Wasm path alone, in this process: the
// gateway and the Wasm host exactly as the server wires them (one
// in-process endpoint per function), without the API server, containerd
// or any network namespace, so it needs neither root nor the host lock.
// It prints the same rows as the full run's Wasm part.
func wasmInProcess(ctx context.Context, dir string, n, maxInstances int) error {
	host, err := wasm.New(wasm.Config{CacheDir: filepath.Join(dir, "wasm-cache")})
	if err != nil {
		return err
	}
	defer host.Close(ctx)
	plain, err := wasmtest.BuildGoPlain(dir)
	if err != nil {
		return err
	}
	cgi, err := wasmtest.BuildGoHandler(dir)
	if err != nil {
		return err
	}
	fns := []*wasmFn{
		{name: "w-tiny", what: "wasm, 150-byte module", module: wasmtest.Hello()},
		{name: "w-plain", what: "wasm, Go main (no net/http)", module: plain},
		{name: "w-cgi", what: "wasm, Go net/http/cgi", module: cgi},
	}
	g := gateway.New(gateway.Config{})
	var targets []gateway.Target
	for i, f := range fns {
		mod := f.module
		if err := host.Apply(ctx, wasm.Function{
			Environment: "default", Name: f.name, Revision: 1, Digest: fmt.Sprintf("sha256:%064d", i),
			Module:  func(context.Context) ([]byte, error) { return mod, nil },
			Timeout: time.Minute, MemoryBytes: 64 << 20,
		}); err != nil {
			return err
		}
		targets = append(targets, gateway.Target{
			Environment: "default", Name: f.name, Kind: v1.KindFunction, Concurrency: 10000,
			Endpoints: []gateway.Endpoint{{ID: "default." + f.name + "-wasm", Address: "wasm:" + f.name, Revision: 1, Transport: host.Transport("default", f.name)}},
		})
		f.cold.name = "in-process " + f.what
	}
	g.SetTargets(targets)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The listener and the server the real server's gateway has: the same
	// connection limits, header timeout and protocols.
	srv := connlimit.NewServer(g, connlimit.DefaultTimeouts)
	srv.Protocols = gateway.Protocols()
	go srv.Serve(connlimit.NewListener(ln, "gateway", connlimit.GatewayLimits, nil))
	defer srv.Close()
	gw := ln.Addr().String()
	for range n {
		if err := coldWasm(gw, fns); err != nil {
			return err
		}
	}
	fmt.Printf("Wasm functions through an in-process gateway, request to response on a fresh connection, %d each\n", n)
	fmt.Printf("%-40s %10s %10s %10s\n", "path", "p50", "p90", "p99")
	for _, f := range fns {
		fmt.Printf("%-40s %10s %10s %10s\n", f.cold.name, ms(f.cold.pct(0.5)), ms(f.cold.pct(0.9)), ms(f.cold.pct(0.99)))
	}
	fmt.Printf("\nrequests/s through the gateway, 16 keep-alive clients, 5 s each\n")
	fmt.Printf("%-34s %10s %10s %10s %9s\n", "function", "req/s", "p50", "p99", "failures")
	for _, f := range fns {
		res, err := loadgen.Run(ctx, loadgen.Options{
			URL: "http://" + gw + "/", Host: f.name + ".default.berth.localhost",
			Concurrency: 16, Duration: 5 * time.Second,
		})
		if err != nil {
			return err
		}
		fmt.Printf("%-34s %10.0f %10s %10s %9d\n", f.what, res.RPS, ms(res.P50), ms(res.P99), res.Failures)
	}
	return holdTable(gw, os.Getpid(), "this process (gateway, host and clients)", maxInstances, func() int {
		running, _ := host.Stats("default", "w-cgi")
		return running
	})
}
