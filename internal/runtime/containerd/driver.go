package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
)

var (
	_ runtime.Driver      = (*Driver)(nil)
	_ runtime.StatsReader = (*Driver)(nil)
)

// Config configures a Driver.
type Config struct {
	// Socket is containerd's gRPC address.
	Socket string
	// Namespace isolates Berth's containers and images from anything else
	// on the same containerd; default "berth".
	Namespace string
	// Snapshotter unpacks images and holds container root filesystems;
	// default "overlayfs".
	Snapshotter string
	// LogShim is the argv prefix of the logger the shim runs for each
	// container, e.g. {"/usr/local/bin/berth", "log-shim"}; the driver adds
	// "--path=LOGPATH". At most one argument may follow the binary:
	// containerd carries the logger's arguments as an unordered URL query.
	// Empty: the shim appends raw output to LogPath itself.
	LogShim []string
	// StateDir holds the small files the driver generates and bind-mounts
	// into containers (/etc/hosts, /etc/resolv.conf), one directory per
	// container. Default: /run/berth/containerd/NAMESPACE.
	StateDir string
	Logger   *slog.Logger
}

// Driver runs containers through containerd.
type Driver struct {
	cfg    Config
	client *client.Client
	log    *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}
	// cgroupPaths caches each container's cgroup path for the freezer.
	cgroupPaths sync.Map
}

// New connects to containerd. It fails with Unavailable when containerd
// does not answer before ctx ends or within 10 seconds.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Socket == "" {
		return nil, v1.FieldError("socket", "required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "berth"
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = "overlayfs"
	}
	if len(cfg.LogShim) > 2 {
		return nil, v1.FieldError("logShim", "at most one argument may follow the logger binary, got %q", cfg.LogShim)
	}
	if len(cfg.LogShim) > 0 && !filepath.IsAbs(cfg.LogShim[0]) {
		return nil, v1.FieldError("logShim", "logger binary must be an absolute path, got %q", cfg.LogShim[0])
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join("/run/berth/containerd", cfg.Namespace)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := client.New(cfg.Socket, client.WithDefaultNamespace(cfg.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, v1.Unavailable("containerd at %s: %v", cfg.Socket, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Version(vctx); err != nil {
		c.Close()
		return nil, v1.Unavailable("containerd at %s does not answer: %v", cfg.Socket, err)
	}
	return &Driver{cfg: cfg, client: c, log: cfg.Logger, closed: make(chan struct{})}, nil
}

// Close releases the connection; containers keep running.
// Exits streams end.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.client.Close()
}

// Namespace is the containerd namespace the driver works in.
func (d *Driver) Namespace() string { return d.cfg.Namespace }

func (d *Driver) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, d.cfg.Namespace)
}

// wrap turns containerd's error kinds into Berth's, keeping the message.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var kind *v1.Error
	switch {
	case errors.As(err, &kind):
		return fmt.Errorf("%s: %w", msg, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %v", v1.NotFound("%s", msg), err)
	case errdefs.IsAlreadyExists(err):
		return fmt.Errorf("%w: %v", v1.Conflict("%s", msg), err)
	case errdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: %v", v1.Invalid("%s", msg), err)
	case errdefs.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", v1.Unavailable("%s", msg), err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Create makes the container and its task, not started.
func (d *Driver) Create(ctx context.Context, spec runtime.ContainerSpec) (retErr error) {
	ctx = d.ctx(ctx)
	if spec.ID == "" {
		return v1.FieldError("id", "required")
	}
	if _, err := d.client.LoadContainer(ctx, spec.ID); err == nil {
		return v1.Conflict("container %s already exists", spec.ID)
	}
	img, err := d.lookupImage(ctx, spec.Image)
	if err != nil {
		return err
	}
	if err := d.ensureUnpacked(ctx, img); err != nil {
		return err
	}
	info, err := d.imageInfo(ctx, img)
	if err != nil {
		return err
	}
	ioc, err := d.taskIO(spec.LogPath)
	if err != nil {
		return err
	}

	// A snapshot of this id without its container is what a create cut
	// short leaves (a server stopped mid-way): it would refuse this one.
	d.removeSnapshot(ctx, spec.ID)
	files := d.etcFiles(spec.ID)
	container, err := d.client.NewContainer(ctx, spec.ID,
		client.WithImage(img),
		client.WithSnapshotter(d.cfg.Snapshotter),
		client.WithNewSnapshot(spec.ID, img),
		client.WithContainerLabels(spec.Labels),
		client.WithNewSpec(specOpts(img, info, spec, files)...),
	)
	if err != nil {
		return wrap(err, "create container %s", spec.ID)
	}
	// From here on the id is ours: undo everything on failure.
	defer func() {
		if retErr != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = container.Delete(dctx, client.WithSnapshotCleanup)
			_ = os.RemoveAll(d.containerStateDir(spec.ID))
		}
	}()
	// runc mounts these when the task is created, not before.
	if err := d.writeEtcFiles(spec, files); err != nil {
		return err
	}
	if _, err := container.NewTask(ctx, ioc); err != nil {
		return wrap(err, "create task %s", spec.ID)
	}
	return nil
}

func (d *Driver) taskIO(logPath string) (cio.Creator, error) {
	if logPath == "" {
		return cio.NullIO, nil
	}
	if !filepath.IsAbs(logPath) {
		return nil, v1.FieldError("logPath", "must be absolute, got %q", logPath)
	}
	switch len(d.cfg.LogShim) {
	case 0:
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return nil, fmt.Errorf("log directory: %w", err)
		}
		return cio.LogFile(logPath), nil
	case 1:
		return cio.BinaryIO(d.cfg.LogShim[0], map[string]string{"--path": logPath}), nil
	default:
		return cio.BinaryIO(d.cfg.LogShim[0], map[string]string{d.cfg.LogShim[1]: "--path=" + logPath}), nil
	}
}

