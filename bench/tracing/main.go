// Command tracing measures what tracing costs the gateway: the same load,
// in the same run, through gateways that differ only in tracing (off; on
// with every request kept in the built-in store; on with OTLP export to a
// loopback collector too; on with 10% sampling), in interleaved rounds,
// printed as one table.
//
//	go run ./bench/tracing -duration 3s -rounds 3 -c 32
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
)

type mode struct {
	name string
	cfg  *tracing.Config // nil: tracing off
}

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measured time per mode and round")
	rounds := flag.Int("rounds", 3, "rounds; modes take turns within each, so drift hits all alike")
	conc := flag.Int("c", 32, "concurrent keep-alive connections")
	flag.Parse()
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
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func run(ctx context.Context, duration time.Duration, rounds, conc int) error {
	upAddr, closeUp, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	if err != nil {
		return err
	}
	defer closeUp()
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
		{"off", nil},
		{"on (store)", &tracing.Config{}},
		{"on (store + OTLP)", &tracing.Config{OTLPEndpoint: colAddr}},
		{"on (10% sampled)", &tracing.Config{SampleRatio: 0.1}},
	}
	type gw struct {
		url  string
		stop func()
	}
	gws := make([]gw, len(modes))
	for i, m := range modes {
		cfg := gateway.Config{}
		var tr *tracing.Tracing
		if m.cfg != nil {
			if tr, err = tracing.New(*m.cfg); err != nil {
				return err
			}
			cfg.TracerProvider = tr.TracerProvider()
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

	results := make([][]loadgen.Result, len(modes))
	for r := 0; r < rounds; r++ {
		for i := range modes {
			opts := loadgen.Options{URL: gws[i].url, Host: "echo.bench.berth.localhost", Concurrency: conc}
			opts.Duration = duration / 5
			if _, err := loadgen.Run(ctx, opts); err != nil { // warm-up
				return err
			}
			opts.Duration = duration
			res, err := loadgen.Run(ctx, opts)
			if err != nil {
				return err
			}
			if res.Failures > 0 {
				return fmt.Errorf("%s: %d failures: %v", modes[i].name, res.Failures, res.Errors)
			}
			results[i] = append(results[i], res)
		}
	}

	fmt.Printf("gateway throughput by tracing mode: %d connections, %d rounds of %s, median round\n\n", conc, rounds, duration)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tREQ/S\tvs OFF\tP50\tP99\t")
	var base float64
	for i, m := range modes {
		rs := results[i]
		slices.SortFunc(rs, func(a, b loadgen.Result) int { return int(a.RPS - b.RPS) })
		med := rs[len(rs)/2]
		if i == 0 {
			base = med.RPS
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%+.1f%%\t%.3fms\t%.3fms\t\n", m.name, med.RPS, (med.RPS/base-1)*100,
			float64(med.P50)/1e6, float64(med.P99)/1e6)
	}
	return tw.Flush()
}
