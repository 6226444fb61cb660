package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/network"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/telemetry/logs"
	"golang.org/x/sys/unix"
)

// Labels the agent puts on containers, so a restarted agent knows what is
// its own.
const (
	labelManaged     = "berth.dev/managed"
	labelEnvironment = "berth.dev/environment"
	labelOwner       = "berth.dev/owner"
	labelInstance    = "berth.dev/instance"
	labelRevision    = "berth.dev/revision"
)

// runner owns one instance's container for the instance's whole life, like
// a kubelet pod worker: create, start, probe, restart with backoff, drain,
// stop, clean up. It is the only writer of the instance's status.
type runner struct {
	a   *Agent
	id  string
	env string
	log *slog.Logger

	mu      sync.Mutex
	obj     *v1.Instance
	deleted bool
	notify  chan struct{}
	exits   chan runtime.Exit
	// startedAt is when the current task was started, if the store does
	// not know it yet (a standby's start is recorded with readiness).
	startedAt time.Time
	// attachBegan is when the network attach of a fresh instance began:
	// the start of its sandbox phase.
	attachBegan time.Time
	// start is where the current start spent its time so far; the first
	// readiness after it completes and records it (startPending).
	start        v1.StartPhases
	startStarted time.Time
	startPending bool
	// activated says the backend took this standby out of standby in
	// memory, ahead of its record (Agent.activateNow).
	activated bool
	// startCalled is when the current task's start was asked for: an
	// exit from before it is another task's.
	startCalled time.Time
	// frozenInitMS is how long the frozen standby's initialisation took
	// before it was frozen; thawed says the running task was woken from
	// one (its readiness needs no initial delay).
	frozenInitMS float64
	thawed       bool
}

// preparation is what is already there of an instance's task when its
// start begins.
type preparation int

const (
	prepNone    preparation = iota
	prepCreated             // the task is created, not started
	prepFrozen              // the task started, got ready and is frozen
)

// activate starts a waiting standby ahead of its record.
func (r *runner) activate() {
	r.mu.Lock()
	r.activated = true
	r.mu.Unlock()
	r.poke()
}

// standby says whether the instance is still to wait as a standby.
func (r *runner) standby() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.obj.Spec.Standby && !r.activated
}

func newRunner(a *Agent, id string, inst *v1.Instance) *runner {
	return &runner{
		a:      a,
		id:     id,
		env:    inst.Metadata.Environment,
		log:    a.log.With("instance", inst.Metadata.Name, "environment", inst.Metadata.Environment),
		obj:    inst,
		notify: make(chan struct{}, 1),
		exits:  make(chan runtime.Exit, 4),
	}
}

func (r *runner) setObject(inst *v1.Instance) {
	r.mu.Lock()
	if inst.Metadata.ResourceVersion >= r.obj.Metadata.ResourceVersion {
		r.obj = inst
	}
	r.mu.Unlock()
	r.poke()
}

func (r *runner) setDeleted() {
	r.mu.Lock()
	r.deleted = true
	r.mu.Unlock()
	r.poke()
}

func (r *runner) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *runner) exited(e runtime.Exit) {
	select {
	case r.exits <- e:
	default:
		r.log.Warn("exit event dropped", "code", e.Code)
	}
}

// stopping says whether the instance should wind down.
func (r *runner) stopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deleted || r.obj.Spec.Draining
}

func (r *runner) object() *v1.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.obj
}

// outcome is why supervise returned.
type outcome int

const (
	outShutdown outcome = iota // the server is stopping: leave the container
	outStop                    // drain and remove the instance
	outExited                  // the task exited: restart after backoff
)

