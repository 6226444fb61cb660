package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats.go/jetstream"
)

// bookkeeping bounds the writes around an attempt. They are not cancelled by
// Close: an outcome that is known must be recorded, or the attempt is lost.
const bookkeeping = 30 * time.Second

// deliver runs one delivery of a work message in its own goroutine; the
// consumer's MaxAckPending bounds how many run at once per function.
func (q *Queue) deliver(env, fn string, m jetstream.Msg) {
	if !q.track() {
		return // closing: not acknowledged, so delivered again after restart
	}
	go func() {
		defer q.wg.Done()
		q.attempt(env, fn, m)
	}()
}

// attempt makes one attempt of an invocation and records its outcome before
// acknowledging, so that a crash at any point leaves the invocation to be
// delivered again (at least once) and never lost.
func (q *Queue) attempt(env, fn string, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx), bookkeeping)
	defer cancel()
	h := m.Headers()
	id := h.Get(internalID)
	if !validID(id) {
		q.log.Error("dropping a work message without a valid id", "environment", env, "function", fn, "id", id)
		q.ack(m)
		return
	}
	log := q.log.With("environment", env, "function", fn, "invocation", id)
	f, ok := q.function(env, fn)
	if !ok {
		_ = m.Nak() // removed meanwhile: waits for the function to come back
		return
	}
	r, _, err := q.loadRecord(ctx, env, id)
	if v1.IsNotFound(err) {
		r = recordFromMessage(env, fn, h)
	} else if err != nil {
		log.Warn("read invocation", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if r.terminal() {
		// A duplicate of a finished invocation: the process may have died
		// between recording the outcome and scheduling its callback.
		if err := q.scheduleCallback(ctx, r.Invocation); err != nil {
			log.Warn("schedule callback", "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		q.ack(m)
		return
	}
	if wait := time.Until(r.NotBefore); wait > 0 {
		_ = m.NakWithDelay(wait) // a restart skipped the rest of the backoff
		return
	}

	r.Attempts++
	r.Status = v1.InvocationRunning
	r.NotBefore = time.Time{}
	if err := q.putRecord(ctx, r); err != nil {
		log.Warn("record attempt", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	header := userHeader(h)
	header.Set(HeaderInvocationID, r.ID)
	header.Set(HeaderAttempt, strconv.Itoa(int(r.Attempts)))
	header.Set(HeaderSource, r.Source)
	ictx, icancel := context.WithTimeout(q.ctx, f.Timeout)
	status, _, body, ierr := q.cfg.Invoker.Invoke(ictx, env, fn, m.Data(), header)
	timedOut := ictx.Err() == context.DeadlineExceeded
	icancel()

	if ierr == nil && status >= 200 && status < 300 {
		r.Status = v1.InvocationSucceeded
		r.StatusCode = status
		r.Body = storedBody(body)
		r.Error = ""
		r.Finished = q.now()
		q.finish(ctx, log, r, m)
		return
	}

	if q.ctx.Err() != nil {
		// Closing cut the attempt short: it is not the function's
		// failure, so it does not count.
		r.Attempts--
		r.Status = v1.InvocationPending
		if err := q.putRecord(ctx, r); err != nil {
			log.Warn("record interrupted attempt", "err", err)
		}
		_ = m.Nak()
		return
	}

	r.StatusCode = status
	r.Body = storedBody(body)
	if ierr != nil {
		r.StatusCode = 0
		r.Error = ierr.Error()
		if timedOut {
			r.Error = fmt.Sprintf("timed out after %s: %v", f.Timeout, ierr)
		}
	} else {
		r.Error = fmt.Sprintf("function answered HTTP %d", status)
	}
	if retries := int(r.Attempts) - 1; retries < f.MaxRetries {
		delay := backoff(f.Backoff, int(r.Attempts))
		r.Status = v1.InvocationPending
		r.NotBefore = time.Now().Add(delay)
		if err := q.putRecord(ctx, r); err != nil {
			log.Warn("record failed attempt", "err", err)
		}
		log.Debug("attempt failed, retrying", "attempt", r.Attempts, "delay", delay, "err", r.Error)
		_ = m.NakWithDelay(delay)
		return
	}

	if f.DeadLetterTopic != "" && r.Source == "topic:"+f.DeadLetterTopic {
		// A subscriber of its own dead-letter topic would feed itself
		// forever.
		log.Warn("not dead-lettering a dead letter to its own topic", "topic", f.DeadLetterTopic)
	} else if f.DeadLetterTopic != "" {
		// The dead letter goes first: if the process dies before the
		// record says Failed, the invocation is retried once more and
		// dead-lettered again rather than never.
		dh := userHeader(h)
		dh.Set(HeaderInvocationID, r.ID)
		dh.Set(HeaderFailedInvocationID, r.ID)
		dh.Set(HeaderFunction, fn)
		dh.Set(HeaderError, r.Error)
		did := derivedID(r.Created, "dead-letter", env, r.ID)
		if err := q.publishTopic(ctx, env, f.DeadLetterTopic, did, m.Data(), messageHeader(dh)); err != nil {
			log.Error("dead letter lost", "topic", f.DeadLetterTopic, "err", err)
		}
	}
	r.Status = v1.InvocationFailed
	r.Finished = q.now()
	log.Info("invocation failed", "attempts", r.Attempts, "err", r.Error)
	q.finish(ctx, log, r, m)
}

// finish records a final outcome, schedules its callback and only then
// acknowledges: a crash before the ack delivers the invocation again, which
// finds it finished and schedules the callback again (see attempt).
func (q *Queue) finish(ctx context.Context, log *slog.Logger, r *record, m jetstream.Msg) {
	if err := q.putRecord(ctx, r); err != nil {
		log.Warn("record outcome", "err", err)
		// Not acknowledged: delivered again, attempted again.
		_ = m.NakWithDelay(time.Second)
		return
	}
	if q.cfg.OnFinish != nil {
		q.cfg.OnFinish(r.Environment, r.Function, r.Status)
	}
	if err := q.scheduleCallback(ctx, r.Invocation); err != nil {
		log.Warn("schedule callback", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	q.ack(m)
}

func (q *Queue) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		q.log.Debug("ack", "err", err)
	}
}

// backoff is first × 2^(attempt-1), at most maxBackoff.
func backoff(first time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// fanOut turns one topic message into an invocation of fn. The id is
// derived from the message and the function, so a redelivered message does
// not make a second invocation.
func (q *Queue) fanOut(env, fn, topic string, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(q.ctx, bookkeeping)
	defer cancel()
	md, err := m.Metadata()
	if err != nil {
		q.log.Error("topic message without metadata", "topic", topic, "err", err)
		return
	}
	mid := m.Headers().Get(internalID)
	if mid == "" {
		mid = strconv.FormatUint(md.Sequence.Stream, 10)
	}
	r := &record{Invocation: v1.Invocation{
		ID:          derivedID(md.Timestamp, "topic", env, topic, mid, fn),
		Environment: env,
		Function:    fn,
		Source:      "topic:" + topic,
		Status:      v1.InvocationPending,
		Created:     q.now(),
	}}
	if err := q.submit(ctx, r, m.Data(), userHeader(m.Headers())); err != nil {
		q.log.Warn("topic message to invocation", "environment", env, "topic", topic, "function", fn, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	q.ack(m)
}
