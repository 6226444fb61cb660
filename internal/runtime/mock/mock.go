// Package mock is a runtime service that really behaves, for tests that
// must run without root (in the manner of Nomad's mock driver): each
// container is the echo test workload (internal/testutil/echoapp) run
// in-process, listening on the address the fake network gave its
// namespace (internal/network/fake), logging through the real log writer,
// honouring SIGTERM with a grace period, exiting with codes, and being
// OOM-killed when it hogs more than its memory limit.
//
// It understands the echo image's start flags that make sense in-process
// (-exit N, -hog-mb N); any other image command is an error exit. It keeps
// its containers in memory only, so a second driver cannot take them over:
// restart-adoption is the containerd driver's test.
package mock

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network/fake"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/runtime/logshim"
	"berth.dev/berth/internal/testutil/echoapp"
)

// Driver is the mock runtime service.
type Driver struct {
	mu         sync.Mutex
	containers map[string]*container
	subs       map[chan runtime.Exit]struct{}
	nextPid    uint32
}

var (
	_ runtime.RuntimeService = (*Driver)(nil)
	_ runtime.StatsReader    = (*Driver)(nil)
	_ runtime.Freezer        = (*Driver)(nil)
)

type container struct {
	spec      runtime.ContainerSpec
	status    runtime.Status
	pid       uint32
	startedAt time.Time
	exitCode  uint32
	exitedAt  time.Time
	oom       bool

	term   chan struct{} // closed: SIGTERM
	kill   chan struct{} // closed: SIGKILL
	done   chan struct{} // closed when the process has exited
	termMu sync.Once
	killMu sync.Once

	// thawed is open while the process is frozen: it accepts no
	// connection (the kernel still queues them) until it is thawed.
	freezeMu sync.Mutex
	thawed   chan struct{}
}

// waitThawed blocks while the container is frozen.
func (c *container) waitThawed() {
	c.freezeMu.Lock()
	ch := c.thawed
	c.freezeMu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-c.kill:
		}
	}
}

// New makes an empty mock runtime.
func New() *Driver {
	return &Driver{containers: map[string]*container{}, subs: map[chan runtime.Exit]struct{}{}, nextPid: 1000}
}

// Create records the container; Conflict if the ID is taken.
func (d *Driver) Create(_ context.Context, spec runtime.ContainerSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.containers[spec.ID]; ok {
		return v1.Conflict("container %q exists", spec.ID)
	}
	d.containers[spec.ID] = &container{spec: spec, status: runtime.StatusCreated}
	return nil
}

// Start runs the container's process.
func (d *Driver) Start(_ context.Context, id string) error {
	d.mu.Lock()
	c, ok := d.containers[id]
	if !ok {
		d.mu.Unlock()
		return v1.NotFound("container %q not found", id)
	}
	if c.status != runtime.StatusCreated {
		d.mu.Unlock()
		return v1.Conflict("container %q is %s, not created", id, c.status)
	}
	d.nextPid++
	c.pid, c.status, c.startedAt = d.nextPid, runtime.StatusRunning, time.Now()
	c.term, c.kill, c.done = make(chan struct{}), make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
	go d.run(c)
	return nil
}

// run is the container's process, start to exit.
func (d *Driver) run(c *container) {
	out, closeLog := openLog(c.spec.LogPath)
	code, oom := process(c, out)
	closeLog()
	d.mu.Lock()
	c.status, c.exitCode, c.exitedAt, c.oom = runtime.StatusStopped, code, time.Now(), oom
	e := runtime.Exit{ID: c.spec.ID, Code: code, At: c.exitedAt, OOMKilled: oom}
	subs := make([]chan runtime.Exit, 0, len(d.subs))
	for ch := range d.subs {
		subs = append(subs, ch)
	}
	d.mu.Unlock()
	close(c.done)
	for _, ch := range subs {
		select {
		case ch <- e:
		default: // a subscriber that does not read loses events, as with containerd
		}
	}
}

// Exit codes of a killed process, as the shell reports them.
const (
	codeKilled = 128 + 9
)

// process runs the echo workload as the container's spec says.
func process(c *container, out io.Writer) (code uint32, oom bool) {
	args := append(append([]string(nil), c.spec.Command...), c.spec.Args...)
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(out)
	exitCode := fs.Int("exit", -1, "")
	hogMB := fs.Int("hog-mb", 0, "")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = args[1:] // the command itself
	}
	if err := fs.Parse(args); err != nil {
		return 2, false
	}
	if *exitCode >= 0 {
		fmt.Fprintf(out, "exiting with %d\n", *exitCode)
		return uint32(*exitCode), false
	}
	overLimit := func(mb int) bool { return c.spec.MemoryLimit > 0 && int64(mb)<<20 > c.spec.MemoryLimit }
	if *hogMB > 0 {
		fmt.Fprintf(out, "hogging %d MiB\n", *hogMB)
		if overLimit(*hogMB) {
			return codeKilled, true
		}
	}
	ip, ok := fake.IPOf(c.spec.NetNSPath)
	if !ok {
		fmt.Fprintf(out, "error: mock containers need a fake network namespace, got %q\n", c.spec.NetNSPath)
		return 1, false
	}
	env := map[string]string{}
	for _, kv := range c.spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	conns := &connSet{m: map[net.Conn]struct{}{}}
	var oomKilled sync.Once
	oomed := make(chan struct{})
	result := make(chan uint32, 1)
	go func() {
		result <- uint32(echoapp.Serve(echoapp.Env{
			Getenv:   func(k string) string { return env[k] },
			Environ:  c.spec.Env,
			Hostname: c.spec.Hostname,
			Stdout:   out,
			Listen: func(addr string) (net.Listener, error) {
				_, port, _ := net.SplitHostPort(addr)
				ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), port))
				if err != nil {
					return nil, err
				}
				conns.addListener(ln)
				return &trackedListener{Listener: ln, conns: conns, c: c}, nil
			},
			Terminate: c.term,
			Hog: func(mb int) {
				if overLimit(mb) {
					oomKilled.Do(func() { close(oomed) })
				}
			},
		}))
	}()
	select {
	case code := <-result:
		conns.closeAll()
		return code, false
	case <-c.kill:
		conns.closeAll()
		return codeKilled, false
	case <-oomed:
		conns.closeAll()
		return codeKilled, true
	}
}

