// Package runtime declares the seam between Berth and whatever runs
// containers. The containerd subpackage implements it; drivertest holds the
// conformance suite every implementation must pass.
//
// A driver runs what it is told and reports what is there. It does not
// decide: restarts, probes and placement belong to the node agent.
package runtime

import (
	"context"
	"io"
	"time"
)

// Image is an image present on the node.
type Image struct {
	// Name is the reference as known locally, e.g. docker.io/library/nginx:1.25.
	Name string
	// Digest is the manifest (or index) digest, sha256:….
	Digest string
	Size   int64
	// Config bits the agent needs to run the image.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// Mount is a bind mount of a host directory into the container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
}

// ContainerSpec is everything needed to create one container.
type ContainerSpec struct {
	ID string
	// Image is a reference the driver can resolve locally; name@digest after
	// a revision is made.
	Image string
	// Command replaces the image's entrypoint and Args its cmd, as in
	// Kubernetes; empty means the image's own.
	Command []string
	Args    []string
	// Env is added to the image's env, KEY=VALUE.
	Env      []string
	Hostname string
	// NetNSPath is the network namespace to join; empty means a new
	// unconnected one.
	NetNSPath string
	// DNSServers and DNSSearch make the container's resolv.conf: the
	// environment's name server on its bridge, and its search domain.
	DNSServers []string
	DNSSearch  []string
	Mounts     []Mount
	// MemoryLimit in bytes; 0 means none.
	MemoryLimit int64
	// CPUMillis in thousandths of a core; 0 means none.
	CPUMillis int64
	// PidsLimit bounds the container's processes and threads together
	// (the kernel's pids controller); 0 means none.
	PidsLimit int64
	// LogPath receives the container's stdout and stderr.
	LogPath string
	Labels  map[string]string
}

// State of a container's task.
type Status string

const (
	StatusCreated Status = "created" // task created, not started
	StatusRunning Status = "running"
	StatusStopped Status = "stopped" // task exited
	StatusUnknown Status = "unknown" // container without a task
)

// ContainerState is what the driver sees of one container.
type ContainerState struct {
	ID        string
	Labels    map[string]string
	Status    Status
	Pid       uint32
	ExitCode  uint32
	ExitedAt  time.Time
	OOMKilled bool
	// Frozen: the running task's processes are stopped in place by the
	// cgroup freezer (Freezer.Freeze); Status stays running.
	Frozen bool
}

// Exit is reported once for every task exit.
type Exit struct {
	ID        string
	Code      uint32
	At        time.Time
	OOMKilled bool
}

// ImageService is the half of a driver that keeps images on the node
// (containerd CRI's image service): what the images subsystem uses.
type ImageService interface {
	// ResolveImage finds a local image; NotFound when absent.
	ResolveImage(ctx context.Context, ref string) (Image, error)
	// PullImage fetches ref from its registry and unpacks it.
	PullImage(ctx context.Context, ref string) (Image, error)
	// ImportImage reads an OCI image layout or docker-save tarball and
	// unpacks every image in it.
	ImportImage(ctx context.Context, r io.Reader) ([]Image, error)
	ListImages(ctx context.Context) ([]Image, error)
	RemoveImage(ctx context.Context, ref string) error
}

// RuntimeService is the half of a driver that runs containers (containerd
// CRI's runtime service): what the node agent uses. The image a container
// names must already be on the node.
type RuntimeService interface {
	// Create makes the container and its task, not started.
	Create(ctx context.Context, spec ContainerSpec) error
	// Start starts a created task.
	Start(ctx context.Context, id string) error
	// Stop sends SIGTERM, then SIGKILL after grace; it returns once the task
	// has exited. Stopping a stopped task is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Delete removes the task, the container and its snapshot. NotFound is
	// not returned for a missing container.
	Delete(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (ContainerState, error)
	// List returns every container this driver manages.
	List(ctx context.Context) ([]ContainerState, error)
	// Exits streams task exits until ctx ends.
	Exits(ctx context.Context) (<-chan Exit, error)
}

// Driver is both services, as one runtime (containerd) provides them.
type Driver interface {
	ImageService
	RuntimeService
}

// StatsReader is an optional ability: resource usage of a running container.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}

// Freezer is an optional ability: stop a running task's processes where
// they are, holding their memory and sockets but no CPU, and let them go
// on later. The node agent keeps a function's standby started, initialised
// and frozen, so waking it is a thaw instead of a start.
type Freezer interface {
	// Freeze returns once every process of the task is frozen.
	Freeze(ctx context.Context, id string) error
	// Thaw lets a frozen task run again; thawing a task that is not
	// frozen is not an error.
	Thaw(ctx context.Context, id string) error
}

type Stats struct {
	CPUUsageNanos uint64
	MemoryBytes   uint64
}
