// Package events records Events about objects (what `berth describe` and
// `berth get events` show) and keeps their number bounded. Recording is
// best effort: events are for people, and a failure to write one must not
// fail the work it describes.
package events

import (
	"context"
	"fmt"
	"sort"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Events are for people looking at what just happened; the store keeps
// them for EventTTL and at most MaxEventsPerEnvironment per environment.
const (
	EventTTL                = time.Hour
	MaxEventsPerEnvironment = 1000
)

// Recorder writes Events to the store.
type Recorder struct {
	Store store.Store
}

// Record stores an Event about object ("Kind/name") in env, best effort.
func (r *Recorder) Record(ctx context.Context, env, object, typ, reason, msg string) {
	if r == nil || r.Store == nil {
		return
	}
	now := time.Now().UTC()
	ev := &v1.Event{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEvent},
		Metadata: v1.ObjectMeta{Name: fmt.Sprintf("ev-%x", now.UnixNano()), Environment: env},
		Object:   object, Type: typ, Reason: reason, Message: msg, Time: now,
	}
	// A name clash within a nanosecond is harmless to drop.
	_ = store.Create(ctx, r.Store, ev)
}

// Prune deletes events past their TTL or beyond the cap, oldest first.
func Prune(ctx context.Context, s store.Store, now time.Time) error {
	evs, _, err := store.List[v1.Event](ctx, s, v1.KindEvent, "")
	if err != nil {
		return err
	}
	byEnv := map[string][]*v1.Event{}
	for _, e := range evs {
		byEnv[e.Metadata.Environment] = append(byEnv[e.Metadata.Environment], e)
	}
	for _, l := range byEnv {
		sort.Slice(l, func(a, b int) bool { return l[a].Time.Before(l[b].Time) })
		for n, e := range l {
			if now.Sub(e.Time) < EventTTL && len(l)-n <= MaxEventsPerEnvironment {
				break
			}
			if err := store.Delete(ctx, s, e); err != nil && !v1.IsNotFound(err) && !v1.IsConflict(err) {
				return err
			}
		}
	}
	return nil
}

// RunPruner prunes every period until ctx ends.
func RunPruner(ctx context.Context, s store.Store, period time.Duration, warn func(error)) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := Prune(ctx, s, now); err != nil && ctx.Err() == nil && warn != nil {
				warn(err)
			}
		}
	}
}
