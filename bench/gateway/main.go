// Command gateway measures what Berth's gateway costs: the same load, in the
// same run, straight at a workload, through nginx (the yardstick, tuned as
// one would: worker_processes auto, keep-alive to the upstream), and
// through the gateway, printed as one table per protocol and connection
// count, with each proxy's CPU time and the gateway's allocations per
// request.
//
//	go run ./bench/gateway -self -duration 5s
//	go run ./bench/gateway -direct http://10.88.1.5:8080/ \
//	    -gateway http://127.0.0.1:8080/ -host echo.default.berth.localhost \
//	    -gateway-pid 1234 -metrics http://127.0.0.1:7070/metrics -token T
//
// HTTP/1.1 load comes from wrk when it is installed (a C client that
// leaves the proxies more of the CPU), else from bench/loadgen; h2c load
// from bench/loadgen, one connection per worker. Either runs in a process
// of its own, as does -self's upstream, so that this process holds the
// gateway alone and its allocations are the gateway's.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
)

type options struct {
	direct, gateway, host string
	directH2C             bool
	nginx                 string
	self                  bool
	selfGoroutines        bool
	gatewayGoroutines     string // -self-goroutines: the same gateway without its event loops
	selfTracing           bool
	duration, warmup      time.Duration
	conns                 []int
	protos                []string
	tool                  string
	runs                  int
	gatewayPID            int
	metricsURL, token     string
}

func main() {
	var o options
	var conns, protos string
	flag.StringVar(&o.direct, "direct", "", "URL of the workload reached directly")
	flag.BoolVar(&o.directH2C, "direct-h2c", false, "the workload speaks h2c too (measure it direct over h2c)")
	flag.StringVar(&o.gateway, "gateway", "", "URL of the Berth gateway")
	flag.StringVar(&o.host, "host", "", "Host header for the gateway, NAME.ENV.berth.localhost")
	flag.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx binary to measure as a reference proxy (empty: skip)")
	flag.BoolVar(&o.self, "self", false, "start an echo upstream (a child process) and a gateway in this process")
	flag.BoolVar(&o.selfTracing, "self-tracing", true, "with -self: tracing and metrics on, as the server's defaults")
	flag.BoolVar(&o.selfGoroutines, "self-goroutines", false, "with -self: also measure the same gateway served on goroutines (BERTH_GATEWAY_LOOPS=0), in the same run")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per path")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load per path before measuring")
	flag.StringVar(&conns, "c", "32", "concurrent keep-alive connections, a comma-separated list")
	flag.StringVar(&protos, "proto", "h1", "protocols to the proxies, a comma-separated list of h1 and h2c")
	flag.StringVar(&o.tool, "tool", "auto", "HTTP/1.1 load generator: wrk, go or auto (wrk when installed)")
	flag.IntVar(&o.runs, "runs", 1, "runs of every measurement, interleaved; the table shows the median and the spread")
	flag.IntVar(&o.gatewayPID, "gateway-pid", 0, "PID of the process serving -gateway, for its CPU time")
	flag.StringVar(&o.metricsURL, "metrics", "", "Prometheus URL of the gateway's process, for its allocations (go_memstats_mallocs_total)")
	flag.StringVar(&o.token, "token", "", "bearer token for -metrics")
	serveEcho := flag.String("serve-echo", "", "internal: serve the echo upstream on this address")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (with -self: the gateway) to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of this process (with -self: the gateway) to this file at the end")
	runLoad := flag.String("run-load", "", "internal: run bench/loadgen with these JSON options and print the result")
	flag.Parse()
	if *serveEcho != "" {
		serveEchoUpstream(*serveEcho)
		return
	}
	if *runLoad != "" {
		runLoadgen(*runLoad)
		return
	}
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench/gateway: -c %q: not a list of positive numbers\n", conns)
			os.Exit(2)
		}
		o.conns = append(o.conns, n)
	}
	for _, p := range strings.Split(protos, ",") {
		if p = strings.TrimSpace(p); p != "h1" && p != "h2c" {
			fmt.Fprintf(os.Stderr, "bench/gateway: -proto %q: h1 or h2c\n", p)
			os.Exit(2)
		}
		o.protos = append(o.protos, strings.TrimSpace(p))
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/gateway:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/gateway:", err)
			os.Exit(1)
		}
	}
}

