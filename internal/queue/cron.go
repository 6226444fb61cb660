package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"
)

// Cron fires each tick once, not once per process: the last fired tick of
// every (environment, function, schedule, data) is kept in a KV bucket and
// moved forward with compare-and-set, and the tick's invocation has an id
// derived from the tick, so neither a restart nor a retry fires a tick twice.
//
// The rules a user can rely on:
//   - A new cron entry starts counting when SetFunctions first names it: it
//     fires at its next tick, never for ticks before it existed.
//   - Ticks missed while the process was down (or the function removed)
//     are not replayed in a burst: at most one fires, the most recent one,
//     and only if it is at most one interval old (for a 5-field schedule,
//     the most recent tick is by definition less than one interval before
//     the next; for "@every D" it is the latest multiple of D after the
//     last fired tick).
//   - "@every D" counts D from the last fired tick (from when the entry was
//     created, at first), in whole seconds; 5-field schedules are in UTC.
//   - An invalid schedule is rejected by SetFunctions: it returns (and logs)
//     an Invalid error naming the function and schedule, skips that entry
//     and configures the rest.

type cronEntry struct {
	env, fn    string
	spec, data string
	sched      cron.Schedule
	key        string
}

// cronKey names an entry in the bucket. Schedules hold spaces and
// asterisks, which keys cannot, so the schedule and data are hashed; the
// data is part of it so that two triggers with one schedule both fire.
func cronKey(env, fn, spec, data string) string {
	h := sha256.Sum256([]byte(spec + "\x00" + data))
	return env + "." + fn + "." + hex.EncodeToString(h[:8])
}

func (q *Queue) wakeCron() {
	select {
	case q.cronWake <- struct{}{}:
	default:
	}
}

// cronLoop checks every entry, then sleeps until the earliest next tick (at
// most a minute, so that a clock that jumps is noticed) or until
// SetFunctions changes the entries.
func (q *Queue) cronLoop() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		entries := q.crons
		q.mu.Unlock()
		now := q.now().UTC()
		wait := time.Minute
		for _, e := range entries {
			due := q.cronCheck(e, now)
			if d := due.Sub(now); !due.IsZero() && d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-q.ctx.Done():
			timer.Stop()
			return
		case <-q.cronWake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// cronStart records base as e's last tick unless e has one already.
func (q *Queue) cronStart(ctx context.Context, e cronEntry, base time.Time) error {
	_, err := q.cronKV.Create(ctx, e.key, []byte(base.Format(time.RFC3339Nano)))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return v1.Unavailable("queue: cron %q of %s/%s: record start: %v", e.spec, e.env, e.fn, err)
	}
	return nil
}

// cronCheck fires e's due tick, if any, and returns when e is next due.
func (q *Queue) cronCheck(e cronEntry, now time.Time) time.Time {
	ctx, cancel := context.WithTimeout(q.ctx, bookkeeping)
	defer cancel()
	log := q.log.With("environment", e.env, "function", e.fn, "schedule", e.spec)
	retry := now.Add(5 * time.Second)

	entry, err := q.cronKV.Get(ctx, e.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// SetFunctions could not record the start: start now.
		base := now.Truncate(time.Second)
		if err := q.cronStart(ctx, e, base); err != nil {
			log.Warn("cron: record start", "err", err)
			return retry
		}
		return nextDue(e.sched, base, now)
	}
	if err != nil {
		if q.ctx.Err() == nil {
			log.Warn("cron: read last tick", "err", err)
		}
		return retry
	}
	last, err := time.Parse(time.RFC3339Nano, string(entry.Value()))
	if err != nil {
		log.Warn("cron: bad last tick, starting over", "value", string(entry.Value()))
		last = now.Truncate(time.Second)
	}
	tick := dueTick(e.sched, last, now)
	if tick.IsZero() {
		return nextDue(e.sched, last, now)
	}
	r := &record{Invocation: v1.Invocation{
		ID:          derivedID(tick, "cron", e.key, tick.Format(time.RFC3339)),
		Environment: e.env,
		Function:    e.fn,
		Source:      "cron",
		Status:      v1.InvocationPending,
		Created:     q.now(),
	}}
	if err := q.submit(ctx, r, []byte(e.data), nil); err != nil {
		if q.ctx.Err() == nil {
			log.Warn("cron: enqueue tick", "tick", tick, "err", err)
		}
		return retry
	}
	if _, err := q.cronKV.Update(ctx, e.key, []byte(tick.Format(time.RFC3339Nano)), entry.Revision()); err != nil {
		// Someone moved it first; the derived id kept the tick single.
		log.Debug("cron: record tick", "tick", tick, "err", err)
	}
	log.Debug("cron fired", "tick", tick, "invocation", r.ID)
	return nextDue(e.sched, tick, now)
}

// dueTick is the tick to fire now given the last fired one, or zero: the
// most recent tick at or before now, if it is after last.
func dueTick(s cron.Schedule, last, now time.Time) time.Time {
	if c, ok := s.(cron.ConstantDelaySchedule); ok {
		n := now.Sub(last) / c.Delay
		if n < 1 {
			return time.Time{}
		}
		return last.Add(n * c.Delay)
	}
	t := latestTick(s, now)
	if t.IsZero() || !t.After(last) {
		return time.Time{}
	}
	return t
}

// nextDue is when an entry whose last fired tick is last is due next.
func nextDue(s cron.Schedule, last, now time.Time) time.Time {
	if c, ok := s.(cron.ConstantDelaySchedule); ok {
		return last.Add(c.Delay)
	}
	return s.Next(now)
}

// latestTick is the most recent tick of s at or before now (zero if none in
// about a year). cron only computes forward, so it probes back from now with
// doubling steps; the first step that holds a tick holds few, since the
// previous (half as long) held none.
func latestTick(s cron.Schedule, now time.Time) time.Time {
	for d := time.Second; d <= 400*24*time.Hour; d *= 2 {
		t := s.Next(now.Add(-d))
		if t.IsZero() {
			return time.Time{}
		}
		if t.After(now) {
			continue
		}
		for {
			n := s.Next(t)
			if n.IsZero() || n.After(now) {
				return t
			}
			t = n
		}
	}
	return time.Time{}
}
