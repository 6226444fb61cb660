package containerd

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/v2/client"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroupOOMKilled reads the kernel's OOM-kill counter of the container's
// cgroup. It backs up the /tasks/oom event, which may arrive after the exit
// or not at all when no Driver was listening; the cgroup lasts until the
// task is deleted.
func (d *Driver) cgroupOOMKilled(ctx context.Context, c client.Container) bool {
	path := d.cgroupPath(ctx, c)
	var file, key string
	if cgroups.Mode() == cgroups.Unified {
		file, key = filepath.Join(cgroupRoot, path, "memory.events"), "oom_kill"
	} else {
		file, key = filepath.Join(cgroupRoot, "memory", path, "memory.oom_control"), "oom_kill"
	}
	return readCounter(file, key) > 0
}

func readCounter(file, key string) uint64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