type path struct {
	name string
	url  string
	host string
	// cpu reads the CPU time of the process(es) serving the path; nil:
	// not measured.
	cpu func() time.Duration
	// mallocs reads the serving process's allocation count; nil: not
	// measured.
	mallocs func() (uint64, error)
}

type cell struct {
	rps, p50, p90, p99 []float64
	cpuPerReq          []float64 // µs of the proxy's CPU per request
	allocsPerReq       []float64
	failures           int64
	errors             []string
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.self {
		if o.direct != "" || o.gateway != "" {
			return errors.New("-self starts its own upstream and gateway: drop -direct and -gateway")
		}
		direct, gw, gwGoroutines, host, cleanup, err := startSelf(o.selfTracing, o.selfGoroutines)
		if err != nil {
			return err
		}
		defer cleanup()
		o.direct, o.gateway, o.gatewayGoroutines, o.host, o.directH2C = direct, gw, gwGoroutines, host, true
	}
	if o.direct == "" && o.gateway == "" {
		return errors.New("nothing to measure: give -direct and/or -gateway with -host, or -self")
	}
	tool := o.tool
	if tool == "auto" {
		tool = "go"
		if _, err := exec.LookPath("wrk"); err == nil {
			tool = "wrk"
		}
	}

	paths := map[string][]path{} // by protocol
	var nginxH1, nginxH2 string
	var nginxCPU func() time.Duration
	if o.direct != "" && o.nginx != "" {
		if _, err := os.Stat(o.nginx); err != nil {
			fmt.Fprintf(out, "nginx skipped: %v\n", err)
		} else {
			var stopNginx func()
			var err error
			nginxH1, nginxH2, nginxCPU, stopNginx, err = startNginx(ctx, o.nginx, o.direct)
			if err != nil {
				return fmt.Errorf("nginx: %w", err)
			}
			defer stopNginx()
		}
	}
	gwCPU := func() time.Duration { return processCPU(o.gatewayPID) }
	var gwMallocs func() (uint64, error)
	switch {
	case o.self:
		gwCPU = selfCPU
		gwMallocs = func() (uint64, error) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.Mallocs, nil
		}
	case o.metricsURL != "":
		gwMallocs = func() (uint64, error) { return scrapeMallocs(ctx, o.metricsURL, o.token) }
	}
	if o.gatewayPID == 0 && !o.self {
		gwCPU = nil
	}
	for _, proto := range o.protos {
		var ps []path
		if o.direct != "" && (proto == "h1" || o.directH2C) {
			ps = append(ps, path{name: "direct", url: o.direct})
		}
		if nginxH1 != "" {
			u := nginxH1
			if proto == "h2c" {
				u = nginxH2
			}
			ps = append(ps, path{name: "nginx", url: u, cpu: nginxCPU})
		}
		if o.gateway != "" {
			ps = append(ps, path{name: "berth gateway", url: o.gateway, host: o.host, cpu: gwCPU, mallocs: gwMallocs})
		}
		if o.gatewayGoroutines != "" {
			ps = append(ps, path{name: "gateway, goroutines", url: o.gatewayGoroutines, host: o.host, cpu: gwCPU, mallocs: gwMallocs})
		}
		paths[proto] = ps
	}

	fmt.Fprintf(out, "%s per path after %s warm-up, %d run(s) interleaved, GOMAXPROCS=%d, %d CPUs, HTTP/1.1 load from %s, h2c load from bench/loadgen\n",
		o.duration, o.warmup, o.runs, runtime.GOMAXPROCS(0), runtime.NumCPU(), tool)
	for _, proto := range o.protos {
		for _, conc := range o.conns {
			ps := paths[proto]
			cells := make([]cell, len(ps))
			for range o.runs {
				for i, p := range ps {
					if err := measure(ctx, o, tool, proto, conc, p, &cells[i]); err != nil {
						return err
					}
				}
			}
			printTable(out, proto, conc, o.runs, ps, cells)
		}
	}
	return nil
}

