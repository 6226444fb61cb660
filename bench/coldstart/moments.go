package main

// The hard moments of a cold start (-moments): a function at zero is
// woken right after a deploy, right after a burst scaled it down, right
// after a server restart, two functions at the same instant, and ten
// instances of one function at once (more than one standby can serve).
// Each request's time to its response through the gateway is recorded
// with the moment it belongs to, and the server's own split of each cold
// start (berth_cold_start_phase_seconds) is printed beside it.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
)

// berthServer is a real server the bench starts, stops and starts again
// on the same data dir.
type berthServer struct {
	bin, data, sock, logPath string
	namespace, pool, bridges string
	// extra flags for `berth server`.
	extra []string
	cmd   *exec.Cmd
	c     *client.Client
	gw    string
}

func (s *berthServer) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	os.Remove(filepath.Join(s.data, "client.json"))
	s.cmd = exec.Command(s.bin, "server", "--data-dir", s.data, "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0",
		"--containerd-socket", s.sock, "--containerd-namespace", s.namespace, "--subnet-pool", s.pool, "--bridge-prefix", s.bridges)
	s.cmd.Args = append(s.cmd.Args, s.extra...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := os.ReadFile(filepath.Join(s.data, "client.json"))
		if err == nil {
			var cc struct{ Addr, Token, Gateway string }
			json.Unmarshal(raw, &cc)
			s.c, s.gw = client.New(client.Config{Addr: cc.Addr, Token: cc.Token}), cc.Gateway
			// Ready: the gateway has its first routing table (a request
			// before it waits for it: the server's start, not a cold start).
			if s.c.Ready(ctx) == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not start; see %s", s.logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *berthServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	s.cmd = nil
}

func (s *berthServer) apply(ctx context.Context, manifest string) error {
	obj, err := v1.DecodeObject([]byte(manifest))
	if err != nil {
		return err
	}
	v1.SetDefaults(obj)
	_, _, err = s.c.Apply(ctx, obj, false)
	return err
}

func fnManifest(name, version string) string {
	return fmt.Sprintf(`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":%q,"environment":"default"},
"spec":{"image":%q,"concurrency":1,"env":[{"name":"DEPLOY","value":%q}],"scale":{"max":10,"idleTimeout":"1s"},"readinessProbe":{"httpGet":{"path":"/ready"}}}}`,
		name, image, version)
}

// atZero waits until name has no ready instance and (with standby) a
// prepared one.
func (s *berthServer) atZero(ctx context.Context, name string, standby bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var fn v1.Function
		if err := s.c.Get(ctx, v1.KindFunction, "default", name, &fn); err != nil {
			return err
		}
		prepared, others := false, 0
		for _, i := range fn.Status.Instances {
			if i.Phase == v1.PhaseStandby && i.IP != "" { // an address: prepared, not only asked for
				prepared = true
			} else {
				others++
			}
		}
		if fn.Status.ReadyInstances == 0 && others == 0 && (prepared || !standby) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not go back to zero: %+v", name, fn.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hit times one request to name through the gateway.
func (s *berthServer) hit(name, path string) (time.Duration, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.gw+path, nil)
	req.Host = name + ".default.berth.localhost"
	t0 := time.Now()
	resp, err := fast.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != 200 {
		return d, fmt.Errorf("%s: status %d after %v: %s", name, resp.StatusCode, d.Round(time.Millisecond), strings.TrimSpace(string(body)))
	}
	return d, nil
}

// phaseMeans reads the server's cold start phase histograms: per function,
// the sum of each phase's seconds, and the number of cold starts.
func (s *berthServer) phaseMeans(ctx context.Context) (map[string]map[string]float64, map[string]float64, error) {
	rc, err := s.c.Metrics(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rc)
	if err != nil {
		return nil, nil, err
	}
	sums, counts := map[string]map[string]float64{}, map[string]float64{}
	for _, m := range fams["berth_cold_start_phase_seconds"].GetMetric() {
		var fn, phase string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "function":
				fn = l.GetValue()
			case "phase":
				phase = l.GetValue()
			}
		}
		if sums[fn] == nil {
			sums[fn] = map[string]float64{}
		}
		sums[fn][phase] += m.GetHistogram().GetSampleSum()
		if phase == v1.ColdPhaseRoute {
			counts[fn] += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sums, counts, nil
}

// moments runs the hard moments, rounds times over, and prints each
// moment's percentiles, all of them together, and the mean of each
// phase of the server's cold starts in this server's last life.
func moments(ctx context.Context, dir, sock, tar string, rounds int) (err error) {
	s := &berthServer{bin: filepath.Join(dir, "berth"), data: filepath.Join(dir, "mdata"), sock: sock, logPath: filepath.Join(dir, "moments.log"),
		namespace: "coldmoments", pool: "10.229.0.0/16", bridges: "bcoldm"}
	if err := buildBerth(s.bin); err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	defer func() {
		s.stop()
		testutil.RemoveHostNetwork(s.bridges)
		if err != nil {
			// The data dir goes with the run: show why from the server.
			if raw, rerr := os.ReadFile(s.logPath); rerr == nil {
				lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
				fmt.Fprintf(os.Stderr, "last lines of the server's log:\n%s\n", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	}()
	f, _ := os.Open(tar)
	_, err = s.c.ImportImage(ctx, f)
	f.Close()
	if err != nil {
		return err
	}
	for _, name := range []string{"cold", "other"} {
		if err := s.apply(ctx, fnManifest(name, "0")); err != nil {
			return err
		}
	}
	order := []string{"at zero, standby ready", "right after a deploy", "right after a burst", "after a server restart", "two functions at once", "ten at once"}
	got := map[string]*series{}
	for _, m := range order {
		got[m] = &series{name: m}
	}
	record := func(m string, d time.Duration, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		got[m].d = append(got[m].d, d)
		return nil
	}
	hitInto := func(m, name string) error {
		d, err := s.hit(name, "/")
		return record(m, d, err)
	}
	version := 0
	for round := range rounds {
		// At zero with a prepared standby: the common case.
		for range 4 {
			if err := s.atZero(ctx, "cold", true); err != nil {
				return err
			}
			if err := hitInto(order[0], "cold"); err != nil {
				return err
			}
		}
		// Right after a deploy: the new revision's standby may not be
		// prepared yet.
		if err := s.atZero(ctx, "cold", true); err != nil {
			return err
		}
		version++
		if err := s.apply(ctx, fnManifest("cold", fmt.Sprint(version))); err != nil {
			return err
		}
		if err := hitInto(order[1], "cold"); err != nil {
			return err
		}
		// Right after a burst scaled it out and back down.
		if err := s.atZero(ctx, "cold", true); err != nil {
			return err
		}
		if err := burst(s, "cold", 6, "/sleep?ms=200", nil); err != nil {
			return err
		}
		if err := s.atZero(ctx, "cold", true); err != nil {
			return err
		}
		if err := hitInto(order[2], "cold"); err != nil {
			return err
		}
		// Two functions woken at the same instant.
		for _, name := range []string{"cold", "other"} {
			if err := s.atZero(ctx, name, true); err != nil {
				return err
			}
		}
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, name := range []string{"cold", "other"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := s.hit(name, "/")
				mu.Lock()
				defer mu.Unlock()
				if err := record(order[4], d, err); err != nil {
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			return errs[0]
		}
		// Ten at once with one request per instance: one standby serves
		// the first, the others start from nothing.
		if err := s.atZero(ctx, "cold", true); err != nil {
			return err
		}
		if err := burst(s, "cold", 10, "/", got[order[5]]); err != nil {
			return err
		}
		// After a server restart (every other round: a restart takes a
		// few seconds).
		if round%2 == 0 {
			if err := s.atZero(ctx, "cold", true); err != nil {
				return err
			}
			s.stop()
			if err := s.start(ctx); err != nil {
				return err
			}
			if err := hitInto(order[3], "cold"); err != nil {
				return err
			}
		}
	}
	all := series{name: "all moments"}
	fmt.Printf("\ncold starts at the hard moments, %d rounds, through the gateway (request to response)\n", rounds)
	fmt.Printf("%-30s %5s %10s %10s %10s %10s\n", "moment", "n", "p50", "p90", "p99", "max")
	for _, m := range order {
		sr := got[m]
		all.d = append(all.d, sr.d...)
		fmt.Printf("%-30s %5d %10s %10s %10s %10s\n", sr.name, len(sr.d), ms(sr.pct(0.5)), ms(sr.pct(0.9)), ms(sr.pct(0.99)), ms(sr.pct(1)))
	}
	fmt.Printf("%-30s %5d %10s %10s %10s %10s\n", all.name, len(all.d), ms(all.pct(0.5)), ms(all.pct(0.9)), ms(all.pct(0.99)), ms(all.pct(1)))
	if sums, counts, err := s.phaseMeans(ctx); err == nil {
		total, n := map[string]float64{}, 0.0
		for fn, c := range counts {
			n += c
			for p, v := range sums[fn] {
				total[p] += v
			}
		}
		if n > 0 {
			fmt.Printf("mean of each phase, %d cold starts since the last restart (berth_cold_start_phase_seconds):\n ", int(n))
			for _, p := range v1.ColdStartPhases {
				fmt.Printf(" %s %.2fms", p, total[p]/n*1000)
			}
			fmt.Println()
		}
	}
	return nil
}

// burst sends n concurrent requests to name and, with into, records each
// one's time.
func burst(s *berthServer, name string, n int, path string, into *series) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.hit(name, path)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			if err == nil && into != nil {
				into.d = append(into.d, d)
			}
		}()
	}
	wg.Wait()
	return first
}

// buildBerth builds the server binary at bin once per run: every part of
// the bench (plain, moments, runtimes) starts the same one.
func buildBerth(bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/berth").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/berth: %v %s", err, out)
	}
	return nil
}
