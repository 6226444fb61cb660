package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"berth.dev/berth/internal/runtime"
)

// newInstance attaches a fresh network namespace (timed apart: every path
// but the frozen ones needs one per instance, and Berth prepares it ahead)
// and returns the spec Berth's local backend would give the function's
// instance, with cpuMillis as its CPU limit (0: none).
func (b *bench) newInstance(ctx context.Context, fn fnImage, cpuMillis int64) (*instance, runtime.ContainerSpec, error) {
	b.seq++
	in := &instance{id: fmt.Sprintf("%s-%d", fn.name, b.seq), fn: fn}
	t0 := time.Now()
	att, err := b.net.Attach(ctx, in.id, env)
	if err != nil {
		return nil, runtime.ContainerSpec{}, err
	}
	b.attaches = append(b.attaches, time.Since(t0))
	in.att = att
	spec := runtime.ContainerSpec{
		ID: in.id, Image: fn.ref, NetNSPath: att.NetNSPath,
		Env:        []string{"PORT=8080", "BERTH_REVISION=snap"},
		DNSServers: att.DNS.Nameservers, DNSSearch: att.DNS.Search,
		MemoryLimit: b.lim.MemoryBytes, CPUMillis: cpuMillis, PidsLimit: b.lim.Pids,
		LogPath: filepath.Join(b.dir, "logs", in.id+".log"),
	}
	return in, spec, nil
}

// remove stops and deletes the container and detaches its network; a
// failure here would leak into the next instance's figures, so it is one.
func (b *bench) remove(ctx context.Context, in *instance) error {
	if err := b.drv.Stop(ctx, in.id, 0); err != nil {
		return err
	}
	if err := b.drv.Delete(ctx, in.id); err != nil {
		return err
	}
	return b.net.Detach(ctx, in.id, env)
}

func (b *bench) url(in *instance) string { return "http://" + in.att.IP.String() + ":8080/" }

// firstResponse polls GET / until it answers 200, in sub-millisecond
// steps: a namespace with nothing listening yet refuses at once.
func (b *bench) firstResponse(ctx context.Context, in *instance) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := b.http.Get(b.url(in))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(500 * time.Microsecond)
	}
	return fmt.Errorf("%s did not answer in 30s (log: %s)", b.url(in), filepath.Join(b.dir, "logs", in.id+".log"))
}

func (b *bench) plain(ctx context.Context, fn fnImage) (time.Duration, error) {
	in, spec, err := b.newInstance(ctx, fn, b.lim.CPUMillis)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := b.drv.Create(ctx, spec); err != nil {
		return 0, err
	}
	if err := b.drv.Start(ctx, in.id); err != nil {
		return 0, err
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, b.remove(ctx, in)
}

func (b *bench) standby(ctx context.Context, fn fnImage, cpuMillis int64) (time.Duration, error) {
	in, spec, err := b.newInstance(ctx, fn, cpuMillis)
	if err != nil {
		return 0, err
	}
	if err := b.drv.Create(ctx, spec); err != nil {
		return 0, err
	}
	if cpuMillis != 0 {
		if err := b.sampleMemory(ctx, in, "created"); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	if err := b.drv.Start(ctx, in.id); err != nil {
		return 0, err
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, b.remove(ctx, in)
}

// initialised starts an instance and waits for its first response: a
// standby the frozen paths then freeze. That one request also warms the
// handler's path, as a readiness probe on / would.
func (b *bench) initialised(ctx context.Context, fn fnImage) (*instance, string, error) {
	in, spec, err := b.newInstance(ctx, fn, b.lim.CPUMillis)
	if err != nil {
		return nil, "", err
	}
	if err := b.drv.Create(ctx, spec); err != nil {
		return nil, "", err
	}
	if err := b.drv.Start(ctx, in.id); err != nil {
		return nil, "", err
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return nil, "", err
	}
	c, err := b.cl.LoadContainer(ctx, in.id)
	if err != nil {
		return nil, "", err
	}
	cg, err := cgroupPath(ctx, c)
	return in, cg, err
}

// paused freezes through containerd (task.Pause: runc pause, which on
// cgroup v1 writes the same freezer.state) and times task.Resume.
func (b *bench) paused(ctx context.Context, fn fnImage) (time.Duration, error) {
	in, _, err := b.initialised(ctx, fn)
	if err != nil {
		return 0, err
	}
	c, err := b.cl.LoadContainer(ctx, in.id)
	if err != nil {
		return 0, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, err
	}
	if err := task.Pause(ctx); err != nil {
		return 0, fmt.Errorf("pause: %w", err)
	}
	t0 := time.Now()
	if err := task.Resume(ctx); err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, b.remove(ctx, in)
}

// frozen freezes and thaws by writing freezer.state itself.
func (b *bench) frozen(ctx context.Context, fn fnImage) (time.Duration, error) {
	in, cg, err := b.initialised(ctx, fn)
	if err != nil {
		return 0, err
	}
	t := time.Now()
	if err := freeze(ctx, cg); err != nil {
		return 0, err
	}
	b.freezes = append(b.freezes, time.Since(t))
	if err := b.sampleMemory(ctx, in, "frozen"); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := thaw(cg); err != nil {
		return 0, err
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, b.remove(ctx, in)
}

func (b *bench) sampleMemory(ctx context.Context, in *instance, state string) error {
	c, err := b.cl.LoadContainer(ctx, in.id)
	if err != nil {
		return err
	}
	cg, err := cgroupPath(ctx, c)
	if err != nil {
		return err
	}
	m, err := readMemory(cg)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return err
	}
	shim, err := shimMemory(task.Pid())
	if err != nil {
		return err
	}
	k := in.fn.name + "/" + state
	if b.mem[k] == nil {
		b.mem[k] = &memSamples{}
	}
	b.mem[k].usage = append(b.mem[k].usage, m.usage)
	b.mem[k].rss = append(b.mem[k].rss, m.rss)
	b.mem[k].ws = append(b.mem[k].ws, m.workingSet)
	b.mem[k].shim = append(b.mem[k].shim, shim)
	return nil
}

type memSamples struct{ usage, rss, ws, shim []uint64 }

func (s *memSamples) median() string {
	if s == nil || len(s.usage) == 0 {
		return "-"
	}
	med := func(xs []uint64) float64 {
		x := slices.Clone(xs)
		slices.Sort(x)
		return float64(x[len(x)/2]) / (1 << 20)
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f + %.1f", med(s.usage), med(s.rss), med(s.ws), med(s.shim))
}
