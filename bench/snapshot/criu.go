package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
)

type criuResult struct {
	// refused says why there are no rows: CRIU missing, `criu check`
	// refusing this kernel, or a checkpoint or restore failing.
	refused string
	rows    map[string][]time.Duration
	size    map[string]int64
}

// criu checkpoints each function once, initialised and answering, into an
// image directory (runc checkpoint through containerd's task.Checkpoint),
// then restores it n times as new containers in fresh network namespaces
// (runc restore: it hands CRIU the new namespace as the external one the
// checkpoint recorded, and the listening socket on 0.0.0.0:8080 comes back
// bound in it) and times restore + first response.
func (b *bench) criu(ctx context.Context, fns []fnImage, n int) criuResult {
	res := criuResult{rows: map[string][]time.Duration{}, size: map[string]int64{}}
	if _, err := exec.LookPath("criu"); err != nil {
		res.refused = "not installed (apt-get install criu); no rows"
		return res
	}
	version, _ := exec.Command("criu", "--version").Output()
	kernel, _ := exec.Command("uname", "-r").Output()
	if out, err := exec.Command("criu", "check").CombinedOutput(); err != nil || strings.Contains(string(out), "Error") {
		res.refused = fmt.Sprintf("`criu check` (%s, kernel %s) refuses: %s",
			strings.Join(strings.Fields(string(version)), " "), strings.TrimSpace(string(kernel)), strings.TrimSpace(string(out)))
		// What containerd says when asked anyway, on the first function.
		if len(fns) > 0 {
			if _, err := b.checkpoint(ctx, fns[0]); err != nil {
				res.refused += fmt.Sprintf("\n      containerd task.Checkpoint of %s: %v", fns[0].name, err)
			} else {
				res.refused += fmt.Sprintf("\n      containerd task.Checkpoint of %s succeeded nonetheless", fns[0].name)
			}
		}
		return res
	}
	for _, fn := range fns {
		img, err := b.checkpoint(ctx, fn)
		if err != nil {
			res.refused += fmt.Sprintf("%s: checkpoint: %v; ", fn.name, err)
			continue
		}
		res.size[fn.name] = dirSize(img)
		for range n {
			d, err := b.restore(ctx, fn, img)
			if err != nil {
				res.refused += fmt.Sprintf("%s: restore: %v; ", fn.name, err)
				break
			}
			res.rows[fn.name] = append(res.rows[fn.name], d)
		}
	}
	return res
}

// checkpoint starts an instance, waits for its first response, and
// checkpoints it into a directory, leaving it running (it is removed after).
func (b *bench) checkpoint(ctx context.Context, fn fnImage) (string, error) {
	in, _, err := b.initialised(ctx, fn)
	if err != nil {
		return "", err
	}
	defer b.remove(context.WithoutCancel(ctx), in)
	c, err := b.cl.LoadContainer(ctx, in.id)
	if err != nil {
		return "", err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return "", err
	}
	img := filepath.Join(b.dir, "criu", fn.name)
	if err := os.MkdirAll(img, 0o700); err != nil {
		return "", err
	}
	if _, err := task.Checkpoint(ctx, client.WithCheckpointImagePath(img)); err != nil {
		// runc names CRIU's log, which goes with the task: quote its errors.
		if m := dumpLog.FindStringSubmatch(err.Error()); m != nil {
			if raw, rerr := os.ReadFile(m[1]); rerr == nil {
				var lines []string
				for _, l := range strings.Split(string(raw), "\n") {
					if strings.Contains(l, "Error") {
						lines = append(lines, strings.TrimSpace(l))
					}
				}
				err = fmt.Errorf("%w; %s says: %s", err, filepath.Base(m[1]), strings.Join(lines, " | "))
			}
		}
		return "", err
	}
	return img, nil
}

// restore makes a new container of fn as Berth would (its own network
// namespace, limits), replaces its created task with one restored from
// img, and times that plus the first response.
func (b *bench) restore(ctx context.Context, fn fnImage, img string) (time.Duration, error) {
	in, spec, err := b.newInstance(ctx, fn, b.lim.CPUMillis)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := b.drv.Create(ctx, spec); err != nil {
		return 0, err
	}
	c, err := b.cl.LoadContainer(ctx, in.id)
	if err != nil {
		return 0, err
	}
	created, err := c.Task(ctx, nil)
	if err != nil {
		return 0, err
	}
	if _, err := created.Delete(ctx); err != nil {
		return 0, err
	}
	task, err := c.NewTask(ctx, cio.LogFile(filepath.Join(b.dir, "logs", in.id+".log")), client.WithRestoreImagePath(img))
	if err != nil {
		return 0, err
	}
	// The runc shim restores on Start of a task created from a checkpoint.
	if err := task.Start(ctx); err != nil {
		return 0, err
	}
	if err := b.firstResponse(ctx, in); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, b.remove(ctx, in)
}

var dumpLog = regexp.MustCompile(`path= (\S+criu-dump\.log)`)

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
