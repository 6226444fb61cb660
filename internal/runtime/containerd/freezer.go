package containerd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/v2/client"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

var _ runtime.Freezer = (*Driver)(nil)

// The freezer is driven by writing the task's cgroup files directly rather
// than through containerd's Pause and Resume: those run the runc binary
// (about 10 ms each on this class of machine), and a thaw is on a woken
// function's request path. runc reads the same files to report a task as
// paused, so containerd's view stays true.

// Freeze stops every process of a running task in place and returns once
// the kernel says they are all frozen.
func (d *Driver) Freeze(ctx context.Context, id string) error {
	state, want, err := d.freezerFiles(ctx, id, nil)
	if err != nil {
		return err
	}
	if err := writeControl(state, want.freeze); err != nil {
		return fmt.Errorf("freeze %s: %w", id, err)
	}
	// cgroup v1 reports FREEZING until every task has stopped; v2 sets
	// "frozen 1" in cgroup.events.
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		b, err := os.ReadFile(want.events)
		if err != nil {
			return fmt.Errorf("freeze %s: %w", id, err)
		}
		if want.frozen(string(b)) {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = writeControl(state, want.thaw)
			return fmt.Errorf("freeze %s: %w", id, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// Thaw lets a frozen task run again. A task that is not frozen, or has no
// cgroup any more, is left as it is.
func (d *Driver) Thaw(ctx context.Context, id string) error {
	return d.thaw(ctx, id, nil)
}

// thaw is Thaw with the container, when the caller has it loaded.
func (d *Driver) thaw(ctx context.Context, id string, c client.Container) error {
	state, want, err := d.freezerFiles(ctx, id, c)
	if err != nil {
		if v1.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := writeControl(state, want.thaw); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("thaw %s: %w", id, err)
	}
	return nil
}

// writeControl writes a cgroup control file that must already exist (a
// cgroup that is gone is not to be made again by a write).
func writeControl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// frozen reads whether a loaded container's cgroup is frozen (false when
// it has none).
func (d *Driver) frozen(ctx context.Context, c client.Container) bool {
	_, want, err := d.freezerFiles(ctx, c.ID(), c)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(want.events)
	return err == nil && want.frozen(string(b))
}

// freezerControl names one cgroup version's freezer files and words.
type freezerControl struct {
	events       string // the file that says whether the group is frozen
	freeze, thaw string
	frozen       func(events string) bool
}

// freezerFiles finds a container's freezer control file, cached per id
// (the container's spec is a round trip to containerd); c is the container
// if the caller has it loaded, else nil.
func (d *Driver) freezerFiles(ctx context.Context, id string, c client.Container) (string, freezerControl, error) {
	path, ok := d.cgroupPaths.Load(id)
	if !ok {
		if c == nil {
			var err error
			if c, err = d.client.LoadContainer(d.ctx(ctx), id); err != nil {
				return "", freezerControl{}, wrap(err, "container %s", id)
			}
		}
		path, _ = d.cgroupPaths.LoadOrStore(id, d.cgroupPath(d.ctx(ctx), c))
	}
	p := path.(string)
	if cgroups.Mode() == cgroups.Unified {
		dir := filepath.Join(cgroupRoot, p)
		return filepath.Join(dir, "cgroup.freeze"), freezerControl{
			events: filepath.Join(dir, "cgroup.events"),
			freeze: "1", thaw: "0",
			frozen: func(s string) bool { return strings.Contains(s, "frozen 1") },
		}, nil
	}
	file := filepath.Join(cgroupRoot, "freezer", p, "freezer.state")
	return file, freezerControl{
		events: file,
		freeze: "FROZEN", thaw: "THAWED",
		frozen: func(s string) bool { return strings.TrimSpace(s) == "FROZEN" },
	}, nil
}
