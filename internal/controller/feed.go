package controller

import (
	"context"
	"encoding/json"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// feed keeps q supplied with the "env/name" keys of the workloads of kind
// touched by any change of such a workload or of one of its instances:
// everything once at start and after every re-list, every 30 seconds (a
// lost event costs a delay, never convergence), and each change as it
// happens.
func feed(ctx context.Context, s store.Store, kind string, q *queue) {
	resync := time.NewTicker(30 * time.Second)
	defer resync.Stop()
	for ctx.Err() == nil {
		rev, err := enqueueAll(ctx, s, kind, q)
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		events, err := s.Watch(wctx, "", rev)
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
				k := ev.Record.Key
				switch k.Kind {
				case kind:
					if ev.Type == store.EventPut && statusOnly(ev.Record.Value) {
						continue // our own status write: nothing to do
					}
					q.Add(k.Environment + "/" + k.Name)
				case v1.KindInstance:
					var inst v1.Instance
					if store.Decode(ev.Record, &inst) == nil && inst.Spec.OwnerKind == kind {
						q.Add(k.Environment + "/" + inst.Spec.Owner)
					}
				}
			case <-resync.C:
				break stream
			}
		}
		cancel()
	}
}

// enqueueAll adds every workload of kind, and the owners of its kind's
// instances (an instance whose workload is gone still needs draining).
func enqueueAll(ctx context.Context, s store.Store, kind string, q *queue) (uint64, error) {
	recs, rev, err := s.List(ctx, kind, "")
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		q.Add(r.Key.Environment + "/" + r.Key.Name)
	}
	insts, _, err := store.List[v1.Instance](ctx, s, v1.KindInstance, "")
	if err != nil {
		return 0, err
	}
	for _, i := range insts {
		if i.Spec.OwnerKind == kind {
			q.Add(i.Metadata.Environment + "/" + i.Spec.Owner)
		}
	}
	return rev, nil
}

// statusOnly reports whether a stored workload has been synced at its
// generation, i.e. the write was the controller's own status update. Syncs
// are driven by spec changes and instance changes, not by status.
func statusOnly(raw []byte) bool {
	var o struct {
		Metadata struct {
			Generation int64 `json:"generation"`
		} `json:"metadata"`
		Status struct {
			ObservedGeneration int64 `json:"observedGeneration"`
		} `json:"status"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return false
	}
	return o.Metadata.Generation != 0 && o.Metadata.Generation == o.Status.ObservedGeneration
}
