package local

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/network"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/telemetry/logs"
)

// EnvironmentNetwork is the host side of environments: a bridge and subnet
// each, with their isolation rules. The CNI manager implements it.
type EnvironmentNetwork interface {
	network.Manager
	// EnsureEnvironment allocates (once, persistently) and sets up env's
	// network; idempotent.
	EnsureEnvironment(ctx context.Context, env string) (subnet *net.IPNet, gateway net.IP, bridge string, err error)
	// RemoveEnvironment frees env's network; Conflict while instances are
	// still attached to it.
	RemoveEnvironment(ctx context.Context, env string) error
	// Environments lists those that hold a network.
	Environments() []string
}

// EnvironmentListener serves something on each environment's bridge
// address: the gateway's environment listeners, the environment's DNS.
type EnvironmentListener interface {
	// Listen is idempotent.
	Listen(ctx context.Context, env string, ip net.IP) error
	Unlisten(env string)
}

// Drainer takes an endpoint out of rotation and waits for its in-flight
// requests to finish. The gateway implements it.
type Drainer interface {
	Drain(ctx context.Context, endpointID string) error
}

// EventRecorder records an Event about an object ("Kind/name").
type EventRecorder interface {
	Record(ctx context.Context, env, object, typ, reason, msg string)
}

// Secrets resolves the secret and config values a template reads. The
// composition root passes one (internal/secrets.Values); its answer holds
// one entry per key, file-mount refs (empty Key) expanded to every key.
type Secrets interface {
	Resolve(ctx context.Context, env string, refs []v1.ValueRef) (map[v1.ValueRef]string, error)
}

// Config is what the local backend needs from the composition root.
type Config struct {
	Store store.Store
	// Driver runs the containers; if it is also a runtime.StatsReader,
	// Stats reads their usage.
	Driver    runtime.RuntimeService
	Network   EnvironmentNetwork
	Listeners []EnvironmentListener
	Drainer   Drainer
	Events    EventRecorder
	// Secrets reads the secret and config values templates reference;
	// nil fails instances that reference any.
	Secrets Secrets
	// InstanceEnv, when set, gives the platform's variables every
	// instance of an environment gets (its object and key-value stores'
	// endpoints and key pair), NAME=VALUE; a template's own env wins.
	InstanceEnv func(ctx context.Context, env string) ([]string, error)
	// LogDir and VolumeDir are roots under the data dir.
	LogDir    string
	VolumeDir string
	// StateDir holds per-instance files the agent generates (hosts,
	// resolv.conf) that are bind-mounted into containers.
	StateDir string
	Logger   *slog.Logger
	// Backoff bounds for restarts after an exit; zero means 500ms and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Resync is the instance cache's re-list period (default 30s).
	Resync time.Duration
	// StandbyMemory is how much memory frozen standbys (started,
	// initialised, frozen: woken by a thaw) may hold on this machine
	// together; 0 keeps every standby created but not started. It needs a
	// Driver that is a runtime.Freezer.
	StandbyMemory int64
}

// Backend runs workloads on this machine. Its state is the Instance
// records in the store: Apply writes them, the agent runs them and writes
// their status, and Instances reads them back from one informer.
type Backend struct {
	cfg       Config
	log       *slog.Logger
	instances *informer.Informer[v1.Instance, *v1.Instance]
	agent     *Agent

	mu       sync.Mutex
	watchers []func(backend.Ref)
	// fresh holds statuses a runner reported ready before its store write
	// is in the cache, by container ID: the gateway routes to a woken
	// instance without waiting for a disk sync (readyNow).
	fresh map[string]v1.InstanceStatus
	// lastWrite is the store revision of the newest instance write made
	// by Apply or Remove: they wait for the cache to reach it.
	lastWrite uint64
}

var _ backend.Backend = (*Backend)(nil)

// ownerIndex indexes instances by the workload that owns them.
const ownerIndex = "owner"

func ownerKey(kind, env, name string) string { return kind + "/" + env + "/" + name }