func measure(ctx context.Context, o options, tool, proto string, conc int, p path, c *cell) error {
	lo := loadOptions{URL: p.url, Host: p.host, Concurrency: conc, H2C: proto == "h2c"}
	if o.warmup > 0 {
		lo.Duration = o.warmup
		if _, err := load(ctx, tool, lo); err != nil {
			return err
		}
	}
	lo.Duration = o.duration
	var cpu0 time.Duration
	var m0 uint64
	if p.cpu != nil {
		cpu0 = p.cpu()
	}
	if p.mallocs != nil {
		var err error
		if m0, err = p.mallocs(); err != nil {
			return err
		}
	}
	r, err := load(ctx, tool, lo)
	if err != nil {
		return fmt.Errorf("%s, %s, %d connections: %w", p.name, proto, conc, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if p.cpu != nil && r.Requests > 0 {
		c.cpuPerReq = append(c.cpuPerReq, float64(p.cpu()-cpu0)/float64(time.Microsecond)/float64(r.Requests))
	}
	if p.mallocs != nil && r.Requests > 0 {
		m1, err := p.mallocs()
		if err != nil {
			return err
		}
		c.allocsPerReq = append(c.allocsPerReq, float64(m1-m0)/float64(r.Requests))
	}
	c.rps = append(c.rps, r.RPS)
	c.p50 = append(c.p50, ms(r.P50))
	c.p90 = append(c.p90, ms(r.P90))
	c.p99 = append(c.p99, ms(r.P99))
	c.failures += r.Failures
	c.errors = append(c.errors, r.Errors...)
	return nil
}

func printTable(out io.Writer, proto string, conc, runs int, ps []path, cells []cell) {
	name := map[string]string{"h1": "HTTP/1.1", "h2c": "h2c (HTTP/2 cleartext)"}[proto]
	fmt.Fprintf(out, "\n%s, %d connection(s)\n", name, conc)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', tabwriter.AlignRight)
	spread := ""
	if runs > 1 {
		spread = "\trange"
	}
	fmt.Fprintf(tw, "path\trequests/s%s\tvs nginx\tp50\tp90\tp99\tproxy CPU/req\tallocs/req\tfailures\t\n", spread)
	var nginxRPS float64
	for i, p := range ps {
		if p.name == "nginx" {
			nginxRPS = median(cells[i].rps)
		}
	}
	for i, p := range ps {
		c := cells[i]
		rps := median(c.rps)
		fmt.Fprintf(tw, "%s\t%.0f", p.name, rps)
		if runs > 1 {
			fmt.Fprintf(tw, "\t%.0f–%.0f", slices.Min(c.rps), slices.Max(c.rps))
		}
		vs := ""
		if nginxRPS > 0 && p.name != "direct" {
			vs = fmt.Sprintf("%.0f%%", rps/nginxRPS*100)
		}
		cpu, allocs := "", ""
		if len(c.cpuPerReq) > 0 {
			cpu = fmt.Sprintf("%.1fµs", median(c.cpuPerReq))
		}
		if len(c.allocsPerReq) > 0 {
			allocs = fmt.Sprintf("%.1f", median(c.allocsPerReq))
		}
		fmt.Fprintf(tw, "\t%s\t%.3fms\t%.3fms\t%.3fms\t%s\t%s\t%d\t\n", vs, median(c.p50), median(c.p90), median(c.p99), cpu, allocs, c.failures)
	}
	tw.Flush()
	for i, p := range ps {
		for _, e := range cells[i].errors {
			fmt.Fprintf(out, "%s: %s\n", p.name, e)
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loadOptions is what a load run is told, also as JSON to a child process.
type loadOptions struct {
	URL, Host   string
	Concurrency int
	Duration    time.Duration
	H2C         bool
}

// load runs one load in a process of its own: wrk, or this program as a
// bench/loadgen child.
func load(ctx context.Context, tool string, lo loadOptions) (loadgen.Result, error) {
	if tool == "wrk" && !lo.H2C {
		return runWrk(ctx, lo)
	}
	raw, _ := json.Marshal(lo)
	cmd := exec.CommandContext(ctx, os.Args[0], "-run-load", string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return loadgen.Result{}, fmt.Errorf("loadgen: %w", err)
	}
	var r loadgen.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return loadgen.Result{}, fmt.Errorf("loadgen said %q: %w", out, err)
	}
	return r, nil
}

func runLoadgen(raw string) {
	var lo loadOptions
	if err := json.Unmarshal([]byte(raw), &lo); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r, err := loadgen.Run(context.Background(), loadgen.Options{URL: lo.URL, Host: lo.Host, Concurrency: lo.Concurrency,
		Duration: lo.Duration, H2C: lo.H2C, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal   = regexp.MustCompile(`(\d+) requests in`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk runs wrk with one thread (the load generator keeps to one core
// of two) and reads its summary.
func runWrk(ctx context.Context, lo loadOptions) (loadgen.Result, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(lo.Concurrency), "-d" + strconv.Itoa(max(1, int(lo.Duration.Seconds()))) + "s", "--latency", "--timeout", "10s"}
	if lo.Host != "" {
		args = append(args, "-H", "Host: "+lo.Host)
	}
	args = append(args, lo.URL)
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return loadgen.Result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	s := string(out)
	var r loadgen.Result
	if m := wrkRPS.FindStringSubmatch(s); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkTotal.FindStringSubmatch(s); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		switch m[1] {
		case "50":
			r.P50 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Failures += n
		r.Errors = append(r.Errors, "wrk: "+m[0])
	}
	if m := wrkSockErr.FindStringSubmatch(s); m != nil {
		for _, x := range m[1:] {
			n, _ := strconv.ParseInt(x, 10, 64)
			r.Failures += n
		}
		r.Errors = append(r.Errors, "wrk: "+m[0])
	}
	if r.RPS == 0 {
		return r, fmt.Errorf("wrk printed no rate: %s", s)
	}
	return r, nil
}

// startSelf starts the echo upstream as a child process and serves a
// Gateway in front of it in this process, with tracing (the server's
// default sampling) and metrics when asked, as the server runs it.
func startSelf(withTelemetry, goroutinesToo bool) (direct, gw, gwGoroutines, host string, cleanup func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", "", "", "", nil, err
	}
	upAddr := fmt.Sprintf("127.0.0.1:%d", port)
	child := exec.Command(os.Args[0], "-serve-echo", upAddr)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		return "", "", "", "", nil, err
	}
	stopChild := func() { child.Process.Signal(syscall.SIGTERM); child.Wait() }
	if err := waitListening(upAddr, 10*time.Second); err != nil {
		stopChild()
		return "", "", "", "", nil, err
	}
	cfg := gateway.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var tr *tracing.Tracing
	if withTelemetry {
		if tr, err = tracing.New(tracing.Config{}); err != nil {
			stopChild()
			return "", "", "", "", nil, err
		}
		cfg.TracerProvider, cfg.SampleRatio = tr.TracerProvider(), tr.SampleRatio()
	}
	g := gateway.New(cfg)
	g.SetTargets([]gateway.Target{{
		Environment: "bench", Name: "echo", Kind: "Service",
		Endpoints: []gateway.Endpoint{{ID: "echo-1", Address: upAddr, Revision: 1}},
	}})
	gs, err := serve(g)
	if err != nil {
		stopChild()
		return "", "", "", "", nil, err
	}
	var gs2 server
	if goroutinesToo {
		// The loops are chosen when the server is made.
		prior, had := os.LookupEnv("BERTH_GATEWAY_LOOPS")
		os.Setenv("BERTH_GATEWAY_LOOPS", "0")
		gs2, err = serve(g)
		if had {
			os.Setenv("BERTH_GATEWAY_LOOPS", prior)
		} else {
			os.Unsetenv("BERTH_GATEWAY_LOOPS")
		}
		if err != nil {
			gs.Close()
			stopChild()
			return "", "", "", "", nil, err
		}
		gwGoroutines = "http://" + gs2.Addr().String() + "/"
	}
	cleanup = func() {
		gs.Close()
		if gs2.Server != nil {
			gs2.Close()
		}
		g.CloseIdleConnections()
		if tr != nil {
			tr.Shutdown(context.Background())
		}
		stopChild()
	}
	return "http://" + upAddr + "/", "http://" + gs.Addr().String() + "/", gwGoroutines, "echo.bench.berth.localhost", cleanup, nil
}

// serveEchoUpstream is -self's upstream: a small answer, HTTP/1.1 and h2c.
func serveEchoUpstream(addr string) {
	body := []byte("hello from the echo upstream\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second, Protocols: h1h2c()}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Close()
	}()
	srv.Serve(ln)
}

func h1h2c() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

type server struct {
	*gateway.Server
	ln net.Listener
}

func (s server) Addr() net.Addr { return s.ln.Addr() }

func serve(h http.Handler) (server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	// The gateway's own server, as the berth server runs it.
	s := server{Server: gateway.NewServer(h, connlimit.DefaultTimeouts, nil), ln: ln}
	go s.Serve(ln)
	return s, nil
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s", addr, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startNginx runs nginx as a keep-alive reverse proxy to direct, with its
// whole state in a temp dir, on two ports: HTTP/1.1 and h2c (HTTP/2 with
// prior knowledge). It returns both URLs (with direct's path) and a reader
// of its processes' CPU time.
func startNginx(ctx context.Context, bin, direct string) (h1, h2 string, cpu func() time.Duration, stop func(), err error) {
	du, err := url.Parse(direct)
	if err != nil || du.Host == "" {
		return "", "", nil, nil, fmt.Errorf("bad -direct URL %q", direct)
	}
	upstream := du.Host
	if du.Port() == "" {
		upstream = net.JoinHostPort(du.Hostname(), "80")
	}
	port, err := freePort()
	if err != nil {
		return "", "", nil, nil, err
	}
	port2, err := freePort()
	if err != nil {
		return "", "", nil, nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-nginx-")
	if err != nil {
		return "", "", nil, nil, err
	}
	// Workers run as an unprivileged user when started as root; they must
	// reach their temp paths inside the prefix.
	os.Chmod(dir, 0o755)
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 100000;
	http2_max_requests 1000000;
	upstream direct {
		server %[2]s;
		keepalive 128;
		keepalive_requests 100000;
	}
	server {
		listen 127.0.0.1:%[3]d;
		listen 127.0.0.1:%[4]d http2;
		location / {
			proxy_pass http://direct;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
		}
	}
}
`, dir, upstream, port, port2)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		// SIGQUIT is nginx's graceful shutdown; it ends its own workers.
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			os.RemoveAll(dir)
			return "", "", nil, nil, fmt.Errorf("exited before listening (%v): %s", err, strings.TrimSpace(string(log)))
		case <-ctx.Done():
			stop()
			return "", "", nil, nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", "", nil, nil, fmt.Errorf("not listening on %s after 10s", addr)
		}
	}
	master := cmd.Process.Pid
	cpu = func() time.Duration {
		// The master and its workers, which do the proxying.
		total := processCPU(master)
		for _, pid := range childrenOf(master) {
			total += processCPU(pid)
		}
		return total
	}
	u := *du
	u.Host = addr
	u.Scheme = "http"
	u2 := u
	u2.Host = fmt.Sprintf("127.0.0.1:%d", port2)
	return u.String(), u2.String(), cpu, stop, nil
}

// processCPU is a process's user and system time so far (0 if unknown).
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenOf lists the PIDs whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// scrapeMallocs reads go_memstats_mallocs_total from a Prometheus
// endpoint.
func scrapeMallocs(ctx context.Context, u, token string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return uint64(f), err
		}
	}
	return 0, fmt.Errorf("%s: no go_memstats_mallocs_total (status %d)", u, res.StatusCode)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
