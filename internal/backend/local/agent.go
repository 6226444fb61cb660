package local

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
)

// Drainer takes an endpoint out of rotation and waits for its in-flight
// requests to finish. The gateway implements it.
type Drainer interface {
	Drain(ctx context.Context, endpointID string) error
}

// Config is what the agent needs from the composition root.
type Config struct {
	Store   store.Store
	Driver  runtime.Driver
	Network network.Manager
	Drainer Drainer
	// LogDir and VolumeDir are roots under the data dir.
	LogDir    string
	VolumeDir string
	// StateDir holds per-instance files the agent generates (hosts,
	// resolv.conf) that are bind-mounted into containers.
	StateDir string
	// Secrets reads the secret and config values templates reference;
	// nil fails instances that reference any.
	Secrets Secrets
	Logger  *slog.Logger
	// Backoff bounds for restarts after an exit; zero means 500ms and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// Agent runs the Instance objects of this node.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	runners map[string]*runner // by container ID
	gcDone  bool
	wg      sync.WaitGroup
}

// New builds an agent. Run starts it.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 500 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	return &Agent{cfg: cfg, log: cfg.Logger, runners: map[string]*runner{}}
}

// ContainerID is the containerd ID (and network attachment ID) of an
// instance: environment and name joined by a dot, which DNS-label names
// cannot contain.
func ContainerID(env, name string) string { return env + "." + name }

// Run adopts what is already running, then follows the store until ctx
// ends. Containers keep running when Run returns: stopping the server must
// not stop the workloads.
func (a *Agent) Run(ctx context.Context) error {
	exits, err := a.cfg.Driver.Exits(ctx)
	if err != nil {
		return err
	}
	go a.dispatchExits(ctx, exits)

	rev, err := a.resync(ctx)
	if err != nil {
		return err
	}
	for {
		events, err := a.cfg.Store.Watch(ctx, v1.KindInstance, rev)
		if err == nil {
			for ev := range events {
				rev = ev.Record.Revision
				a.handle(ctx, ev)
			}
		}
		if ctx.Err() != nil {
			a.wg.Wait()
			return nil
		}
		// The watch ended (we fell behind, or history was compacted):
		// list again. Syncs are idempotent, so replays are harmless.
		if rev, err = a.resync(ctx); err != nil {
			if ctx.Err() != nil {
				a.wg.Wait()
				return nil
			}
			a.log.Error("resync failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// resync makes the runners match the store and removes containers that no
// instance owns (left over from a crash between create and record).
func (a *Agent) resync(ctx context.Context) (uint64, error) {
	insts, rev, err := store.List[v1.Instance](ctx, a.cfg.Store, v1.KindInstance, "")
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, inst := range insts {
		id := ContainerID(inst.Metadata.Environment, inst.Metadata.Name)
		want[id] = true
		a.update(ctx, inst)
	}
	a.mu.Lock()
	for id, r := range a.runners {
		if !want[id] {
			r.setDeleted()
		}
	}
	a.mu.Unlock()

	cs, err := a.cfg.Driver.List(ctx)
	if err != nil {
		return 0, err
	}
	// Namespaces left by a crash between attach and record go too; only at
	// start, when no runner can be attaching an instance newer than the list.
	if gc, ok := a.cfg.Network.(networkGC); ok && !a.gcDone {
		a.gcDone = true
		if err := gc.GC(ctx, func(id string) bool { return want[id] }); err != nil {
			a.log.Warn("network garbage collection", "err", err)
		}
	}
	for _, c := range cs {
		if want[c.ID] || c.Labels[labelManaged] != "true" {
			continue
		}
		a.log.Info("removing orphaned container", "container", c.ID)
		_ = a.cfg.Driver.Stop(ctx, c.ID, time.Second)
		if err := a.cfg.Driver.Delete(ctx, c.ID); err != nil {
			a.log.Warn("remove orphaned container", "container", c.ID, "err", err)
		}
		_ = a.cfg.Network.Detach(ctx, c.ID, c.Labels[labelEnvironment])
	}
	return rev, nil
}

func (a *Agent) handle(ctx context.Context, ev store.Event) {
	var inst v1.Instance
	if err := store.Decode(ev.Record, &inst); err != nil {
		a.log.Error("bad instance record", "key", ev.Record.Key, "err", err)
		return
	}
	if ev.Type == store.EventDelete {
		a.mu.Lock()
		r := a.runners[ContainerID(inst.Metadata.Environment, inst.Metadata.Name)]
		a.mu.Unlock()
		if r != nil {
			r.setDeleted()
		}
		return
	}
	a.update(ctx, &inst)
}

// update hands the latest object to its runner, starting one if needed.
func (a *Agent) update(ctx context.Context, inst *v1.Instance) {
	id := ContainerID(inst.Metadata.Environment, inst.Metadata.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.runners[id]; ok {
		r.setObject(inst)
		return
	}
	r := newRunner(a, id, inst)
	a.runners[id] = r
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		r.run(ctx)
		a.mu.Lock()
		if a.runners[id] == r {
			delete(a.runners, id)
		}
		a.mu.Unlock()
	}()
}

func (a *Agent) dispatchExits(ctx context.Context, exits <-chan runtime.Exit) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-exits:
			if !ok {
				return
			}
			a.mu.Lock()
			r := a.runners[e.ID]
			a.mu.Unlock()
			if r != nil {
				r.exited(e)
			}
		}
	}
}

// networkGC is an optional ability of the network manager: detach every
// attachment not kept.
type networkGC interface {
	GC(ctx context.Context, keep func(id string) bool) error
}

// errGone means the instance object no longer exists.
var errGone = errors.New("instance deleted")
