package containerd_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/runtime/containerd"
	"berth.dev/berth/internal/runtime/drivertest"
	"berth.dev/berth/internal/runtime/logshim"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/testimage"
)

var socket string

func TestMain(m *testing.M) {
	// The shim runs this test binary as the container logger, as it runs
	// the berth binary in production.
	if len(os.Args) > 1 && os.Args[1] == "log-shim" {
		os.Exit(logshim.Main(os.Args[2:]))
	}
	// Stands in for a Berth server that starts containerd and then dies.
	if len(os.Args) > 2 && os.Args[1] == "supervise" {
		superviseChild(os.Args[2])
	}
	if why := testutil.ContainerdMissing(); why != "" {
		fmt.Println("containerd tests skip:", why)
		os.Exit(m.Run())
	}
	var stop func()
	var err error
	socket, stop, err = testutil.StartContainerd("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "start containerd:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newDriver(t *testing.T, stateDir string) *containerd.Driver {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d, err := containerd.New(context.Background(), containerd.Config{
		Socket:   socket,
		LogShim:  []string{self, "log-shim"},
		StateDir: stateDir,
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// newNetNS makes a network namespace with loopback up, like the network
// package gives each instance, minus the bridge.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("bdt-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return filepath.Join("/run/netns", name)
}

func TestConformance(t *testing.T) {
	testutil.RequireContainerd(t)
	tmp := t.TempDir()
	const name = "berth.test/echo:v1"
	tar, err := testimage.Build(context.Background(), tmp, name, testimage.Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(tmp, "state")
	d := newDriver(t, stateDir)
	env := drivertest.Env{
		ImageTar:  tar,
		ImageName: name,
		LogDir:    filepath.Join(tmp, "logs"),
		Reopen:    func(t *testing.T) runtime.Driver { return newDriver(t, stateDir) },
	}
	if _, err := exec.LookPath("ip"); err == nil {
		env.NetNS = newNetNS
	} else {
		t.Log("no ip command: HTTP checks skipped")
	}
	drivertest.Run(t, d, env)
}
