package controller

import (
	"context"
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

// pruneEvents deletes events past their TTL or beyond the cap, oldest first.
func pruneEvents(ctx context.Context, s store.Store, now time.Time) error {
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
