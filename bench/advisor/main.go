// Command advisor checks the advisor's model against reality. It plays
// three traffic shapes of the Azure Functions trace study (Shahrad et al.,
// "Serverless in the Wild", USENIX ATC 2020: a steady stream, bursts with
// long quiet gaps, and rare invocations) for real, each against a Service
// (one replica) and a Function (Berth's defaults: concurrency 1, max 10,
// idle timeout 60s) of the same echo image, on real containers, with the
// same request at the same moment to both. Then it asks the server's
// advisor, over exactly the minutes played:
//
//	predicted   the Function way replayed from the Service's recorded
//	            traffic (what `berth advise SERVICE` answers)
//	own model   the Function replayed from its own recorded traffic
//	measured    what the Function really used, as the history recorded it
//
// and prints instance-seconds and cold starts side by side, with the
// error of the prediction against the measurement (the target: within
// 15 %). Run as root (it starts its own server and containerd):
//
//	go run ./bench/advisor [-minutes 20] [-shapes steady,bursty,rare] [-seed 1]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

const image = "berth.bench/echo:advisor"

// shape is a traffic shape: when requests arrive over the run, and how
// long the handler takes.
type shape struct {
	name    string
	handler time.Duration
	about   string
	times   func(r *rand.Rand, run time.Duration) []time.Duration
}

// poisson returns arrival times of rate per second in [from, to).
func poisson(r *rand.Rand, rate float64, from, to time.Duration) []time.Duration {
	var out []time.Duration
	for t := from; ; {
		t += time.Duration(r.ExpFloat64() / rate * float64(time.Second))
		if t >= to {
			return out
		}
		out = append(out, t)
	}
}

var shapes = []shape{
	{
		name: "steady", handler: 50 * time.Millisecond,
		about: "Poisson arrivals, 4 a second, 50 ms each, the whole run",
		times: func(r *rand.Rand, run time.Duration) []time.Duration { return poisson(r, 4, 0, run) },
	},
	{
		name: "bursty", handler: 250 * time.Millisecond,
		about: "every 5 minutes a 40 s burst of 15 a second, 250 ms each; nothing between",
		times: func(r *rand.Rand, run time.Duration) []time.Duration {
			var out []time.Duration
			for at := time.Minute; at < run; at += 5 * time.Minute {
				out = append(out, poisson(r, 15, at, min(at+40*time.Second, run))...)
			}
			return out
		},
	},
	{
		name: "rare", handler: 20 * time.Millisecond,
		about: "Poisson arrivals, one every 75 s on average, 20 ms each",
		times: func(r *rand.Rand, run time.Duration) []time.Duration { return poisson(r, 1.0/75, 0, run) },
	},
}

func main() {
	minutes := flag.Int("minutes", 20, "length of the run, in whole minutes")
	only := flag.String("shapes", "steady,bursty,rare", "shapes to play")
	seed := flag.Uint64("seed", 1, "seed of the arrival times")
	keep := flag.Bool("keep", false, "keep the data dir")
	flag.Parse()
	var picked []shape
	for _, name := range strings.Split(*only, ",") {
		found := false
		for _, s := range shapes {
			if s.name == strings.TrimSpace(name) {
				picked, found = append(picked, s), true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "bench/advisor: unknown shape %q\n", name)
			os.Exit(2)
		}
	}
	if err := run(*minutes, picked, *seed, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/advisor:", err)
		os.Exit(1)
	}
}

type bench struct {
	dir, bin string
	cmd      *exec.Cmd
	c        *client.Client
	gateway  string
}

