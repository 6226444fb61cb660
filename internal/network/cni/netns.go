package cni

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// createNetNS makes a new network namespace and pins it by bind-mounting it
// on path, so it outlives every process in it and a restarted server finds it
// by name.
func createNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace mount point: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread ends up in the new namespace, so the Go
		// runtime must throw it away when the goroutine exits instead of
		// reusing it for unrelated goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		// Interfaces made in this namespace from now on (the bridge
		// plugin makes eth0 here) start without IPv6; loopback keeps ::1,
		// which only the instance itself reaches.
		if err := disableIPv6("default"); err != nil {
			errc <- err
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount network namespace on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unpins and deletes a namespace file; a missing or already
// unmounted file is not an error, so a half-finished removal can be retried.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}

// isNetNS reports whether path is a mounted namespace rather than the empty
// file left behind when the mount is gone (e.g. after a reboot).
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// ipv6Conf is where the kernel's per-interface IPv6 settings are; a kernel
// without IPv6 has none, and nothing to turn off.
const ipv6Conf = "/proc/sys/net/ipv6/conf"

// disableIPv6 turns IPv6 off on interface ifName ("default": interfaces
// made later) of the calling thread's network namespace, which removes its
// addresses, link-local included. Isolation between environments and of
// the host is IPv4 rules only: an instance must have no IPv6 path at all.
func disableIPv6(ifName string) error {
	if _, err := os.Stat(ipv6Conf); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	p := filepath.Join(ipv6Conf, ifName, "disable_ipv6")
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("disable IPv6 on %s: %w", ifName, err)
	}
	return nil
}