// New builds the local backend; Run starts it.
func New(cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 500 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, fresh: map[string]v1.InstanceStatus{}}
	b.instances = informer.New[v1.Instance](informer.Config{
		Store: cfg.Store, Kind: v1.KindInstance, Resync: cfg.Resync, Logger: cfg.Logger,
	})
	b.instances.AddIndex(ownerIndex, func(i *v1.Instance) []string {
		return []string{ownerKey(i.Spec.OwnerKind, i.Metadata.Environment, i.Spec.Owner)}
	})
	b.agent = newAgent(cfg, b.instances)
	b.agent.readyNow = b.readyNow
	b.instances.AddHandler(func(_ store.Key, old, cur *v1.Instance) {
		i := cur
		if i == nil {
			i = old
		}
		id := ContainerID(i.Metadata.Environment, i.Metadata.Name)
		b.mu.Lock()
		if f, ok := b.fresh[id]; ok && (cur == nil || cur.Spec.Draining || (cur.Status.Ready && !cur.Spec.Standby && !cur.Status.StartedAt.Before(f.StartedAt))) {
			// The store caught up (or the instance is going): the cache
			// speaks for it again.
			delete(b.fresh, id)
		}
		ws := b.watchers
		b.mu.Unlock()
		b.tell(ws, i)
	})
	return b
}

func (b *Backend) tell(ws []func(backend.Ref), i *v1.Instance) {
	ref := backend.Ref{Kind: i.Spec.OwnerKind, Environment: i.Metadata.Environment, Name: i.Spec.Owner}
	for _, w := range ws {
		w(ref)
	}
}

// readyNow is the agent's word that inst's readiness changed to st, said
// before the status is written: a ready status is reported by Instances
// at once, and the watchers told, so a held request goes to the instance
// a disk sync sooner. A status that is not ready withdraws the word.
func (b *Backend) readyNow(inst *v1.Instance, st v1.InstanceStatus) {
	id := ContainerID(inst.Metadata.Environment, inst.Metadata.Name)
	b.mu.Lock()
	_, had := b.fresh[id]
	if st.Ready {
		b.fresh[id] = st
	} else {
		delete(b.fresh, id)
	}
	ws := b.watchers
	b.mu.Unlock()
	if st.Ready || had {
		b.tell(ws, inst)
	}
}

type noEvents struct{}

func (noEvents) Record(context.Context, string, string, string, string, string) {}

// Name is "local".
func (b *Backend) Name() string { return "local" }

// Run starts the agent, then the instance cache, and blocks until ctx
// ends. Containers keep running when it returns: stopping the server must
// not stop the workloads.
func (b *Backend) Run(ctx context.Context) error {
	if err := b.agent.start(ctx); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.instances.Run(ctx)
	}()
	if err := b.instances.WaitForSync(ctx); err == nil {
		b.agent.collectOrphans(ctx)
	}
	<-ctx.Done()
	<-done
	b.agent.wait()
	return nil
}

// WaitForSync returns once the instances the store holds are known.
func (b *Backend) WaitForSync(ctx context.Context) error { return b.instances.WaitForSync(ctx) }

// Watch registers fn, told of every workload whose instances changed.
func (b *Backend) Watch(fn func(backend.Ref)) {
	b.mu.Lock()
	b.watchers = append(b.watchers, fn)
	b.mu.Unlock()
}

// instancesOf returns ref's Instance records from the cache, shared.
func (b *Backend) instancesOf(ref backend.Ref) []*v1.Instance {
	return b.instances.ByIndex(ownerIndex, ownerKey(ref.Kind, ref.Environment, ref.Name))
}

