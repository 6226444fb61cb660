// Command tracing measures what telemetry costs the gateway: the same load,
// in the same run, through gateways that differ only in tracing and
// metrics, in interleaved rounds, printed as one table against both off.
// The modes: both off; metrics only; the server's defaults (metrics, and
// tracing with parent-based sampling of 1% of new traces, every error and
// cold start kept); every request traced into the built-in store; the same
// with OTLP export to a loopback collector too.
//
//	go run ./bench/tracing -duration 5s -rounds 3 -c 32
//
// The upstream runs in a process of its own and the load comes from wrk
// when installed (else bench/loadgen in another process), so this process
// holds the gateways alone and its CPU time per request is theirs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
)

type mode struct {
	name    string
	metrics bool
	cfg     *tracing.Config // nil: tracing off
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measured time per mode and round")
	rounds := flag.Int("rounds", 3, "rounds; modes take turns within each, so drift hits all alike")
	conc := flag.Int("c", 32, "concurrent keep-alive connections")
	serveUp := flag.String("serve-upstream", "", "internal: serve the upstream on this address")
	runLoad := flag.String("run-load", "", "internal: run bench/loadgen with these JSON options")
	flag.Parse()
	if *serveUp != "" {
		serveUpstream(*serveUp)
		return
	}
	if *runLoad != "" {
		var o loadgen.Options
		json.Unmarshal([]byte(*runLoad), &o)
		r, err := loadgen.Run(context.Background(), o)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *duration, *rounds, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tracing:", err)
		os.Exit(1)
	}
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := gateway.NewServer(h, connlimit.DefaultTimeouts, nil)
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func serveUpstream(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Close()
	}()
	srv.Serve(ln)
}

func run(ctx context.Context, duration time.Duration, rounds, conc int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upAddr := ln.Addr().String()
	ln.Close()
	child := exec.Command(os.Args[0], "-serve-upstream", upAddr)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { child.Process.Signal(syscall.SIGTERM); child.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", upAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("upstream not listening on %s", upAddr)
		}
	}
	// A collector that accepts and discards: the cost measured is the
	// gateway's, not a collector's.
	colAddr, closeCol, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	if err != nil {
		return err
	}
	defer closeCol()

	modes := []mode{
		{"both off", false, nil},
		{"metrics only", true, nil},
		{"defaults (metrics, 1% sampled)", true, &tracing.Config{}},
		{"metrics, every request traced", true, &tracing.Config{SampleRatio: 1}},
		{"metrics, every request traced + OTLP", true, &tracing.Config{SampleRatio: 1, OTLPEndpoint: colAddr}},
	}
	type gw struct {
		url  string
		stop func()
	}
	gws := make([]gw, len(modes))
	for i, m := range modes {
		cfg := gateway.Config{DisableMetrics: !m.metrics}
		var tr *tracing.Tracing
		if m.cfg != nil {
			if tr, err = tracing.New(*m.cfg); err != nil {
				return err
			}
			cfg.TracerProvider, cfg.SampleRatio = tr.TracerProvider(), tr.SampleRatio()
		}
		g := gateway.New(cfg)
		g.SetTargets([]gateway.Target{{Environment: "bench", Name: "echo", Kind: "Service",
			Endpoints: []gateway.Endpoint{{ID: "e", Address: upAddr, Revision: 1}}}})
		addr, closeGW, err := serve(g)
		if err != nil {
			return err
		}
		gws[i] = gw{"http://" + addr + "/", func() {
			closeGW()
			g.CloseIdleConnections()
			if tr != nil {
				tr.Shutdown(context.Background())
			}
		}}
	}
	defer func() {
		for _, g := range gws {
			g.stop()
		}
	}()

	_, err = exec.LookPath("wrk")
	useWrk := err == nil
	type sample struct {
		res loadgen.Result
		cpu float64 // µs of this process per request
	}
	results := make([][]sample, len(modes))
	for r := 0; r < rounds; r++ {
		for i := range modes {
			opts := loadgen.Options{URL: gws[i].url, Host: "echo.bench.berth.localhost", Concurrency: conc, Duration: duration / 5}
			if _, err := load(ctx, useWrk, opts); err != nil { // warm-up
				return err
			}
			opts.Duration = duration
			cpu0 := selfCPU()
			res, err := load(ctx, useWrk, opts)
			if err != nil {
				return err
			}
			if res.Failures > 0 {
				return fmt.Errorf("%s: %d failures: %v", modes[i].name, res.Failures, res.Errors)
			}
			results[i] = append(results[i], sample{res, float64(selfCPU()-cpu0) / float64(time.Microsecond) / float64(max(res.Requests, 1))})
		}
	}

	tool := "bench/loadgen"
	if useWrk {
		tool = "wrk"
	}
	fmt.Printf("gateway throughput by telemetry: %d connections, %d rounds of %s, load from %s, median round\n\n", conc, rounds, duration, tool)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tREQ/S\trange\tvs OFF\tP50\tP99\tCPU/REQ\t")
	var base float64
	for i, m := range modes {
		rs := results[i]
		slices.SortFunc(rs, func(a, b sample) int { return int(a.res.RPS - b.res.RPS) })
		med := rs[len(rs)/2]
		if i == 0 {
			base = med.res.RPS
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f–%.0f\t%+.1f%%\t%.3fms\t%.3fms\t%.1fµs\t\n", m.name, med.res.RPS,
			rs[0].res.RPS, rs[len(rs)-1].res.RPS, (med.res.RPS/base-1)*100,
			float64(med.res.P50)/1e6, float64(med.res.P99)/1e6, med.cpu)
	}
	return tw.Flush()
}

// load runs in another process: wrk, or this program as bench/loadgen.
func load(ctx context.Context, useWrk bool, o loadgen.Options) (loadgen.Result, error) {
	if !useWrk {
		raw, _ := json.Marshal(o)
		out, err := exec.CommandContext(ctx, os.Args[0], "-run-load", string(raw)).Output()
		if err != nil {
			return loadgen.Result{}, err
		}
		var r loadgen.Result
		return r, json.Unmarshal(out, &r)
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t1", "-c"+strconv.Itoa(o.Concurrency),
		"-d"+strconv.Itoa(max(1, int(o.Duration.Seconds())))+"s", "--latency", "-H", "Host: "+o.Host, o.URL).CombinedOutput()
	if err != nil {
		return loadgen.Result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	var r loadgen.Result
	if m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`).FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[3])]
		if string(m[1]) == "50" {
			r.P50 = time.Duration(v * float64(unit))
		} else {
			r.P99 = time.Duration(v * float64(unit))
		}
	}
	if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out); m != nil {
		r.Failures, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if r.RPS == 0 {
		return r, fmt.Errorf("wrk printed no rate: %s", out)
	}
	return r, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
