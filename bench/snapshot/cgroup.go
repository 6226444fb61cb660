package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// cgroupV1 is where this machine mounts the v1 controllers; the bench
// measures the freezer and memory controllers there and says so when the
// host is cgroup v2 instead.
const cgroupV1 = "/sys/fs/cgroup"

// cgroupPath is the container's cgroup relative to each controller's
// mount: containerd's default spec puts it at /NAMESPACE/ID.
func cgroupPath(ctx context.Context, c client.Container) (string, error) {
	s, err := c.Spec(ctx)
	if err != nil {
		return "", err
	}
	if s.Linux == nil || s.Linux.CgroupsPath == "" || strings.Contains(s.Linux.CgroupsPath, ":") {
		return "", fmt.Errorf("container %s: cgroupsPath %q is not a cgroupfs path", c.ID(), s.Linux.CgroupsPath)
	}
	return s.Linux.CgroupsPath, nil
}

// freeze writes FROZEN to the container's freezer.state and waits until the
// kernel reports every task frozen (it passes through FREEZING).
func freeze(ctx context.Context, cg string) error {
	state := filepath.Join(cgroupV1, "freezer", cg, "freezer.state")
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		raw, err := os.ReadFile(state)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(raw)) == "FROZEN" {
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
	return fmt.Errorf("%s not FROZEN in 10s", state)
}

// thaw writes THAWED: the kernel wakes the tasks before the write returns.
func thaw(cg string) error {
	return os.WriteFile(filepath.Join(cgroupV1, "freezer", cg, "freezer.state"), []byte("THAWED"), 0)
}

// memory is what a standby holds, from its memory cgroup: usage (what the
// limit counts: anonymous memory and page cache charged to it), rss
// (anonymous memory only) and the working set Berth's driver reports
// (usage less inactive file cache).
type memory struct {
	usage, rss, workingSet uint64
}

func readMemory(cg string) (memory, error) {
	dir := filepath.Join(cgroupV1, "memory", cg)
	raw, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return memory{}, err
	}
	var m memory
	if m.usage, err = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); err != nil {
		return memory{}, err
	}
	f, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var inactiveFile uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "total_rss":
			m.rss = n
		case "total_inactive_file":
			inactiveFile = n
		}
	}
	m.workingSet = m.usage - min(inactiveFile, m.usage)
	return m, sc.Err()
}

// shimMemory is the proportional set size of the process that supervises
// a task (containerd-shim-runc-v2, the parent of the task's first
// process): a standby's cost outside its cgroup. Pss shares the shim's
// text pages among all shims, as the node pays for them.
func shimMemory(taskPid uint32) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", taskPid))
	if err != nil {
		return 0, err
	}
	ppid := ""
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			ppid = strings.TrimSpace(v)
		}
	}
	if comm, err := os.ReadFile("/proc/" + ppid + "/comm"); err != nil || !strings.HasPrefix(string(comm), "containerd-shim") {
		return 0, fmt.Errorf("parent %s of task %d is not a shim (%q, %v)", ppid, taskPid, comm, err)
	}
	raw, err = os.ReadFile("/proc/" + ppid + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%s/smaps_rollup", ppid)
}