func (r *runner) run(ctx context.Context) {
	inst := r.object()
	rev, tmpl, err := r.loadRevision(ctx, inst)
	if err != nil {
		r.fail(ctx, fmt.Sprintf("revision %d: %v", inst.Spec.Revision, err))
		r.waitForStop(ctx)
		if ctx.Err() == nil {
			r.terminate(ctx, nil, 0)
		}
		return
	}
	grace := 30 * time.Second
	if tmpl.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*tmpl.TerminationGracePeriodSeconds) * time.Second
	}

	var att network.Attachment
	retry := backoff.Backoff{Base: r.a.cfg.BackoffBase, Max: r.a.cfg.BackoffMax}
	r.attachBegan = time.Now()
	for {
		if r.stopping() {
			r.terminate(ctx, nil, grace)
			return
		}
		att, err = r.a.cfg.Network.Attach(ctx, r.id, r.env)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.fail(ctx, fmt.Sprintf("network: %v", err))
		if !r.sleep(ctx, retry.Next()) {
			return
		}
	}

	// A container may already exist: this is a restarted server taking
	// over, or a crash between create and start, or a standby.
	adopted, prepared := false, prepNone
	if st, err := r.a.cfg.Driver.Inspect(ctx, r.id); err == nil {
		switch {
		case st.Status == runtime.StatusRunning && st.Frozen:
			// A frozen standby, made before a restart: still one, or
			// already asked for; it needs its thaw.
			prepared = prepFrozen
			var held int64
			if sr, ok := r.a.cfg.Driver.(runtime.StatsReader); ok {
				if s, err := sr.Stats(ctx, r.id); err == nil {
					held = int64(s.MemoryBytes)
				}
			}
			r.a.frozenMem.set(r.id, "", held)
		case st.Status == runtime.StatusRunning:
			adopted = true
			r.log.Info("re-attached to running container", "pid", st.Pid)
		case st.Status == runtime.StatusCreated:
			// A standby's task, made before a restart: still a standby,
			// or already asked for (a request can come first), it only
			// needs its start. Deleting it would kill it, and its exit
			// would be taken for the next task's.
			prepared = prepCreated
		case st.Status == runtime.StatusStopped:
			r.recordExit(ctx, runtime.Exit{ID: r.id, Code: st.ExitCode, At: st.ExitedAt, OOMKilled: st.OOMKilled}, "")
			_ = r.a.cfg.Driver.Delete(ctx, r.id)
		default:
			_ = r.a.cfg.Driver.Delete(ctx, r.id)
		}
	}

	retry.Reset()
	for {
		if r.stopping() {
			r.terminate(ctx, &att, grace)
			return
		}
		started := time.Now()
		var startedAt time.Time
		if !adopted {
			var err error
			startedAt, err = r.prepareAndStart(ctx, inst, rev, tmpl, att, prepared)
			if err != nil && !errors.Is(err, errStopping) && ctx.Err() == nil {
				// Once more from nothing before it counts as a failure:
				// what a server stopped mid-create leaves behind (a task's
				// state, a half-made container) is removed by Delete, and
				// a request held for this instance should not get a 502
				// for it.
				r.log.Info("start failed; removing what is left and starting again", "err", err)
				_ = r.a.cfg.Driver.Delete(ctx, r.id)
				startedAt, err = r.prepareAndStart(ctx, inst, rev, tmpl, att, prepNone)
			}
			prepared = prepNone
			if errors.Is(err, errStopping) {
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("start failed", "err", err)
				r.fail(ctx, err.Error())
				_ = r.a.cfg.Driver.Delete(ctx, r.id)
				if !r.sleep(ctx, retry.Next()) {
					return
				}
				continue
			}
		}
		r.startedAt = startedAt
		res, exit, reason := r.supervise(ctx, tmpl, att, adopted, grace)
		adopted = false
		switch res {
		case outShutdown:
			return
		case outStop:
			r.terminate(ctx, &att, grace)
			return
		}
		r.recordExit(ctx, exit, reason)
		_ = r.a.cfg.Driver.Delete(ctx, r.id)
		if time.Since(started) > 2*r.a.cfg.BackoffMax {
			retry.Reset()
		}
		wait := retry.Next()
		r.log.Info("instance exited, restarting after backoff", "code", exit.Code, "reason", reason, "backoff", wait)
		if !r.sleep(ctx, wait) {
			return
		}
	}
}

