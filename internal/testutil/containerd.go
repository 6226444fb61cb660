package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"berth.dev/berth/internal/runtime/containerd"
)

// ContainerdMissing says why containers cannot run here (not root, no
// containerd or runc on PATH), or "" when they can.
func ContainerdMissing() string {
	if os.Geteuid() != 0 {
		return "needs root to run containers"
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("needs %s on PATH (apt-get install containerd runc)", bin)
		}
	}
	return ""
}

// RequireRoot skips t unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// RequireContainerd skips t unless containers can run here.
func RequireContainerd(t testing.TB) {
	t.Helper()
	if why := ContainerdMissing(); why != "" {
		Skip(t, why)
	}
}

// StartContainerd starts a private containerd for a test binary, typically
// from TestMain. With dir "" it makes a short temp dir under /tmp (a unix
// socket path must fit in 108 bytes, which t.TempDir paths often do not)
// and removes it on stop. stop deletes every container and task left in
// it, in every namespace, so no shim or workload outlives the tests, then
// stops containerd.
func StartContainerd(dir string) (socket string, stop func(), err error) {
	owned := false
	if dir == "" {
		dir, err = os.MkdirTemp("/tmp", "bctd-")
		if err != nil {
			return "", nil, err
		}
		owned = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sup, err := containerd.StartContainerd(ctx, containerd.SupervisorConfig{Dir: dir, Logger: logger, StopReused: true})
	if err != nil {
		if owned {
			os.RemoveAll(dir)
		}
		return "", nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := purge(ctx, sup.Socket()); err != nil {
			fmt.Fprintln(os.Stderr, "testutil: cleaning containerd:", err)
		}
		if err := sup.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "testutil: stopping containerd:", err)
		}
		if owned {
			os.RemoveAll(dir)
		}
	}
	return sup.Socket(), stop, nil
}

// purge kills and deletes every task and container on the containerd.
func purge(ctx context.Context, socket string) error {
	c, err := client.New(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := c.Containers(nctx)
		if err != nil {
			return err
		}
		for _, ctr := range cs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				if st, err := task.Status(nctx); err == nil && st.Status != client.Stopped {
					if ch, err := task.Wait(nctx); err == nil {
						_ = task.Kill(nctx, syscall.SIGKILL, client.WithKillAll)
						select {
						case <-ch:
						case <-time.After(10 * time.Second):
						}
					}
				}
				_, _ = task.Delete(nctx)
			}
			if err := ctr.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				fmt.Fprintln(os.Stderr, "testutil: delete container", ctr.ID(), err)
			}
		}
	}
	return nil
}