// Start starts a created task.
func (d *Driver) Start(ctx context.Context, id string) error {
	ctx = d.ctx(ctx)
	task, err := d.task(ctx, id)
	if err != nil {
		return err
	}
	if err := task.Start(ctx); err != nil {
		return wrap(err, "start %s", id)
	}
	return nil
}

func (d *Driver) task(ctx context.Context, id string) (client.Task, error) {
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, wrap(err, "container %s", id)
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return nil, wrap(err, "task of %s", id)
	}
	return t, nil
}

// Stop sends SIGTERM, then SIGKILL after grace, and returns once the task
// has exited. A stopped or missing task is not an error.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx = d.ctx(ctx)
	// A frozen task takes no signal until it is thawed.
	_ = d.Thaw(ctx, id)
	task, err := d.task(ctx, id)
	if v1.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return d.stopTask(ctx, task, grace)
}

func (d *Driver) stopTask(ctx context.Context, task client.Task, grace time.Duration) error {
	// Wait before Kill so the exit cannot slip between the two.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := task.Wait(wctx)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap(err, "wait %s", task.ID())
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return wrap(err, "status %s", task.ID())
	}
	if st.Status == client.Stopped {
		return nil
	}
	sig := syscall.SIGTERM
	if st.Status == client.Created || grace <= 0 {
		// Nothing of the workload runs yet (or no grace): no one to be polite to.
		sig = syscall.SIGKILL
	}
	if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return wrap(err, "signal %s", task.ID())
	}
	if sig == syscall.SIGTERM {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		d.log.Info("grace period over; killing", "id", task.ID(), "grace", grace)
		if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return wrap(err, "kill %s", task.ID())
		}
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete removes the task, the container and its snapshot; a running task
// is killed first. A missing container is not an error.
func (d *Driver) Delete(ctx context.Context, id string) error {
	ctx = d.ctx(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		d.removeSnapshot(ctx, id)
		_ = os.RemoveAll(d.containerStateDir(id))
		return nil
	}
	if err != nil {
		return wrap(err, "container %s", id)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return wrap(err, "task of %s", id)
	default:
		_ = d.thaw(ctx, id, c)
		if err := d.stopTask(ctx, task, 0); err != nil {
			return err
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return wrap(err, "delete task %s", id)
		}
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return wrap(err, "delete container %s", id)
	}
	d.cgroupPaths.Delete(id)
	if err := os.RemoveAll(d.containerStateDir(id)); err != nil {
		d.log.Warn("remove container state", "id", id, "err", err)
	}
	return nil
}

// removeSnapshot removes the snapshot keyed id, if there is one: the
// containers' snapshots are keyed by their container's ID.
func (d *Driver) removeSnapshot(ctx context.Context, id string) {
	err := d.client.SnapshotService(d.cfg.Snapshotter).Remove(ctx, id)
	if err == nil {
		d.log.Info("removed a snapshot left without its container", "id", id)
	} else if !errdefs.IsNotFound(err) {
		d.log.Warn("remove leftover snapshot", "id", id, "err", err)
	}
}

// Inspect reports one container; NotFound when absent.
func (d *Driver) Inspect(ctx context.Context, id string) (runtime.ContainerState, error) {
	ctx = d.ctx(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return runtime.ContainerState{}, wrap(err, "container %s", id)
	}
	return d.state(ctx, c)
}

func (d *Driver) state(ctx context.Context, c client.Container) (runtime.ContainerState, error) {
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return runtime.ContainerState{}, wrap(err, "container %s", c.ID())
	}
	st := runtime.ContainerState{ID: c.ID(), Labels: info.Labels, Status: runtime.StatusUnknown}
	if st.Labels == nil {
		st.Labels = map[string]string{}
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap(err, "task of %s", c.ID())
	}
	ts, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap(err, "status of %s", c.ID())
	}
	st.Pid = task.Pid()
	switch ts.Status {
	case client.Created:
		st.Status = runtime.StatusCreated
	case client.Running, client.Paused, client.Pausing:
		st.Status = runtime.StatusRunning
		st.Frozen = ts.Status != client.Running || d.frozen(ctx, c)
	case client.Stopped:
		st.Status = runtime.StatusStopped
		st.ExitCode = ts.ExitStatus
		st.ExitedAt = ts.ExitTime
		st.OOMKilled = d.cgroupOOMKilled(ctx, c)
	}
	return st, nil
}

// List returns every container in the driver's namespace.
func (d *Driver) List(ctx context.Context) ([]runtime.ContainerState, error) {
	ctx = d.ctx(ctx)
	cs, err := d.client.Containers(ctx)
	if err != nil {
		return nil, wrap(err, "list containers")
	}
	out := make([]runtime.ContainerState, 0, len(cs))
	for _, c := range cs {
		st, err := d.state(ctx, c)
		if v1.IsNotFound(err) {
			continue // deleted while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
