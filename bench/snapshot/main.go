// Command snapshot measures the ways to have an initialised function
// instance ready for a request, for Go, Python and Node functions built by
// Berth's builder, in one run against a private containerd, each instance
// in its own network namespace attached by Berth's CNI manager:
//
//	plain     create + start the task, then poll until HTTP answers
//	standby   a task created beforehand (what Berth does today): start +
//	          first response; with Berth's default CPU limit (500m) and
//	          without one, to show how much of a runtime's init is the quota
//	paused    a task started, answering once, then frozen through
//	          containerd (task.Pause, runc pause: the cgroup freezer);
//	          task.Resume + first response
//	freezer   the same, freezing and thawing by writing freezer.state
//	          directly (no runc in the way)
//	criu      a container checkpointed once when initialised, then
//	          restored as new containers, each in a fresh network
//	          namespace: restore + first response; skipped, with what it
//	          said, when `criu check` refuses this kernel
//
// and the memory of one created and one frozen standby per function. The
// time of each path is from the moment the instance is asked for to the
// first HTTP response (headers read) from it; the network namespace is
// prepared beforehand in every path, as a standby's is, and its attach
// time is printed apart. Run as root, under the host lock:
//
//	flock -o /tmp/berth-work/host.lock go run ./bench/snapshot [-n 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network"
	"berth.dev/berth/internal/network/cni"
	"berth.dev/berth/internal/runtime/containerd"
	"berth.dev/berth/internal/testutil"
)

const (
	namespace    = "snapbench"
	bridgePrefix = "bsnap"
	env          = "default"
)

func main() {
	n := flag.Int("n", 20, "instances per function and path")
	fns := flag.String("functions", "go-hello,python-hello,python-imports,node-hello,node-imports", "functions to build and measure, RUNTIME-hello or RUNTIME-imports")
	flag.Parse()
	if err := run(context.Background(), *n, strings.Split(*fns, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench/snapshot:", err)
		os.Exit(1)
	}
}

type bench struct {
	dir  string
	drv  *containerd.Driver
	cl   *client.Client
	net  *cni.Manager
	lim  v1.Limits
	seq  int
	http *http.Client

	attaches []time.Duration
	freezes  []time.Duration // FROZEN written until the kernel reports it
	// mem holds samples per "FUNCTION/created" and "FUNCTION/frozen".
	mem map[string]*memSamples
}

// instance is one container of the bench: its network is attached and
// its container created; stop removes all of it.
type instance struct {
	id  string
	att network.Attachment
	fn  fnImage
}

func run(ctx context.Context, n int, names []string) error {
	dir, err := os.MkdirTemp("/tmp", "bsnap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fns, err := buildImages(ctx, dir, names)
	if err != nil {
		return err
	}
	sock, stop, err := testutil.StartContainerd(filepath.Join(dir, "c"))
	if err != nil {
		return err
	}
	defer func() {
		stop()
		// containerd leaves the namespace's parent cgroups, empty, behind.
		if dirs, err := filepath.Glob(filepath.Join(cgroupV1, "*", namespace)); err == nil {
			for _, d := range dirs {
				os.Remove(d)
			}
		}
	}()
	b := &bench{dir: dir, mem: map[string]*memSamples{}, http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if b.lim, err = (v1.Resources{}).Limits(); err != nil {
		return err
	}
	b.drv, err = containerd.New(ctx, containerd.Config{Socket: sock, Namespace: namespace, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		return err
	}
	defer b.drv.Close()
	b.cl, err = client.New(sock, client.WithDefaultNamespace(namespace))
	if err != nil {
		return err
	}
	defer b.cl.Close()
	for _, fn := range fns {
		f, err := os.Open(fn.tar)
		if err != nil {
			return err
		}
		_, err = b.drv.ImportImage(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("import %s: %w", fn.name, err)
		}
	}
	b.net, err = cni.New(ctx, cni.Config{DataDir: filepath.Join(dir, "net"), SubnetPool: "10.229.0.0/16", BridgePrefix: bridgePrefix})
	if err != nil {
		return err
	}
	defer testutil.RemoveHostNetwork(bridgePrefix)
	ctx = namespaces.WithNamespace(ctx, namespace)

	// Each path on each function once per round, interleaved, so that all
	// of them see the same machine (others' tests share these 2 cores).
	paths := []struct {
		name string
		run  func(context.Context, fnImage) (time.Duration, error)
	}{
		{"plain: create+start", b.plain},
		{"standby: start, CPU 500m", func(ctx context.Context, fn fnImage) (time.Duration, error) {
			return b.standby(ctx, fn, b.lim.CPUMillis)
		}},
		{"standby: start, no CPU limit", func(ctx context.Context, fn fnImage) (time.Duration, error) {
			return b.standby(ctx, fn, 0)
		}},
		{"paused: task.Resume", b.paused},
		{"frozen: freezer.state THAWED", b.frozen},
	}
	got := map[string]map[string][]time.Duration{}
	for _, fn := range fns {
		got[fn.name] = map[string][]time.Duration{}
	}
	for round := range n {
		fmt.Fprintf(os.Stderr, "round %d/%d\n", round+1, n)
		for _, fn := range fns {
			for _, p := range paths {
				d, err := p.run(ctx, fn)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", fn.name, p.name, err)
				}
				got[fn.name][p.name] = append(got[fn.name][p.name], d)
			}
		}
	}
	crius := b.criu(ctx, fns, n)

	fmt.Printf("\ninstance asked for -> first HTTP response, %d each, %s, defaults CPU %s memory %s pids %d, network namespace prepared beforehand\n",
		n, time.Now().UTC().Format("2006-01-02 15:04 UTC"), v1.DefaultCPU, v1.DefaultMemory, v1.DefaultPids)
	fmt.Printf("%-16s %-32s %9s %9s %9s %9s\n", "function", "path", "p50", "p90", "p99", "max")
	for _, fn := range fns {
		for _, p := range paths {
			printRow(fn.name, p.name, got[fn.name][p.name])
		}
		if r, ok := crius.rows[fn.name]; ok {
			printRow(fn.name, "criu: restore", r)
		}
	}
	printRow("(each)", "CNI attach of a fresh netns", b.attaches)
	printRow("(each)", "freeze (off the request path)", b.freezes)
	if crius.refused != "" {
		fmt.Printf("criu: %s\n", crius.refused)
	}
	for _, fn := range fns {
		if s, ok := crius.size[fn.name]; ok {
			fmt.Printf("criu: checkpoint of %s: %.1f MiB on disk\n", fn.name, float64(s)/(1<<20))
		}
	}

	fmt.Printf("\nmemory of one standby (median of %d): its memory cgroup's usage / rss / working set + its shim's Pss, MiB\n", n)
	fmt.Printf("%-16s %-32s %-32s\n", "function", "created (not started)", "frozen (started, initialised)")
	for _, fn := range fns {
		fmt.Printf("%-16s %-32s %-32s\n", fn.name, b.mem[fn.name+"/created"].median(), b.mem[fn.name+"/frozen"].median())
	}
	return nil
}

func printRow(fn, path string, d []time.Duration) {
	fmt.Printf("%-16s %-32s %9s %9s %9s %9s\n", fn, path, ms(pct(d, 0.5)), ms(pct(d, 0.9)), ms(pct(d, 0.99)), ms(pct(d, 1)))
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