func (r *runner) loadRevision(ctx context.Context, inst *v1.Instance) (*v1.Revision, *v1.Template, error) {
	var rev v1.Revision
	key := store.Key{Kind: v1.KindRevision, Environment: inst.Metadata.Environment, Name: v1.RevisionName(inst.Spec.Owner, inst.Spec.Revision)}
	if err := store.Get(ctx, r.a.cfg.Store, key, &rev); err != nil {
		return nil, nil, err
	}
	return &rev, &rev.Spec.Template, nil
}

// errStopping means the instance was drained while it waited in standby.
var errStopping = errors.New("stopping")

// prepareAndStart creates the container and its task (unless a standby
// one is already there), waits while the instance is a standby, then
// starts the task. It returns when the task was started.
func (r *runner) prepareAndStart(ctx context.Context, inst *v1.Instance, rev *v1.Revision, t *v1.Template, att network.Attachment, prepared preparation) (time.Time, error) {
	began := r.attachBegan
	if began.IsZero() {
		began = time.Now()
	}
	r.attachBegan = time.Time{}
	r.thawed = false
	create := func() error {
		spec, err := r.containerSpec(ctx, inst, rev, t, att)
		if err != nil {
			return err
		}
		// The revision beside the log, so `logs --revision` finds the
		// lines of instances long gone.
		if err := logs.WriteMeta(r.a.cfg.LogDir, inst.Metadata.Environment, inst.Spec.Owner, inst.Metadata.Name,
			logs.Meta{Revision: inst.Spec.Revision, OwnerKind: inst.Spec.OwnerKind}); err != nil {
			r.log.Warn("write log metadata", "err", err)
		}
		_ = r.a.cfg.Driver.Delete(ctx, r.id)
		if err := r.a.cfg.Driver.Create(ctx, spec); err != nil {
			return fmt.Errorf("create container: %w", err)
		}
		return nil
	}
	if prepared == prepNone {
		if err := create(); err != nil {
			return time.Time{}, err
		}
		prepared = prepCreated
	}
	fz, canFreeze := r.a.cfg.Driver.(runtime.Freezer)
	if prepared == prepFrozen && !canFreeze {
		return time.Time{}, errNoFreezer
	}
	if r.standby() && prepared == prepCreated && canFreeze && r.a.frozenMem.admit(r.id, revisionKey(inst)) {
		how, err := r.warmUp(ctx, fz, inst, t, att, create)
		if err != nil {
			return time.Time{}, err
		}
		switch how {
		case warmFrozen:
			prepared = prepFrozen
		case warmActivated:
			// Asked for while it initialised: it is started already,
			// and its readiness records the start.
			now := time.Now().UTC()
			r.beginStart(v1.StartPhases{FromStandby: true, BeganAt: now}, now)
			return r.startCalled, nil
		}
	}
	if r.standby() {
		msg := ""
		if prepared == prepFrozen {
			held, _ := r.a.frozenMem.heldBy(r.id)
			msg = fmt.Sprintf("initialised and frozen (%s in memory)", mib(held))
		}
		err := r.patchStatus(ctx, func(st *v1.InstanceStatus) {
			st.Phase = v1.PhaseStandby
			st.Ready = false
			st.IP = att.IP.String()
			st.Port = t.Port
			st.Message = msg
		})
		if err != nil {
			return time.Time{}, err
		}
		// Wait, prepared, until the instance is needed or drained.
		for r.standby() && !r.stopping() {
			select {
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			case <-r.notify:
			}
		}
		if r.stopping() {
			r.a.frozenMem.release(r.id)
			return time.Time{}, errStopping
		}
		// Out of standby: start (or thaw) at once; the readiness write
		// records the start, so the cold path makes one store write, not
		// two.
		now := time.Now().UTC()
		if prepared == prepFrozen {
			if err := r.thaw(ctx, fz); err != nil {
				return time.Time{}, err
			}
			r.thawed = true
			r.beginStart(v1.StartPhases{FromStandby: true, Thawed: true, BeganAt: now}, now)
			return now, nil
		}
		r.startCalled = now
		if err := r.a.cfg.Driver.Start(ctx, r.id); err != nil {
			return time.Time{}, fmt.Errorf("start container: %w", err)
		}
		r.beginStart(v1.StartPhases{FromStandby: true, BeganAt: now}, now)
		return now, nil
	}
	if prepared == prepFrozen {
		// A frozen standby asked for before a restart.
		now := time.Now().UTC()
		if err := r.thaw(ctx, fz); err != nil {
			return time.Time{}, err
		}
		r.thawed = true
		r.beginStart(v1.StartPhases{FromStandby: true, Thawed: true, BeganAt: now}, now)
		return now, nil
	}
	created := time.Now()
	r.startCalled = created
	if err := r.a.cfg.Driver.Start(ctx, r.id); err != nil {
		return time.Time{}, fmt.Errorf("start container: %w", err)
	}
	now := time.Now().UTC()
	r.beginStart(v1.StartPhases{BeganAt: began.UTC(), SandboxMS: ms(created.Sub(began))}, created)
	return now, r.patchStatus(ctx, func(st *v1.InstanceStatus) {
		st.Phase = v1.PhaseStarting
		st.Ready = false
		st.IP = att.IP.String()
		st.Port = t.Port
		st.StartedAt = now
		st.Message = ""
	})
}

