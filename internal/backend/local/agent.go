package local

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
)

// Agent runs the Instance records of this node: one runner per instance,
// like a kubelet's pod workers.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	instances *informer.Informer[v1.Instance, *v1.Instance]

	mu      sync.Mutex
	ctx     context.Context    // set by start; runners live until it ends
	runners map[string]*runner // by container ID
	wg      sync.WaitGroup

	// readyNow, when set, hears of a readiness change before it is
	// written to the store (the backend's fresh statuses).
	readyNow func(inst *v1.Instance, st v1.InstanceStatus)
	// frozenMem counts the memory frozen standbys hold, against
	// Config.StandbyMemory.
	frozenMem *standbyMemory
}

// activateNow tells inst's runner, if it waits as a standby, to start its
// task now, ahead of the record saying so.
func (a *Agent) activateNow(inst *v1.Instance) {
	a.mu.Lock()
	r := a.runners[ContainerID(inst.Metadata.Environment, inst.Metadata.Name)]
	a.mu.Unlock()
	if r != nil {
		r.activate()
	}
}

func newAgent(cfg Config, instances *informer.Informer[v1.Instance, *v1.Instance]) *Agent {
	a := &Agent{cfg: cfg, log: cfg.Logger.With("part", "agent"), instances: instances, runners: map[string]*runner{},
		frozenMem: newStandbyMemory(cfg.StandbyMemory)}
	instances.AddHandler(a.handle)
	return a
}

// start follows the runtime's exits; the instance cache, started after,
// hands every instance to handle.
func (a *Agent) start(ctx context.Context) error {
	exits, err := a.cfg.Driver.Exits(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	go a.dispatchExits(ctx, exits)
	return nil
}

// wait returns once every runner has returned (after ctx ended).
func (a *Agent) wait() { a.wg.Wait() }

// collectOrphans removes containers and network namespaces that no
// instance owns (left over from a crash between create and record). It
// runs once, after the first list of instances: every instance known then
// has a runner, and a runner is registered before it attaches anything,
// so nothing it keeps can be in the middle of being made.
func (a *Agent) collectOrphans(ctx context.Context) {
	keep := func(id string) bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.runners[id]
		return ok
	}
	if gc, ok := a.cfg.Network.(networkGC); ok {
		if err := gc.GC(ctx, keep); err != nil {
			a.log.Warn("network garbage collection", "err", err)
		}
	}
	cs, err := a.cfg.Driver.List(ctx)
	if err != nil {
		a.log.Warn("list containers", "err", err)
		return
	}
	for _, c := range cs {
		if keep(c.ID) || c.Labels[labelManaged] != "true" {
			continue
		}
		a.log.Info("removing orphaned container", "container", c.ID)
		_ = a.cfg.Driver.Stop(ctx, c.ID, time.Second)
		if err := a.cfg.Driver.Delete(ctx, c.ID); err != nil {
			a.log.Warn("remove orphaned container", "container", c.ID, "err", err)
		}
		_ = a.cfg.Network.Detach(ctx, c.ID, c.Labels[labelEnvironment])
	}
}

func (a *Agent) handle(_ store.Key, old, cur *v1.Instance) {
	if cur == nil {
		a.mu.Lock()
		r := a.runners[ContainerID(old.Metadata.Environment, old.Metadata.Name)]
		a.mu.Unlock()
		if r != nil {
			r.setDeleted()
		}
		return
	}
	a.update(cur)
}

// update hands the latest object to its runner, starting one if needed.
func (a *Agent) update(inst *v1.Instance) {
	id := ContainerID(inst.Metadata.Environment, inst.Metadata.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.runners[id]; ok {
		r.setObject(inst)
		return
	}
	ctx := a.ctx
	if ctx == nil || ctx.Err() != nil {
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
