package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/network"
	"berth.dev/berth/internal/runtime"
)

// A standby is prepared as far as it can be before a request needs it:
// started, initialised (its readiness check passed) and then frozen by the
// cgroup freezer, so waking it is a thaw (well under a millisecond) and a
// ready check instead of the program's whole start — 100 ms and more for
// an interpreter that imports its modules. A frozen standby holds its
// memory and no CPU; the memory is capped per machine (Config.StandbyMemory),
// and past the cap, or where the runtime cannot freeze, a standby waits
// created but not started, as before.

// warmUpTimeout bounds a standby's initialisation before it is frozen; a
// program slower than this waits created instead.
const warmUpTimeout = 2 * time.Minute

// standbyMemory is the memory frozen standbys hold on this machine, by
// container ID, against a budget.
type standbyMemory struct {
	limit int64

	mu   sync.Mutex
	used map[string]int64
	// last is the memory a frozen standby of each revision held, the
	// estimate for the next.
	last map[string]int64
}

func newStandbyMemory(limit int64) *standbyMemory {
	return &standbyMemory{limit: limit, used: map[string]int64{}, last: map[string]int64{}}
}

// admit says whether a standby of revision rev may be frozen now; it then
// counts it at the revision's last measured size until set says better.
func (m *standbyMemory) admit(id, rev string) bool {
	if m == nil || m.limit <= 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var total int64
	for other, n := range m.used {
		if other != id {
			total += n
		}
	}
	if total+m.last[rev] > m.limit {
		return false
	}
	m.used[id] = m.last[rev]
	return true
}

// set records what a frozen standby holds.
func (m *standbyMemory) set(id, rev string, n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.used[id] = n
	if rev != "" {
		m.last[rev] = n
	}
	m.mu.Unlock()
}

// release stops counting a standby: it was woken or removed.
func (m *standbyMemory) release(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.used, id)
	m.mu.Unlock()
}

// heldBy is what one frozen standby holds.
func (m *standbyMemory) heldBy(id string) (int64, bool) {
	if m == nil {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.used[id]
	return n, ok
}

// mib writes a byte count for people.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// total is the memory all frozen standbys hold now.
func (m *standbyMemory) total() (n int64, count int) {
	if m == nil {
		return 0, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.used {
		n += b
	}
	return n, len(m.used)
}

// warmUp is how a standby's warm-up ended.
type warmUp int

const (
	warmFrozen    warmUp = iota // started, ready and frozen
	warmActivated               // a request came first: the task runs on, unfrozen
	warmCreated                 // it could not be frozen: made again, created only
)

// revisionKey names a revision for the memory estimate.
func revisionKey(inst *v1.Instance) string {
	return inst.Metadata.Environment + "/" + v1.RevisionName(inst.Spec.Owner, inst.Spec.Revision)
}

// warmUp starts a created standby's task, waits for its first readiness
// and freezes it. A program that exits or never gets ready during its
// warm-up, or a freeze that fails, leaves the standby created again (its
// failure then shows when a request starts it, as before), with a warning
// event; errStopping when the instance was drained meanwhile.
func (r *runner) warmUp(ctx context.Context, fz runtime.Freezer, inst *v1.Instance, t *v1.Template, att network.Attachment, recreate func() error) (warmUp, error) {
	id, rev := r.id, revisionKey(inst)
	began := time.Now()
	r.startCalled = began.UTC()
	if err := r.a.cfg.Driver.Start(ctx, id); err != nil {
		return r.warmFailed(ctx, fmt.Sprintf("start: %v", err), recreate)
	}
	wctx, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	if p := t.ReadinessProbe; p != nil && p.InitialDelaySeconds > 0 {
		if !sleepCtx(wctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
			return r.warmFailed(ctx, "not ready within "+warmUpTimeout.String(), recreate)
		}
	}
	ip := att.IP.String()
	for {
		if r.stopping() {
			return 0, errStopping
		}
		if !r.standby() {
			// Wanted before it was ready: it simply goes on starting.
			return warmActivated, nil
		}
		if check(wctx, t.ReadinessProbe, ip, t.Port) == nil {
			break
		}
		select {
		case e := <-r.exits:
			if e.At.Before(r.startCalled) {
				continue
			}
			return r.warmFailed(ctx, fmt.Sprintf("exited with code %d during its initialisation", e.Code), recreate)
		case <-r.notify:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return r.warmFailed(ctx, "not ready within "+warmUpTimeout.String(), recreate)
		case <-time.After(firstReadyInterval(time.Since(began))):
		}
	}
	if !r.standby() {
		return warmActivated, nil
	}
	// A freeze waits for every process to stop; one that cannot (a
	// process stuck in the kernel) must not hold the runner.
	fctx, cancelFreeze := context.WithTimeout(ctx, 10*time.Second)
	err := fz.Freeze(fctx, id)
	cancelFreeze()
	if err != nil {
		return r.warmFailed(ctx, fmt.Sprintf("freeze: %v", err), recreate)
	}
	var held int64
	if sr, ok := r.a.cfg.Driver.(runtime.StatsReader); ok {
		if st, err := sr.Stats(ctx, id); err == nil {
			held = int64(st.MemoryBytes)
		}
	}
	r.a.frozenMem.set(id, rev, held)
	r.frozenInitMS = ms(time.Since(began))
	r.log.Debug("standby initialised and frozen", "init", time.Since(began), "memory", held)
	return warmFrozen, nil
}

// warmFailed puts a standby back to created after its warm-up failed.
func (r *runner) warmFailed(ctx context.Context, why string, recreate func() error) (warmUp, error) {
	r.a.frozenMem.release(r.id)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	r.log.Info("standby not frozen; keeping it created", "reason", why)
	r.event(ctx, "Warning", "StandbyNotFrozen", fmt.Sprintf("Standby %s %s; it waits created, and starts when a request comes", r.object().Metadata.Name, why))
	_ = r.a.cfg.Driver.Delete(ctx, r.id)
	if err := recreate(); err != nil {
		return 0, err
	}
	return warmCreated, nil
}

// thaw wakes a frozen standby.
func (r *runner) thaw(ctx context.Context, fz runtime.Freezer) error {
	r.a.frozenMem.release(r.id)
	if err := fz.Thaw(ctx, r.id); err != nil {
		return fmt.Errorf("thaw container: %w", err)
	}
	return nil
}

// errNoFreezer is what a frozen container found without a freezer means.
var errNoFreezer = errors.New("the runtime cannot thaw a frozen container")
