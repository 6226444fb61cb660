package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
)

// SupervisorConfig configures a private containerd.
type SupervisorConfig struct {
	// Dir holds everything: root, state, socket, config, log and pid file.
	// Keep it short: the socket path must fit in 108 bytes.
	Dir string
	// Binary is the containerd executable; default: "containerd" on PATH.
	Binary string
	// StopReused makes Stop terminate a containerd that an earlier process
	// started and this one reused. Off by default so that a Berth restart
	// never takes containerd down under running containers.
	StopReused bool
	// StartTimeout bounds the wait for the socket to answer; default 30s.
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Supervisor runs one containerd under Dir and keeps it running.
//
// Containers do not depend on the containerd process: every container runs
// under its own shim (in its own process group), which survives containerd
// stopping or dying and is picked up again by the next containerd on the
// same root and state. So Stop, a crash of containerd, and a restart by the
// supervisor all leave running containers running; only their control is
// paused until containerd answers again.
//
// The containerd process runs in its own process group so that signals sent
// to Berth's group (Ctrl-C, or the whole group being killed) do not reach
// it; the pid file lets the next Berth process find and reuse it.
type Supervisor struct {
	cfg    SupervisorConfig
	log    *slog.Logger
	socket string

	mu      sync.Mutex
	pid     int
	reused  bool
	stopped bool
	exited  chan struct{} // closed when the current process is seen gone
	cancel  context.CancelFunc
	done    chan struct{} // monitor finished
}

func (c SupervisorConfig) paths() (cfgFile, socket, pidFile, logFile string) {
	return filepath.Join(c.Dir, "config.toml"),
		filepath.Join(c.Dir, "containerd.sock"),
		filepath.Join(c.Dir, "containerd.pid"),
		filepath.Join(c.Dir, "containerd.log")
}

// StartContainerd starts (or reuses) containerd under cfg.Dir and returns
// once its socket answers.
func StartContainerd(ctx context.Context, cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Dir == "" {
		return nil, v1.FieldError("dir", "required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Binary == "" {
		bin, err := exec.LookPath("containerd")
		if err != nil {
			return nil, v1.Unavailable("containerd binary not found on PATH: %v", err)
		}
		cfg.Binary = bin
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	cfgFile, socket, _, _ := cfg.paths()
	if len(socket) >= 108 {
		return nil, v1.Invalid("containerd socket path %q is too long for a unix socket; use a shorter dir", socket)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	if err := os.WriteFile(cfgFile, []byte(configTOML(dir, socket)), 0o600); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}

	s := &Supervisor{cfg: cfg, log: cfg.Logger, socket: socket}
	if pid, ok := s.findRunning(ctx); ok {
		s.pid, s.reused = pid, true
		s.exited = make(chan struct{})
		s.log.Info("reusing running containerd", "pid", pid, "socket", socket)
	} else if err := s.start(ctx); err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	go s.monitor(mctx)
	return s, nil
}

// Socket is the containerd gRPC address.
func (s *Supervisor) Socket() string { return s.socket }

// Reused tells whether an already running containerd was adopted.
func (s *Supervisor) Reused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reused
}

// Pid of the containerd process currently supervised.
func (s *Supervisor) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

func configTOML(dir, socket string) string {
	// Only what Berth uses: content, images, snapshots (overlayfs), tasks
	// through the runc v2 shim, events, leases, introspection. CRI and the
	// snapshotters that need special filesystems are off.
	disabled := []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.internal.v1.tracing",
		"io.containerd.tracing.processor.v1.otlp",
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q

[metrics]
  address = ""

[debug]
  level = "info"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), quoteList(disabled), socket, socket+".ttrpc")
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// answers reports whether a containerd serves on socket.
func answers(ctx context.Context, socket string) bool {
	if _, err := os.Stat(socket); err != nil {
		return false
	}
	c, err := client.New(socket, client.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = c.Version(ctx)
	return err == nil
}

// findRunning looks for a containerd left by an earlier Berth process.
func (s *Supervisor) findRunning(ctx context.Context) (int, bool) {
	_, socket, pidFile, _ := s.cfg.paths()
	pid := readPid(pidFile)
	alive := pid > 0 && isContainerd(pid)
	if !alive {
		// A socket that answers without our pid file is someone else's
		// containerd on our root; starting a second one would fail on the
		// root's lock, so adopt it too.
		if answers(ctx, socket) {
			return 0, true
		}
		return 0, false
	}
	// It may still be starting: give it the start timeout.
	deadline := time.Now().Add(s.cfg.StartTimeout)
	for time.Now().Before(deadline) {
		if answers(ctx, socket) {
			return pid, true
		}
		if !isContainerd(pid) {
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.log.Warn("containerd from an earlier run does not answer; killing it", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return 0, false
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// isContainerd checks the pid is alive and really a containerd, not a
// recycled pid.
func isContainerd(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	if filepath.Base(argv0) != "containerd" {
		return false
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// A zombie (our own exited child before Wait) is not alive.
	if err == nil {
		if _, rest, ok := strings.Cut(string(st), ") "); ok && strings.HasPrefix(rest, "Z") {
			return false
		}
	}
	return true
}

// start launches containerd and waits for its socket.
func (s *Supervisor) start(ctx context.Context) error {
	cfgFile, socket, pidFile, logFile := s.cfg.paths()
	logf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logf.Close()
	// A stale socket from a dead containerd makes the new one fail to bind.
	_ = os.Remove(socket)
	_ = os.Remove(socket + ".ttrpc")

	// Not CommandContext: containerd must outlive the request that started it.
	cmd := exec.Command(s.cfg.Binary, "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return v1.Unavailable("start containerd: %v", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("containerd pid file: %w", err)
	}
	s.mu.Lock()
	s.pid, s.reused, s.exited = pid, false, exited
	s.mu.Unlock()

	deadline := time.Now().Add(s.cfg.StartTimeout)
	for {
		if answers(ctx, socket) {
			s.log.Info("containerd started", "pid", pid, "socket", socket)
			return nil
		}
		select {
		case <-exited:
			return v1.Unavailable("containerd exited at start; see %s", logFile)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return v1.Unavailable("containerd did not answer on %s within %s; see %s", socket, s.cfg.StartTimeout, logFile)
		}
	}
}

// monitor restarts containerd, with backoff, whenever it dies.
func (s *Supervisor) monitor(ctx context.Context) {
	defer close(s.done)
	retry := backoff.Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second}
	for {
		s.mu.Lock()
		exited, pid, reused := s.exited, s.pid, s.reused
		s.mu.Unlock()
		if reused {
			// Not our child: no Wait to tell us, so poll.
			exited = make(chan struct{})
			go func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if (pid > 0 && !isContainerd(pid)) || (pid == 0 && !answers(ctx, s.socket)) {
						close(exited)
						return
					}
				}
			}()
		}
		started := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		if time.Since(started) > time.Minute {
			retry.Reset() // a long run's exit is news, not a crash loop
		}
		delay := retry.Next()
		s.log.Warn("containerd exited; restarting", "pid", pid, "backoff", delay)
		for {
			if !retry.Sleep(ctx, delay) {
				return
			}
			if err := s.start(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				delay = retry.Next()
				s.log.Error("containerd restart failed", "err", err, "backoff", delay)
				continue
			}
			break
		}
	}
}

// Stop ends supervision and terminates containerd (SIGTERM, then SIGKILL
// once ctx ends) if this supervisor started it, or if StopReused is set.
// Running containers are not touched: their shims outlive containerd.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	<-s.done

	s.mu.Lock()
	pid, reused, exited := s.pid, s.reused, s.exited
	s.mu.Unlock()
	if reused && !s.cfg.StopReused {
		s.log.Info("leaving reused containerd running", "pid", pid)
		return nil
	}
	if pid <= 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	gone := func() bool {
		if !reused {
			select {
			case <-exited:
				return true
			default:
				return false
			}
		}
		return !isContainerd(pid)
	}
	for !gone() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 50 && !gone(); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			s.cleanup()
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.cleanup()
	return nil
}

func (s *Supervisor) cleanup() {
	_, _, pidFile, _ := s.cfg.paths()
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove pid file", "err", err)
	}
}
