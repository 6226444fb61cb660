package controller

import (
	"context"
	"log/slog"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/store"
)

// Environments is the cache of Environment objects.
type Environments = informer.Informer[v1.Environment, *v1.Environment]

// EnvironmentBackend is what the environments controller asks of the
// backend: each environment's place (a bridge and subnet on one machine, a
// namespace with its policies on a cluster).
type EnvironmentBackend interface {
	EnsureEnvironment(ctx context.Context, env *v1.Environment) (v1.EnvironmentStatus, error)
	RemoveEnvironment(ctx context.Context, name string) error
	Environments(ctx context.Context) ([]string, error)
	Watch(fn func(backend.Ref))
}

// AccessPolicy is told which environments may call into which. The gateway
// implements it.
type AccessPolicy interface {
	SetAllowFrom(env string, from []string)
	ForgetEnvironment(env string)
}

// EnvironmentConfig configures an Environments controller.
type EnvironmentConfig struct {
	Store        store.Store
	Environments *Environments
	Backend      EnvironmentBackend
	Policy       AccessPolicy
	Logger       *slog.Logger
	// Resync is how often the backend's environments are checked for ones
	// left by deleted Environment objects (default 30s).
	Resync time.Duration
}

// EnvironmentController gives every Environment its place at once (not at
// its first instance), its allowFrom in the gateway, and the result in its
// status. When an Environment is deleted it frees the place once no
// instance of it is left.
type EnvironmentController struct {
	cfg EnvironmentConfig
	log *slog.Logger
	q   *queue
}

// NewEnvironments builds the controller; Run starts it.
func NewEnvironments(cfg EnvironmentConfig) *EnvironmentController {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	c := &EnvironmentController{cfg: cfg, log: cfg.Logger, q: newQueue()}
	cfg.Environments.AddHandler(func(k store.Key, _, _ *v1.Environment) { c.q.Add(k.Name) })
	// An environment being deleted waits for its last instance to go.
	cfg.Backend.Watch(func(ref backend.Ref) {
		if _, ok := cfg.Environments.Peek(store.Key{Kind: v1.KindEnvironment, Name: ref.Environment}); !ok {
			c.q.Add(ref.Environment)
		}
	})
	return c
}

// Run syncs environments until ctx ends.
func (c *EnvironmentController) Run(ctx context.Context) error {
	if err := c.cfg.Environments.WaitForSync(ctx); err != nil {
		return nil
	}
	go c.sweep(ctx)
	runWorkers(ctx, c.q, 2, c.sync, func(env string, err error) {
		logSyncError(c.log, "environment", env, err)
	})
	return nil
}

// sweep queues, at start and every Resync, the environments the backend
// holds, so that one deleted while the server was down is freed.
func (c *EnvironmentController) sweep(ctx context.Context) {
	t := time.NewTicker(c.cfg.Resync)
	defer t.Stop()
	for {
		if envs, err := c.cfg.Backend.Environments(ctx); err == nil {
			for _, e := range envs {
				c.q.Add(e)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *EnvironmentController) sync(ctx context.Context, name string) error {
	env, err := c.cfg.Environments.Get(store.Key{Kind: v1.KindEnvironment, Name: name})
	if v1.IsNotFound(err) {
		return c.remove(ctx, name)
	}
	if err != nil {
		return err
	}
	// The policy before the backend starts serving the environment: its
	// listeners must never serve with a stale one.
	c.cfg.Policy.SetAllowFrom(name, env.Spec.AllowFrom)
	want, ensureErr := c.cfg.Backend.EnsureEnvironment(ctx, env)
	// The status is written even when serving failed (a taken port, say):
	// the place exists, and the listener is retried with backoff.
	if want != (v1.EnvironmentStatus{}) && env.Status != want {
		env.Status = want
		if err := store.Update(ctx, c.cfg.Store, env); err != nil {
			return err
		}
		c.log.Info("environment ready", "environment", name, "subnet", want.Subnet, "bridge", want.Bridge, "gateway", want.Gateway, "namespace", want.Namespace)
	}
	return ensureErr
}

// remove stops letting anyone into a deleted environment and frees its
// place. While instances are still there (being drained) the backend
// refuses, and the key comes back when an instance goes, or after a delay.
func (c *EnvironmentController) remove(ctx context.Context, name string) error {
	c.cfg.Policy.ForgetEnvironment(name)
	if err := c.cfg.Backend.RemoveEnvironment(ctx, name); err != nil {
		if v1.IsConflict(err) {
			c.log.Debug("environment kept until its instances are gone", "environment", name, "reason", err)
			c.q.AddAfter(name, 2*time.Second)
			return nil
		}
		return err
	}
	c.log.Info("environment removed", "environment", name)
	return nil
}
