package logs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Retention defaults: a week of logs, and 100 MiB per workload.
const (
	DefaultMaxAge         = 7 * 24 * time.Hour
	DefaultMaxBytes       = 100 << 20
	DefaultJanitorEvery   = 10 * time.Minute
	metaSuffix            = ".meta"
	tmpSuffix             = ".tmp"
	janitorStaleTmpMargin = time.Hour
)

// JanitorConfig is the logs retention. Zero values take the defaults.
type JanitorConfig struct {
	// Root is the logs root, DATA/logs.
	Root string
	// Store tells live instances from gone ones.
	Store store.Store
	// MaxAge: the files of gone instances last written longer ago than
	// this are deleted.
	MaxAge time.Duration
	// MaxBytes bounds the logs kept per workload: past it, the files of
	// gone instances are deleted oldest first. Live instances' files are
	// never deleted (the log shim's rotation bounds them), but they count.
	MaxBytes int64
	// Every is the time between sweeps.
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Janitor enforces the retention on the logs root. It deletes whole files
// of instances that are gone, never a live instance's files, so it never
// races with the shim that writes them.
type Janitor struct {
	cfg JanitorConfig
	log *slog.Logger
}

// NewJanitor returns a Janitor; Run starts it.
func NewJanitor(cfg JanitorConfig) *Janitor {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultJanitorEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Janitor{cfg: cfg, log: cfg.Logger}
}

// Run sweeps at once and then every cfg.Every until ctx ends; a failed
// sweep is logged and tried again next time.
func (j *Janitor) Run(ctx context.Context) error {
	t := time.NewTicker(j.cfg.Every)
	defer t.Stop()
	for {
		if err := j.Sweep(ctx); err != nil && ctx.Err() == nil {
			j.log.Warn("log retention sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// logFile is one file of an owner's log directory.
type logFile struct {
	name     string
	instance string
	size     int64
	mod      time.Time
}

// Sweep applies the retention once.
func (j *Janitor) Sweep(ctx context.Context) error {
	insts, _, err := store.List[v1.Instance](ctx, j.cfg.Store, v1.KindInstance, "")
	if err != nil {
		// Without the live set nothing can be told gone: delete nothing.
		return fmt.Errorf("list instances: %w", err)
	}
	live := map[string]map[string]*v1.Instance{} // "env/owner" → name → instance
	for _, i := range insts {
		k := i.Metadata.Environment + "/" + i.Spec.Owner
		if live[k] == nil {
			live[k] = map[string]*v1.Instance{}
		}
		live[k][i.Metadata.Name] = i
	}
	envs, err := os.ReadDir(j.cfg.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read logs root: %w", err)
	}
	for _, e := range envs {
		if !e.IsDir() {
			continue
		}
		owners, err := os.ReadDir(filepath.Join(j.cfg.Root, e.Name()))
		if err != nil {
			return fmt.Errorf("read logs root: %w", err)
		}
		for _, o := range owners {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !o.IsDir() {
				continue
			}
			if err := j.sweepOwner(e.Name(), o.Name(), live[e.Name()+"/"+o.Name()]); err != nil {
				j.log.Warn("log retention", "environment", e.Name(), "owner", o.Name(), "err", err)
			}
		}
		// Gone once its last owner is; Remove fails harmlessly if not empty.
		_ = os.Remove(filepath.Join(j.cfg.Root, e.Name()))
	}
	return nil
}

func (j *Janitor) sweepOwner(env, owner string, live map[string]*v1.Instance) error {
	dir := Dir(j.cfg.Root, env, owner)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	now := j.cfg.Now()
	var files []logFile
	var total int64
	hasLogs := map[string]bool{}
	metas := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		info, err := e.Info()
		if err != nil {
			continue // deleted since listed
		}
		if inst, ok := strings.CutSuffix(name, metaSuffix); ok {
			metas[inst] = true
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			if now.Sub(info.ModTime()) > janitorStaleTmpMargin {
				_ = os.Remove(filepath.Join(dir, name)) // a sidecar write that crashed
			}
			continue
		}
		inst, _, ok := parseFileName(name)
		if !ok {
			continue // not ours: leave it
		}
		f := logFile{name: name, instance: inst, size: info.Size(), mod: info.ModTime()}
		total += f.size
		if _, isLive := live[inst]; isLive {
			hasLogs[inst] = true
			continue
		}
		files = append(files, f)
	}

	// Record the revision of live instances that have no sidecar yet, for
	// `logs --revision` after they are gone.
	for name, i := range live {
		if !metas[name] {
			if err := WriteMeta(j.cfg.Root, env, owner, name, Meta{Revision: i.Spec.Revision, OwnerKind: i.Spec.OwnerKind}); err != nil {
				j.log.Debug("write log meta", "instance", name, "err", err)
			} else {
				metas[name] = true
			}
		}
	}

	// Oldest first: age removes from the front, size keeps removing.
	slices.SortFunc(files, func(a, b logFile) int { return a.mod.Compare(b.mod) })
	cutoff := now.Add(-j.cfg.MaxAge)
	var removed, freed int64
	for _, f := range files {
		old := f.mod.Before(cutoff)
		if !old && total <= j.cfg.MaxBytes {
			hasLogs[f.instance] = true
			continue
		}
		if err := os.Remove(filepath.Join(dir, f.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			hasLogs[f.instance] = true
			j.log.Warn("delete log file", "file", filepath.Join(dir, f.name), "err", err)
			continue
		}
		total -= f.size
		removed++
		freed += f.size
	}
	for inst := range metas {
		if !hasLogs[inst] && live[inst] == nil {
			_ = os.Remove(filepath.Join(dir, inst+metaSuffix))
		}
	}
	if removed > 0 {
		j.log.Info("log retention removed files", "environment", env, "owner", owner,
			"files", removed, "bytes", freed, "kept_bytes", total)
	}
	if len(live) == 0 {
		// Nothing writes here now. Remove fails if anything is left.
		_ = os.Remove(dir)
	}
	return nil
}
