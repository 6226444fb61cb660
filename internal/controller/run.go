package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// syncer is anything whose first fill a controller waits for: an informer
// or a backend's cache.
type syncer interface {
	WaitForSync(ctx context.Context) error
}

// waitForSync blocks until every cache has its first list: a controller
// that acted on an empty cache would create what already exists.
func waitForSync(ctx context.Context, caches ...syncer) error {
	for _, c := range caches {
		if err := c.WaitForSync(ctx); err != nil {
			return err
		}
	}
	return nil
}

// synced reports whether a stored workload has been synced at its
// generation, i.e. its last write was the controller's own status update.
// Syncs are driven by spec changes and instance changes, not by status.
func synced(md v1.ObjectMeta, observed int64) bool {
	return md.Generation != 0 && md.Generation == observed
}

// logSyncError logs a failed sync; a conflict (a stale cache, a
// concurrent write) is expected and retried, so it is not a warning.
func logSyncError(log *slog.Logger, what, key string, err error) {
	if v1.IsConflict(err) {
		log.Debug("sync conflict; will retry", what, key, "err", err)
		return
	}
	log.Warn("sync failed; will retry", what, key, "err", err)
}

type noEvents struct{}

func (noEvents) Record(context.Context, string, string, string, string, string) {}

func putConditionAt(conds []v1.Condition, typ string, status bool, reason, msg string, now time.Time) []v1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			if conds[i].Status != status {
				conds[i].LastTransitionTime = now.UTC().Truncate(time.Second)
			}
			conds[i].Status, conds[i].Reason, conds[i].Message = status, reason, msg
			return conds
		}
	}
	return append(conds, v1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastTransitionTime: now.UTC().Truncate(time.Second)})
}

// jsonEqual compares two statuses as they would be stored.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