func (r *runner) containerSpec(ctx context.Context, inst *v1.Instance, rev *v1.Revision, t *v1.Template, att network.Attachment) (runtime.ContainerSpec, error) {
	env := []string{
		"PORT=" + strconv.Itoa(int(t.Port)),
		"BERTH_ENVIRONMENT=" + inst.Metadata.Environment,
		"BERTH_NAME=" + inst.Spec.Owner,
		"BERTH_REVISION=" + strconv.FormatInt(inst.Spec.Revision, 10),
		"BERTH_INSTANCE=" + inst.Metadata.Name,
	}
	// Secret and config values are read (secrets decrypted) here, at
	// creation, so a restart picks up a changed value; a missing one fails
	// the start with a message naming it, and the restart loop retries.
	values, err := r.resolveValues(ctx, inst.Metadata.Environment, t)
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	if f := r.a.cfg.InstanceEnv; f != nil {
		extra, err := f(ctx, inst.Metadata.Environment)
		if err != nil {
			return runtime.ContainerSpec{}, fmt.Errorf("platform environment variables: %w", err)
		}
		for _, kv := range extra {
			name, _, _ := strings.Cut(kv, "=")
			if !slices.ContainsFunc(t.Env, func(e v1.EnvVar) bool { return e.Name == name }) {
				env = append(env, kv)
			}
		}
	}
	for _, e := range t.Env {
		val := e.Value
		if ref, ok := envValueRef(e); ok {
			val = values[ref]
		}
		env = append(env, e.Name+"="+val)
	}
	mounts, err := r.valueFiles(t, values)
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	for _, v := range t.Volumes {
		dir := filepath.Join(r.a.cfg.VolumeDir, inst.Metadata.Environment, inst.Spec.Owner, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return runtime.ContainerSpec{}, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		mounts = append(mounts, runtime.Mount{Source: dir, Destination: v.MountPath, ReadOnly: v.ReadOnly})
	}
	lim, err := t.Resources.Limits()
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	image := rev.Spec.Image
	if rev.Spec.ImageDigest != "" {
		image = v1.PinDigest(rev.Spec.Image, rev.Spec.ImageDigest)
	}
	return runtime.ContainerSpec{
		ID:          r.id,
		Image:       image,
		Command:     t.Command,
		Args:        t.Args,
		Env:         env,
		Hostname:    inst.Metadata.Name,
		NetNSPath:   att.NetNSPath,
		DNSServers:  att.DNS.Nameservers,
		DNSSearch:   att.DNS.Search,
		Mounts:      mounts,
		MemoryLimit: lim.MemoryBytes,
		CPUMillis:   lim.CPUMillis,
		PidsLimit:   lim.Pids,
		LogPath:     LogPath(r.a.cfg.LogDir, inst.Metadata.Environment, inst.Spec.Owner, inst.Metadata.Name),
		Labels: map[string]string{
			labelManaged:     "true",
			labelEnvironment: inst.Metadata.Environment,
			labelOwner:       inst.Spec.Owner,
			labelInstance:    inst.Metadata.Name,
			labelRevision:    strconv.FormatInt(inst.Spec.Revision, 10),
		},
	}, nil
}

// LogPath is where an instance's stdout and stderr are kept.
func LogPath(logDir, env, owner, instance string) string {
	return filepath.Join(logDir, env, owner, instance+".log")
}

// supervise watches a started task: probes, exits, and the instance's spec.
func (r *runner) supervise(ctx context.Context, t *v1.Template, att network.Attachment, adopted bool, grace time.Duration) (outcome, runtime.Exit, string) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr := att.IP.String()
	liveFail := make(chan string, 1)
	go r.readinessLoop(pctx, t, addr, adopted)
	if t.LivenessProbe != nil {
		go r.livenessLoop(pctx, t, addr, liveFail)
	}
	// Exit events are the fast path; this is the safety net for an event
	// lost while the events stream reconnected.
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return outShutdown, runtime.Exit{}, ""
		case <-r.notify:
			if r.stopping() {
				return outStop, runtime.Exit{}, ""
			}
		case e := <-r.exits:
			if !r.startCalled.IsZero() && !e.At.IsZero() && e.At.Before(r.startCalled) {
				// The exit of a task removed before this one started
				// (Delete kills a created task): not this task's.
				r.log.Debug("stale exit ignored", "code", e.Code, "at", e.At)
				continue
			}
			return outExited, e, ""
		case why := <-liveFail:
			cancel()
			r.log.Info("liveness probe failed, restarting", "reason", why)
			r.event(ctx, "Warning", "Unhealthy", fmt.Sprintf("Liveness probe failed: %s; restarting %s", why, r.object().Metadata.Name))
			_ = r.patchStatus(ctx, func(st *v1.InstanceStatus) { st.Ready = false })
			if err := r.a.cfg.Driver.Stop(ctx, r.id, grace); err != nil && ctx.Err() == nil {
				r.log.Warn("stop after liveness failure", "err", err)
			}
			e := r.waitExit(ctx)
			return outExited, e, "LivenessFailed"
		case <-check.C:
			st, err := r.a.cfg.Driver.Inspect(ctx, r.id)
			if err == nil && st.Status == runtime.StatusStopped {
				return outExited, runtime.Exit{ID: r.id, Code: st.ExitCode, At: st.ExitedAt, OOMKilled: st.OOMKilled}, ""
			}
		}
	}
}

