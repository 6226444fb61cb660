package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requireHost skips when the test cannot run here at all: not root, or the
// plugins or iptables are not installed.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Skip(t, "needs root: creates network namespaces, bridges and iptables rules")
	}
	for _, p := range requiredPlugins {
		if _, err := findPlugin(defaultPluginDirs, p); err != nil {
			testutil.Skip(t, fmt.Sprintf("CNI plugins missing: %v", err))
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		testutil.Skip(t, "iptables not installed")
	}
}

// testConfig gives a test its own data dir, pool and a random bridge prefix,
// so it cannot collide with a real server or another test run, and removes
// everything the test made on the host when it ends.
func testConfig(t *testing.T, pool string) Config {
	t.Helper()
	requireHost(t)
	b := make([]byte, 2)
	rand.Read(b)
	cfg := Config{
		DataDir:      t.TempDir(),
		SubnetPool:   pool,
		BridgePrefix: "bt" + hex.EncodeToString(b),
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	// Registered after TempDir, so it runs first: the namespace mounts must
	// go before the directory can be removed.
	t.Cleanup(func() { cleanupHost(t, cfg) })
	return cfg
}

func cleanupHost(t *testing.T, cfg Config) {
	ctx := context.Background()
	if m, err := New(ctx, cfg); err == nil {
		if err := m.GC(ctx, func(string) bool { return false }); err != nil {
			t.Errorf("cleanup: GC: %v", err)
		}
	}
	// Whatever GC could not undo must at least not pin the temp dir.
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "netns"))
	for _, e := range entries {
		removeNetNS(filepath.Join(cfg.DataDir, "netns", e.Name()))
	}
	// Rules are removed by their text, not their number: other packages'
	// servers insert into FORWARD and INPUT meanwhile. CNI-FORWARD stays,
	// even empty: it is every CNI user's, and deleting it under another
	// one's firewall plugin fails that plugin's ADD.
	testutil.RemoveHostNetwork(cfg.BridgePrefix)
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, cfg.BridgePrefix) {
			t.Errorf("cleanup: %s is still there", l.Attrs().Name)
		}
	}
}

func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// inNetNS runs fn on an OS thread moved into the namespace at nsPath.
// Sockets fn opens stay in that namespace after it returns.
func inNetNS(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		// If the thread cannot go home it stays locked, and Go discards it.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// serveIn starts a TCP listener inside the namespace that answers every
// connection with name, and returns its port.
func serveIn(t *testing.T, nsPath, name string) int {
	t.Helper()
	var ln net.Listener
	err := inNetNS(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp4", "0.0.0.0:0")
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// readGreeting reads what a serveIn listener answers on c.
func readGreeting(c net.Conn) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// dialFromHost connects from the host's namespace.
func dialFromHost(ip net.IP, port int) (string, error) {
	c, err := net.DialTimeout("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(port)), 3*time.Second)
	if err != nil {
		return "", err
	}
	return readGreeting(c)
}

// dialFromNetNS connects from inside the namespace at nsPath.
func dialFromNetNS(nsPath string, ip net.IP, port int, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNetNS(nsPath, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", net.JoinHostPort(ip.String(), strconv.Itoa(port)), timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	return readGreeting(c)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
