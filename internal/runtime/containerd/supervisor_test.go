package containerd_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/runtime/containerd"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

func superviseChild(dir string) {
	s, err := containerd.StartContainerd(context.Background(), containerd.SupervisorConfig{Dir: dir})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("pid", s.Pid())
	select {} // until killed
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "bsup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// A Berth server that is kill -9'ed leaves its containerd running; the
// next one must adopt it rather than start a second one on the same root.
func TestSupervisorReusesContainerdOfDeadProcess(t *testing.T) {
	testutil.RequireContainerd(t)
	dir := shortDir(t)
	child := exec.Command(os.Args[0], "supervise", dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		child.Process.Kill()
		t.Fatalf("child said %q, %v", line, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	t.Cleanup(func() {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	child.Process.Kill() // kill -9 of "Berth"
	child.Wait()
	if !alive(pid) {
		t.Fatal("containerd died with the process that started it")
	}

	ctx := context.Background()
	s, err := containerd.StartContainerd(ctx, containerd.SupervisorConfig{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Reused() || s.Pid() != pid {
		t.Errorf("Reused=%v pid=%d, want reuse of %d", s.Reused(), s.Pid(), pid)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatal("Stop took down a reused containerd")
	}

	s, err = containerd.StartContainerd(ctx, containerd.SupervisorConfig{Dir: dir, Logger: testLogger(t), StopReused: true})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "containerd to exit", func() bool { return !alive(pid) })
}

// containerd dying must not take containers with it: the supervisor starts
// a new one, and a new driver finds the container still running.
func TestContainersSurviveContainerdRestart(t *testing.T) {
	testutil.RequireContainerd(t)
	dir := shortDir(t)
	ctx := context.Background()
	s, err := containerd.StartContainerd(ctx, containerd.SupervisorConfig{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })

	tmp := t.TempDir()
	const name = "berth.test/echo:survive"
	tar, err := testimage.Build(ctx, tmp, name, testimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	cfg := containerd.Config{Socket: s.Socket(), LogShim: []string{self, "log-shim"}, StateDir: filepath.Join(tmp, "state"), Logger: testLogger(t)}
	d, err := containerd.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(tar)
	_, err = d.ImportImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("survive-%d", os.Getpid())
	logPath := filepath.Join(tmp, "survive.log")
	if err := d.Create(ctx, runtime.ContainerSpec{ID: id, Image: name, LogPath: logPath}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d, err := containerd.New(context.Background(), cfg); err == nil {
			d.Delete(context.Background(), id)
			d.Close()
		}
	})
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	before, err := d.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	old := s.Pid()
	syscall.Kill(old, syscall.SIGKILL)
	testutil.WaitFor(t, 30*time.Second, "the supervisor to restart containerd", func() bool { return s.Pid() != old })

	d2, err := containerd.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	after, err := d2.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != runtime.StatusRunning || after.Pid != before.Pid || !alive(int(before.Pid)) {
		t.Errorf("after containerd restart: %+v, want running with pid %d", after, before.Pid)
	}
	if err := d2.Stop(ctx, id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "shutting down") {
		t.Errorf("log shim stopped logging across the restart:\n%s", b)
	}
}