// Stop sends SIGTERM, then SIGKILL after grace, and returns once the
// process has exited.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	d.mu.Lock()
	c, ok := d.containers[id]
	d.mu.Unlock()
	if !ok {
		return v1.NotFound("container %q not found", id)
	}
	if c.done == nil {
		return nil // never started
	}
	c.termMu.Do(func() { close(c.term) })
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.killMu.Do(func() { close(c.kill) })
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Freeze stops the process from taking connections until Thaw.
func (d *Driver) Freeze(_ context.Context, id string) error {
	d.mu.Lock()
	c, ok := d.containers[id]
	d.mu.Unlock()
	if !ok || c.status != runtime.StatusRunning {
		return v1.Conflict("container %q is not running", id)
	}
	c.freezeMu.Lock()
	if c.thawed == nil {
		c.thawed = make(chan struct{})
	}
	c.freezeMu.Unlock()
	return nil
}

// Thaw lets a frozen process go on.
func (d *Driver) Thaw(_ context.Context, id string) error {
	d.mu.Lock()
	c, ok := d.containers[id]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	c.freezeMu.Lock()
	if c.thawed != nil {
		close(c.thawed)
		c.thawed = nil
	}
	c.freezeMu.Unlock()
	return nil
}

// Delete kills the process if it runs and forgets the container.
func (d *Driver) Delete(ctx context.Context, id string) error {
	d.mu.Lock()
	c, ok := d.containers[id]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	if c.done != nil {
		c.killMu.Do(func() { close(c.kill) })
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	delete(d.containers, id)
	d.mu.Unlock()
	return nil
}

// Inspect reports one container.
func (d *Driver) Inspect(_ context.Context, id string) (runtime.ContainerState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.containers[id]
	if !ok {
		return runtime.ContainerState{}, v1.NotFound("container %q not found", id)
	}
	return c.state(), nil
}

func (c *container) state() runtime.ContainerState {
	c.freezeMu.Lock()
	frozen := c.thawed != nil
	c.freezeMu.Unlock()
	return runtime.ContainerState{
		ID: c.spec.ID, Labels: c.spec.Labels, Status: c.status, Pid: c.pid,
		ExitCode: c.exitCode, ExitedAt: c.exitedAt, OOMKilled: c.oom,
		Frozen: frozen && c.status == runtime.StatusRunning,
	}
}

// List reports every container.
func (d *Driver) List(context.Context) ([]runtime.ContainerState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]runtime.ContainerState, 0, len(d.containers))
	for _, c := range d.containers {
		out = append(out, c.state())
	}
	return out, nil
}

// Exits streams process exits until ctx ends.
func (d *Driver) Exits(ctx context.Context) (<-chan runtime.Exit, error) {
	ch := make(chan runtime.Exit, 64)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}()
	return ch, nil
}

// Stats reports a running container's usage: its CPU time is its age (a
// busy process), its memory a constant.
func (d *Driver) Stats(_ context.Context, id string) (runtime.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.containers[id]
	if !ok || c.status != runtime.StatusRunning {
		return runtime.Stats{}, v1.NotFound("container %q is not running", id)
	}
	return runtime.Stats{CPUUsageNanos: uint64(time.Since(c.startedAt)), MemoryBytes: 8 << 20}, nil
}

// Close kills every process, as a host that goes away does: a test's
// mock containers must not keep their addresses for the next test.
func (d *Driver) Close() {
	d.mu.Lock()
	cs := make([]*container, 0, len(d.containers))
	for _, c := range d.containers {
		cs = append(cs, c)
	}
	d.mu.Unlock()
	for _, c := range cs {
		if c.done != nil {
			c.killMu.Do(func() { close(c.kill) })
			<-c.done
		}
	}
}

// Running counts the containers whose process runs (for tests).
func (d *Driver) Running() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.containers {
		if c.status == runtime.StatusRunning {
			n++
		}
	}
	return n
}

// openLog writes the process's output to path through the log shim's own
// writer (CRI format), or discards it when there is no path.
func openLog(path string) (io.Writer, func()) {
	if path == "" {
		return io.Discard, func() {}
	}
	w, err := logshim.OpenWriter(path, logshim.DefaultMaxSize, logshim.DefaultMaxFiles)
	if err != nil {
		return io.Discard, func() {}
	}
	pr, pw := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_ = logshim.Copy(w, logshim.Stdout, pr)
	}()
	return pw, func() {
		pw.Close()
		<-copied
		w.Close()
	}
}

// trackedListener remembers its connections, so a kill can cut them as
// a dying process's would be.
type trackedListener struct {
	net.Listener
	conns *connSet
	c     *container
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.c.waitThawed()
		l.conns.add(c)
	}
	return c, err
}

type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
	lns    []net.Listener
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.m[c] = struct{}{}
}

func (s *connSet) addListener(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lns = append(s.lns, ln)
}

// closeAll closes the listeners and every connection: the process is gone.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.m {
		c.Close()
	}
}