// waitExit takes the exit event of a task we just stopped, falling back to
// inspecting it.
func (r *runner) waitExit(ctx context.Context) runtime.Exit {
	select {
	case e := <-r.exits:
		return e
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	st, _ := r.a.cfg.Driver.Inspect(ctx, r.id)
	return runtime.Exit{ID: r.id, Code: st.ExitCode, At: st.ExitedAt, OOMKilled: st.OOMKilled}
}

func (r *runner) recordExit(ctx context.Context, e runtime.Exit, reason string) {
	if reason == "" {
		switch {
		case e.OOMKilled:
			reason = "OOMKilled"
		case e.Code == 0:
			reason = "Completed"
		case e.Code == 137 || e.Code == 143:
			reason = "Killed"
		default:
			reason = "Error"
		}
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	name := r.object().Metadata.Name
	r.event(ctx, "Warning", "BackOff", fmt.Sprintf("Instance %s exited (%s, code %d); restarting", name, reason, e.Code))
	_ = r.patchStatus(ctx, func(st *v1.InstanceStatus) {
		st.Phase = v1.PhaseBackoff
		st.Ready = false
		st.Restarts++
		st.LastExit = &v1.ExitInfo{Code: int32(e.Code), Reason: reason, At: at.UTC()}
	})
}

// terminate drains and stops the instance, then removes it everywhere.
func (r *runner) terminate(ctx context.Context, att *network.Attachment, grace time.Duration) {
	_ = r.patchStatus(ctx, func(st *v1.InstanceStatus) {
		st.Phase = v1.PhaseTerminating
		st.Ready = false
	})
	if att != nil && r.a.cfg.Drainer != nil {
		dctx, cancel := context.WithTimeout(ctx, max(grace, time.Second))
		if err := r.a.cfg.Drainer.Drain(dctx, r.id); err != nil && ctx.Err() == nil {
			r.log.Warn("drain incomplete", "err", err)
		}
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	if err := r.a.cfg.Driver.Stop(ctx, r.id, grace); err != nil && !v1.IsNotFound(err) {
		r.log.Warn("stop", "err", err)
	}
	if err := r.a.cfg.Driver.Delete(ctx, r.id); err != nil {
		r.log.Warn("delete container", "err", err)
	}
	r.releaseValueFiles()
	// The record goes only after the network: an attachment left behind
	// keeps its address, host rules and mounted namespace, and nothing
	// would try again before the server restarts. If the server stops
	// first, the record stays and the next one terminates the instance.
	retry := backoff.Backoff{Base: r.a.cfg.BackoffBase, Max: r.a.cfg.BackoffMax}
	for {
		err := r.a.cfg.Network.Detach(ctx, r.id, r.env)
		if err == nil {
			break
		}
		r.log.Warn("detach network", "err", err)
		_ = r.patchStatus(ctx, func(st *v1.InstanceStatus) { st.Message = fmt.Sprintf("network: %v", err) })
		if !retry.Wait(ctx) {
			return
		}
	}
	inst := r.object()
	err := r.a.cfg.Store.Delete(ctx, store.KeyOf(inst), 0)
	if err != nil && !v1.IsNotFound(err) {
		r.log.Warn("delete instance record", "err", err)
	}
	r.log.Info("instance stopped and removed")
}

// fail records a problem that keeps the instance from running.
func (r *runner) fail(ctx context.Context, msg string) {
	_ = r.patchStatus(ctx, func(st *v1.InstanceStatus) {
		st.Phase = v1.PhaseFailed
		st.Ready = false
		st.Message = msg
	})
	r.event(ctx, "Warning", "Failed", fmt.Sprintf("Instance %s: %s", r.object().Metadata.Name, msg))
}

// waitForStop blocks until the instance is drained, deleted or ctx ends.
func (r *runner) waitForStop(ctx context.Context) {
	for !r.stopping() {
		select {
		case <-ctx.Done():
			return
		case <-r.notify:
		}
	}
}

// sleep waits d, returning false if ctx ended. A drain cuts it short.
func (r *runner) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-r.notify:
			if r.stopping() {
				return true
			}
		}
	}
}