// Instances reports ref's instances, sorted by name.
func (b *Backend) Instances(ref backend.Ref) []v1.InstanceStatus {
	insts := b.instancesOf(ref)
	out := make([]v1.InstanceStatus, 0, len(insts))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, i := range insts {
		s := i.Status
		f, fresh := b.fresh[ContainerID(i.Metadata.Environment, i.Metadata.Name)]
		if fresh {
			// Ready before its record says so (readyNow); a standby
			// activated in memory (activate) reads as started.
			s = f
		}
		s.Name, s.Revision = i.Metadata.Name, i.Spec.Revision
		if i.Spec.Draining {
			s.Phase, s.Ready = v1.PhaseTerminating, false
		}
		if i.Spec.Standby && !fresh {
			s.Ready = false
			// Pending while it is being prepared; Standby once it is
			// (the runner says so).
			if s.Phase != v1.PhaseFailed && s.Phase != v1.PhasePending && s.Phase != "" {
				s.Phase = v1.PhaseStandby
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(a, c int) bool { return out[a].Name < out[c].Name })
	return out
}

// EnsureEnvironment gives env its bridge and subnet, then serves the
// gateway and DNS on the bridge address. The status is returned even when
// a listener fails (a taken port), so it can be recorded while the
// listener is retried.
func (b *Backend) EnsureEnvironment(ctx context.Context, env *v1.Environment) (v1.EnvironmentStatus, error) {
	name := env.Metadata.Name
	subnet, gw, bridge, err := b.cfg.Network.EnsureEnvironment(ctx, name)
	if err != nil {
		return v1.EnvironmentStatus{}, err
	}
	st := v1.EnvironmentStatus{Subnet: subnet.String(), Bridge: bridge, Gateway: gw.String()}
	for _, l := range b.cfg.Listeners {
		if err := l.Listen(ctx, name, gw); err != nil {
			return st, err
		}
	}
	return st, nil
}

// RemoveEnvironment stops serving env and frees its network; Conflict
// while instances of it remain.
func (b *Backend) RemoveEnvironment(ctx context.Context, name string) error {
	if left := b.instances.List(name); len(left) > 0 {
		return v1.Conflict("environment %q still has %d instances", name, len(left))
	}
	for _, l := range b.cfg.Listeners {
		l.Unlisten(name)
	}
	for _, e := range b.cfg.Network.Environments() {
		if e == name {
			return b.cfg.Network.RemoveEnvironment(ctx, name)
		}
	}
	return nil
}

// Environments lists the environments that hold a network.
func (b *Backend) Environments(context.Context) ([]string, error) {
	return b.cfg.Network.Environments(), nil
}

// Logs reads the log files the log shims write under LogDir.
func (b *Backend) Logs(ctx context.Context, q logs.Query, w io.Writer) error {
	if q.Revision > 0 {
		// Live instances are known by their records; gone ones by the
		// sidecar their logs keep.
		q.Revisions = map[string]int64{}
		for _, kind := range []string{v1.KindService, v1.KindFunction} {
			for _, i := range b.instancesOf(backend.Ref{Kind: kind, Environment: q.Environment, Name: q.Owner}) {
				q.Revisions[i.Metadata.Name] = i.Spec.Revision
			}
		}
	}
	return logs.Read(ctx, b.cfg.LogDir, q, w)
}

// Stats reads each running container's usage from the runtime.
func (b *Backend) Stats(ctx context.Context, ref backend.Ref) (map[string]backend.Stats, error) {
	sr, ok := b.cfg.Driver.(runtime.StatsReader)
	if !ok {
		return nil, nil
	}
	out := map[string]backend.Stats{}
	for _, i := range b.instancesOf(ref) {
		if i.Spec.Standby || i.Status.StartedAt.IsZero() {
			continue
		}
		s, err := sr.Stats(ctx, ContainerID(i.Metadata.Environment, i.Metadata.Name))
		if err != nil {
			continue // gone, or not started: left out
		}
		out[i.Metadata.Name] = backend.Stats{CPUUsageNanos: s.CPUUsageNanos, MemoryBytes: s.MemoryBytes}
	}
	return out, nil
}

func (b *Backend) event(ctx context.Context, ref backend.Ref, typ, reason, msg string) {
	b.cfg.Events.Record(ctx, ref.Environment, ref.Kind+"/"+ref.Name, typ, reason, msg)
}

// ContainerID is the containerd ID (and network attachment ID) of an
// instance: the gateway's endpoint ID, so the agent can drain it by name.
func ContainerID(env, name string) string { return backend.EndpointID(env, name) }
