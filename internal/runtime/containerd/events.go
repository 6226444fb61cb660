package containerd

import (
	"context"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/typeurl/v2"

	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/runtime"
)

// Exits streams one Exit per exit of a container's init process until ctx
// ends. When containerd goes away (restart by the supervisor) it
// resubscribes; exits during the gap are lost, so callers reconcile with
// List after an Unavailable spell, as they do after their own restart.
func (d *Driver) Exits(ctx context.Context) (<-chan runtime.Exit, error) {
	ctx = d.ctx(ctx)
	out := make(chan runtime.Exit, 64)
	go d.watchExits(ctx, out)
	return out, nil
}

func (d *Driver) watchExits(ctx context.Context, out chan<- runtime.Exit) {
	defer close(out)
	// OOM events seen for containers whose exit has not come yet.
	oom := map[string]bool{}
	filters := []string{
		`topic=="/tasks/exit",namespace==` + quote(d.cfg.Namespace),
		`topic=="/tasks/oom",namespace==` + quote(d.cfg.Namespace),
	}
	retry := backoff.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		var broke error
		sctx, cancel := context.WithCancel(ctx)
		envelopes, errs := d.client.Subscribe(sctx, filters...)
	recv:
		for {
			select {
			case <-ctx.Done():
				cancel()
				return
			case <-d.closed:
				cancel()
				return
			case broke = <-errs:
				break recv
			case env := <-envelopes:
				retry.Reset()
				if env == nil || env.Event == nil {
					continue
				}
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					d.log.Warn("undecodable event", "topic", env.Topic, "err", err)
					continue
				}
				switch e := ev.(type) {
				case *apievents.TaskOOM:
					oom[e.ContainerID] = true
				case *apievents.TaskExit:
					// Exec'd processes have their own ids; only the
					// init process's exit ends the container.
					if e.ID != e.ContainerID {
						continue
					}
					exit := runtime.Exit{
						ID:        e.ContainerID,
						Code:      e.ExitStatus,
						At:        protobuf.FromTimestamp(e.ExitedAt),
						OOMKilled: oom[e.ContainerID],
					}
					delete(oom, e.ContainerID)
					if !exit.OOMKilled {
						if c, err := d.client.LoadContainer(ctx, e.ContainerID); err == nil {
							exit.OOMKilled = d.cgroupOOMKilled(ctx, c)
						}
					}
					select {
					case out <- exit:
					case <-ctx.Done():
						cancel()
						return
					}
				}
			}
		}
		cancel()
		delay := retry.Next()
		if ctx.Err() == nil && !d.isClosed() {
			d.log.Warn("event stream broke; resubscribing", "err", broke, "backoff", delay)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.closed:
			return
		case <-time.After(delay):
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

func (d *Driver) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}