// patchStatus applies fn to the stored status with compare-and-swap,
// retrying on conflicts with the controller's spec writes.
func (r *runner) patchStatus(ctx context.Context, fn func(*v1.InstanceStatus)) error {
	key := store.KeyOf(r.object())
	for attempt := 0; ; attempt++ {
		var inst v1.Instance
		if err := store.Get(ctx, r.a.cfg.Store, key, &inst); err != nil {
			if v1.IsNotFound(err) {
				return errGone
			}
			return err
		}
		before := inst.Status
		fn(&inst.Status)
		inst.Status.Name = inst.Metadata.Name
		inst.Status.Revision = inst.Spec.Revision
		if statusEqual(before, inst.Status) {
			return nil
		}
		err := store.Update(ctx, r.a.cfg.Store, &inst)
		if err == nil {
			r.setObject(&inst)
			return nil
		}
		if !v1.IsConflict(err) || attempt > 20 {
			return err
		}
	}
}

func statusEqual(a, b v1.InstanceStatus) bool {
	if (a.LastExit == nil) != (b.LastExit == nil) {
		return false
	}
	if a.LastExit != nil && *a.LastExit != *b.LastExit {
		return false
	}
	a.LastExit, b.LastExit = nil, nil
	return a == b
}

// event records an Event about the instance's owner, best effort.
func (r *runner) event(ctx context.Context, typ, reason, msg string) {
	inst := r.object()
	r.a.cfg.Events.Record(ctx, inst.Metadata.Environment, inst.Spec.OwnerKind+"/"+inst.Spec.Owner, typ, reason, msg)
}