func run(minutes int, picked []shape, seed uint64, keep bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "badvisor-")
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
	tar, err := testimage.Build(ctx, dir, image, testimage.Options{Version: "advisor"})
	if err != nil {
		return err
	}
	if _, err := b.berth("", "image", "import", tar); err != nil {
		return err
	}
	var manifest strings.Builder
	for _, s := range picked {
		fmt.Fprintf(&manifest, `apiVersion: berth.dev/v1
kind: Service
metadata: {name: svc-%[1]s}
spec:
  image: %[2]s
  replicas: 1
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn-%[1]s}
spec:
  image: %[2]s
---
`, s.name, image)
	}
	if _, err := b.berth(manifest.String(), "apply", "-f", "-", "--wait", "--timeout", "5m"); err != nil {
		return err
	}

	// Start on a minute's boundary, so the run is whole minutes of history.
	run := time.Duration(minutes) * time.Minute
	start := time.Now().Truncate(time.Minute).Add(time.Minute)
	fmt.Printf("bench/advisor: %d shapes × (a Service and a Function), %d minutes from %s UTC, seed %d\n",
		len(picked), minutes, start.UTC().Format("15:04"), seed)
	for _, s := range picked {
		fmt.Printf("  %-7s %s\n", s.name, s.about)
	}
	time.Sleep(time.Until(start))

	var wg sync.WaitGroup
	results := make([]sent, len(picked))
	for i, s := range picked {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		times := s.times(r, run)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = b.play(s, start, times)
		}()
	}
	wg.Wait()
	// The history has the last minute once the recorder's first tick of
	// the next one wrote it.
	time.Sleep(time.Until(start.Add(run).Add(5 * time.Second)))

	q := v1.AdviceQuery{Since: run}
	one := int32(1)
	fmt.Printf("\n%-7s %-17s %12s %12s %12s %9s   %s\n", "shape", "figure", "predicted", "own model", "measured", "error", "")
	worst := 0.0
	for i, s := range picked {
		svc, err := b.c.Advice(ctx, "default", "svc-"+s.name, q)
		if err != nil {
			return err
		}
		fn, err := b.c.Advice(ctx, "default", "fn-"+s.name, v1.AdviceQuery{Since: run, Replicas: &one})
		if err != nil {
			return err
		}
		row := func(figure string, predicted, own, measured float64) {
			e := relErr(predicted, measured)
			worst = max(worst, math.Abs(e))
			verdict := "within 15 %"
			if math.Abs(e) > 0.15 {
				verdict = "OVER 15 %"
			}
			fmt.Printf("%-7s %-17s %12.1f %12.1f %12.1f %+8.1f%%   %s\n", s.name, figure, predicted, own, measured, e*100, verdict)
		}
		row("instance-seconds", svc.Other.InstanceSeconds, fn.Model.InstanceSeconds, fn.Current.InstanceSeconds)
		row("cold starts", svc.Other.ColdStarts, fn.Model.ColdStarts, fn.Current.ColdStarts)
		fmt.Printf("%-7s %-17s %12.1f %12s %12.1f %+8.1f%%\n", s.name, "service inst-s", fn.Other.InstanceSeconds, "", svc.Current.InstanceSeconds,
			relErr(fn.Other.InstanceSeconds, svc.Current.InstanceSeconds)*100)
		fmt.Printf("%-7s %d requests sent to each (%d failed to the service, %d to the function); cold start %.0f ms (%s)\n",
			"", results[i].n, results[i].failedSvc, results[i].failedFn, svc.ColdStart.MS, svc.ColdStart.Source)
		fmt.Printf("%-7s advice for svc-%s: %s.\n", "", s.name, svc.Reason)
	}
	fmt.Printf("\nlargest error of a prediction: %.1f %%\n", worst*100)
	return nil
}

// relErr is (predicted − measured) / measured; both zero is no error.
func relErr(predicted, measured float64) float64 {
	if measured == 0 {
		if predicted == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return (predicted - measured) / measured
}

type sent struct {
	n                   int
	failedSvc, failedFn int64
}

// play sends, at each of times after start, one request to the service
// and one to the function, each in its own goroutine (open loop: a slow
// answer delays nothing after it).
func (b *bench) play(s shape, start time.Time, times []time.Duration) sent {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	c := &http.Client{Transport: tr, Timeout: 90 * time.Second}
	var failedSvc, failedFn atomic.Int64
	var wg sync.WaitGroup
	path := fmt.Sprintf("/sleep?ms=%d", s.handler.Milliseconds())
	for _, at := range times {
		time.Sleep(time.Until(start.Add(at)))
		for _, target := range []struct {
			host   string
			failed *atomic.Int64
		}{{"svc-" + s.name, &failedSvc}, {"fn-" + s.name, &failedFn}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, "http://"+b.gateway+path, nil)
				req.Host = target.host + ".default.berth.localhost"
				res, err := c.Do(req)
				if err != nil {
					target.failed.Add(1)
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					target.failed.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	return sent{n: len(times), failedSvc: failedSvc.Load(), failedFn: failedFn.Load()}
}

func (b *bench) start() error {
	log, err := os.Create(filepath.Join(b.dir, "server.log"))
	if err != nil {
		return err
	}
	b.cmd = exec.Command(b.bin, "server", "--data-dir", filepath.Join(b.dir, "data"),
		"--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0",
		"--subnet-pool", "10.225.0.0/16", "--bridge-prefix", "badv", "--containerd-namespace", "badvisor",
		"--advice-min-history", "1m")
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

// stop deletes the workloads, then ends the server and the containerd it
// started (both by PID).
func (b *bench) stop() {
	ctx := context.Background()
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		objs, _ := b.c.List(ctx, kind, "default")
		for _, raw := range objs {
			var o struct{ Metadata v1.ObjectMeta }
			if json.Unmarshal(raw, &o) == nil {
				_ = b.c.Delete(ctx, kind, "default", o.Metadata.Name)
			}
		}
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l, err := b.c.List(ctx, v1.KindInstance, ""); err == nil && len(l) == 0 {
			break
		}
	}
	pid := 0
	if raw, err := os.ReadFile(filepath.Join(b.dir, "data", "containerd", "containerd.pid")); err == nil {
		fmt.Sscanf(strings.TrimSpace(string(raw)), "%d", &pid)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	testutil.RemoveHostNetwork("badv")
}

func (b *bench) berth(stdin string, args ...string) (string, error) {
	cmd := exec.Command(b.bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(b.dir, "data", "client.json"))
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
