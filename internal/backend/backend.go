// Package backend declares the seam between Berth's controllers and the
// place that runs instances: this machine (package local: containerd,
// runc, CNI bridges) or a Kubernetes cluster (package kubernetes:
// namespaces, deployments, pods). backendtest holds the conformance suite
// every backend must pass.
//
// The controllers decide what should run: which revision, how many
// instances, within which rollout limits, and they own revisions, statuses
// and the autoscaler's decisions. A backend makes it so and reports what
// runs. It never decides how many instances there should be.
package backend

import (
	"context"
	"io"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/logs"
)

// Ref names one Service or Function.
type Ref struct {
	Kind        string // v1.KindService or v1.KindFunction
	Environment string
	Name        string
}

func (r Ref) String() string { return r.Kind + "/" + r.Environment + "/" + r.Name }

// Workload is what a controller asks of a backend for one Service or
// Function: Replicas ready instances of Revision, reached within the
// rollout limits.
type Workload struct {
	Ref
	Labels map[string]string
	// Revision is what new instances run: the template, with its image
	// pinned to a digest.
	Revision *v1.Revision
	// Replicas is how many started instances to converge to; 0 is allowed
	// (a Function at zero).
	Replicas int
	// MaxSurge and MaxUnavailable bound a rolling update, as in a
	// Kubernetes Deployment. Both 0 means a surge of 1.
	MaxSurge, MaxUnavailable int
	// Standbys asks for that many prepared instances beyond Replicas,
	// each woken in one step when it is needed (a Function below its
	// maximum). A backend that cannot prepare instances ignores it.
	Standbys int
	// Pinned are older revisions that keep running beside Revision because
	// they take a share of the traffic or have a tag (docs/delivery.md):
	// each is scaled to its own Replicas, without a rolling update between
	// them. Instances of revisions neither current nor pinned are rolled
	// over to Revision as usual. The kubernetes backend does not run
	// pinned revisions yet: it runs Revision only.
	Pinned []PinnedRevision
}

// PinnedRevision is a revision kept running beside the current one.
type PinnedRevision struct {
	Revision *v1.Revision
	Replicas int
}

// Backend runs the instances of Services and Functions somewhere, and
// gives each Environment its place there.
type Backend interface {
	// Name is "local" or "kubernetes".
	Name() string
	// Run runs the backend's own loops (watches, the node agent) until
	// ctx ends. Instances keep running when it returns.
	Run(ctx context.Context) error
	// WaitForSync returns once the backend knows what runs (its caches are
	// filled); acting before would create what already exists.
	WaitForSync(ctx context.Context) error

	// EnsureEnvironment makes env's place (network or namespace, isolation
	// rules, quota) and returns what env's status should say. Idempotent.
	EnsureEnvironment(ctx context.Context, env *v1.Environment) (v1.EnvironmentStatus, error)
	// RemoveEnvironment frees env's place. It fails with kind Conflict
	// while instances of the environment remain: call it again later.
	RemoveEnvironment(ctx context.Context, name string) error
	// Environments lists the environments that hold a place, including
	// those whose Environment object is gone but whose place is not freed.
	Environments(ctx context.Context) ([]string, error)

	// Apply moves w's instances towards Replicas ready instances of
	// w.Revision, within the rollout limits. It is called again on every
	// change (level-triggered) and must be idempotent.
	Apply(ctx context.Context, w Workload) error
	// Remove drains and stops every instance of ref. It reports true once
	// none is left; until then it is called again.
	Remove(ctx context.Context, ref Ref) (gone bool, err error)
	// Instances reports what the backend sees of ref's instances now,
	// sorted by name. It reads a local cache: cheap enough for every sync.
	// Draining instances have phase Terminating and are never ready.
	Instances(ref Ref) []v1.InstanceStatus
	// Watch registers fn, told of every workload whose instances changed.
	// Call it before Run.
	Watch(fn func(Ref))

	// Logs writes the log lines of q's workload to w (the format of
	// logs.Read), following them while q.Follow until ctx ends.
	Logs(ctx context.Context, q logs.Query, w io.Writer) error
	// Stats reads the resource usage of ref's running instances, by
	// instance name. An instance the backend cannot measure is left out.
	Stats(ctx context.Context, ref Ref) (map[string]Stats, error)
}

// Stats is one instance's resource usage.
type Stats struct {
	// CPUUsageNanos is the CPU time used since the instance started.
	CPUUsageNanos uint64
	// MemoryBytes is the working set.
	MemoryBytes uint64
}

// EndpointID is how the gateway names an instance's endpoint, in every
// backend: environment and instance name joined by a dot, which DNS-label
// names cannot contain. Draining refers to endpoints by it.
func EndpointID(env, instance string) string { return env + "." + instance }

// Ready reports whether an instance serves traffic.
func Ready(i v1.InstanceStatus) bool {
	return i.Ready && i.Phase != v1.PhaseTerminating && i.IP != "" && i.Port != 0
}