func (r *runner) resolveValues(ctx context.Context, env string, t *v1.Template) (map[v1.ValueRef]string, error) {
	refs := t.ValueRefs()
	if len(refs) == 0 {
		return nil, nil
	}
	if r.a.cfg.Secrets == nil {
		return nil, v1.Unavailable("this node cannot read secrets or config values")
	}
	return r.a.cfg.Secrets.Resolve(ctx, env, refs)
}

func envValueRef(e v1.EnvVar) (v1.ValueRef, bool) {
	switch {
	case e.ValueFrom == nil:
		return v1.ValueRef{}, false
	case e.ValueFrom.Secret != nil:
		return v1.ValueRef{Kind: v1.KindSecret, Name: e.ValueFrom.Secret.Name, Key: e.ValueFrom.Secret.Key}, true
	case e.ValueFrom.Config != nil:
		return v1.ValueRef{Kind: v1.KindConfig, Name: e.ValueFrom.Config.Name, Key: e.ValueFrom.Config.Key}, true
	}
	return v1.ValueRef{}, false
}

// valueFilesDir is the instance's tmpfs for secret and config files.
func (r *runner) valueFilesDir() string {
	return filepath.Join(r.a.cfg.StateDir, "values", r.id)
}

// valueFiles writes each mounted Secret and Config as a directory of files
// on a per-instance tmpfs (so secret values never reach a disk) and
// returns read-only bind mounts of those directories. The files are
// written again on every container creation, with the values of now.
func (r *runner) valueFiles(t *v1.Template, values map[v1.ValueRef]string) ([]runtime.Mount, error) {
	if len(t.SecretFiles) == 0 && len(t.ConfigFiles) == 0 {
		return nil, nil
	}
	dir := r.valueFilesDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secret files: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, fmt.Errorf("secret files: %w", err)
	}
	if fs.Type != unix.TMPFS_MAGIC {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=4m"); err != nil {
			return nil, fmt.Errorf("secret files: mount a tmpfs at %s: %w", dir, err)
		}
	}
	var mounts []runtime.Mount
	write := func(kind, name, mountPath string) error {
		sub := filepath.Join(dir, strings.ToLower(kind)+"-"+name)
		if err := os.RemoveAll(sub); err != nil {
			return err
		}
		if err := os.Mkdir(sub, 0o755); err != nil {
			return err
		}
		for ref, val := range values {
			if ref.Kind == kind && ref.Name == name {
				// Keys are plain file names (api/v1 validates them).
				if err := os.WriteFile(filepath.Join(sub, ref.Key), []byte(val), 0o444); err != nil {
					return err
				}
			}
		}
		mounts = append(mounts, runtime.Mount{Source: sub, Destination: mountPath, ReadOnly: true})
		return nil
	}
	for _, f := range t.SecretFiles {
		if err := write(v1.KindSecret, f.Secret, f.MountPath); err != nil {
			return nil, fmt.Errorf("secret %q files: %w", f.Secret, err)
		}
	}
	for _, f := range t.ConfigFiles {
		if err := write(v1.KindConfig, f.Config, f.MountPath); err != nil {
			return nil, fmt.Errorf("config %q files: %w", f.Config, err)
		}
	}
	return mounts, nil
}

// releaseValueFiles unmounts and removes the instance's tmpfs, if any.
func (r *runner) releaseValueFiles() {
	dir := r.valueFilesDir()
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		r.log.Warn("unmount secret files", "err", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		r.log.Warn("remove secret files", "err", err)
	}
}

// beginStart records a task's start that began (with its sandbox) as p
// says and whose task start began at startAt; the first readiness after
// it completes the record.
func (r *runner) beginStart(p v1.StartPhases, startAt time.Time) {
	now := time.Now()
	p.StartMS = ms(now.Sub(startAt))
	r.mu.Lock()
	r.start, r.startStarted, r.startPending = p, now, true
	r.mu.Unlock()
}

// finishStart completes the pending start record at the first readiness,
// nil when there is none.
func (r *runner) finishStart(readyAt time.Time) *v1.StartPhases {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.startPending {
		return nil
	}
	r.startPending = false
	p := r.start
	p.InitMS = ms(readyAt.Sub(r.startStarted))
	p.ReadyAt = readyAt.UTC()
	return &p
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
