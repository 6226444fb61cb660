package controller

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// EnvironmentNetwork is the host side of environments: a bridge and subnet
// each, with their isolation rules. The CNI manager implements it.
type EnvironmentNetwork interface {
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

// AccessPolicy is told which environments may call into which. The gateway
// implements it.
type AccessPolicy interface {
	SetAllowFrom(env string, from []string)
	ForgetEnvironment(env string)
}

// EnvironmentConfig configures an Environments controller.
type EnvironmentConfig struct {
	Store     store.Store
	Network   EnvironmentNetwork
	Listeners []EnvironmentListener
	Policy    AccessPolicy
	Logger    *slog.Logger
}

// Environments gives every Environment its network at once (not at its
// first instance): bridge and subnet, the gateway and DNS listening on the
// bridge address, its allowFrom in the gateway, and the result in its
// status. When an Environment is deleted it stops serving it and frees the
// network once no instance is attached any more.
type Environments struct {
	cfg EnvironmentConfig
	log *slog.Logger
	q   *queue
}

// NewEnvironments builds the controller; Run starts it.
func NewEnvironments(cfg EnvironmentConfig) *Environments {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Environments{cfg: cfg, log: cfg.Logger, q: newQueue()}
}

// Run syncs environments until ctx ends.
func (c *Environments) Run(ctx context.Context) error {
	go c.feed(ctx)
	runWorkers(ctx, c.q, 2, c.sync, func(env string, err error) {
		c.log.Warn("environment sync failed", "environment", env, "err", err)
	})
	return nil
}

// feed queues every environment, and every network left by a deleted one,
// at start and every 30 seconds; then each Environment change as it
// happens, and an environment whose instance went away (its network may be
// waiting for its last instance to be freed).
func (c *Environments) feed(ctx context.Context) {
	resync := time.NewTicker(30 * time.Second)
	defer resync.Stop()
	for ctx.Err() == nil {
		recs, rev, err := c.cfg.Store.List(ctx, v1.KindEnvironment, "")
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		for _, r := range recs {
			c.q.Add(r.Key.Name)
		}
		for _, env := range c.cfg.Network.Environments() {
			c.q.Add(env)
		}
		wctx, cancel := context.WithCancel(ctx)
		events, err := c.cfg.Store.Watch(wctx, "", rev)
		if err != nil {
			cancel()
			sleepCtx(ctx, time.Second)
			continue
		}
	stream:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					break stream
				}
				switch k := ev.Record.Key; {
				case k.Kind == v1.KindEnvironment:
					c.q.Add(k.Name)
				case k.Kind == v1.KindInstance && ev.Type == store.EventDelete:
					c.q.Add(k.Environment)
				}
			case <-resync.C:
				break stream
			}
		}
		cancel()
	}
}

func (c *Environments) sync(ctx context.Context, name string) error {
	var env v1.Environment
	err := store.Get(ctx, c.cfg.Store, store.Key{Kind: v1.KindEnvironment, Name: name}, &env)
	if v1.KindOf(err) == v1.ErrNotFound {
		return c.remove(ctx, name)
	}
	if err != nil {
		return err
	}
	subnet, gw, bridge, err := c.cfg.Network.EnsureEnvironment(ctx, name)
	if err != nil {
		return err
	}
	// The policy before the listeners: they must never serve with a stale
	// one.
	c.cfg.Policy.SetAllowFrom(name, env.Spec.AllowFrom)
	if want := (v1.EnvironmentStatus{Subnet: subnet.String(), Bridge: bridge, Gateway: gw.String()}); env.Status != want {
		env.Status = want
		if err := store.Update(ctx, c.cfg.Store, &env); err != nil {
			return err
		}
		c.log.Info("environment network ready", "environment", name, "subnet", want.Subnet, "bridge", bridge, "gateway", gw.String())
	}
	// Last, so that a taken port (say, another web server on *:80) leaves
	// the status written and is retried with backoff, logged each time.
	for _, l := range c.cfg.Listeners {
		if err := l.Listen(ctx, name, gw); err != nil {
			return err
		}
	}
	return nil
}

// remove stops serving a deleted environment and frees its network. While
// instances are still attached (being drained) RemoveEnvironment refuses,
// and the key comes back: when an instance is deleted, or after a backoff.
func (c *Environments) remove(ctx context.Context, name string) error {
	c.cfg.Policy.ForgetEnvironment(name)
	for _, l := range c.cfg.Listeners {
		l.Unlisten(name)
	}
	if !slices.Contains(c.cfg.Network.Environments(), name) {
		return nil
	}
	if err := c.cfg.Network.RemoveEnvironment(ctx, name); err != nil {
		if v1.KindOf(err) == v1.ErrConflict {
			c.log.Debug("environment network kept until its instances are gone", "environment", name, "reason", err)
			c.q.AddAfter(name, 2*time.Second)
			return nil
		}
		return err
	}
	c.log.Info("environment network removed", "environment", name)
	return nil
}
