package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
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
	r, f, log, ok := q.begin(ctx, env, fn, m)
	if !ok {
		return
	}
	res := q.call(env, fn, f, r, m)
	q.settle(ctx, log, f, r, m, res.body, decide(f, int(r.Attempts), r.Source, res))
}

// begin takes a delivery up to the call: it drops a message it cannot
// run, acknowledges a duplicate of a finished invocation, puts back what
// must wait, and records the attempt as running. ok is false when the
// delivery has been dealt with.
func (q *Queue) begin(ctx context.Context, env, fn string, m jetstream.Msg) (r *record, f Function, log *slog.Logger, ok bool) {
	h := m.Headers()
	id := h.Get(internalID)
	if !validID(id) {
		q.log.Error("dropping a work message without a valid id", "environment", env, "function", fn, "id", id)
		q.ack(m)
		return nil, f, nil, false
	}
	log = q.log.With("environment", env, "function", fn, "invocation", id)
	f, ok = q.function(env, fn)
	if !ok {
		_ = m.Nak() // removed meanwhile: waits for the function to come back
		return nil, f, nil, false
	}
	r, _, err := q.loadRecord(ctx, env, id)
	if v1.IsNotFound(err) {
		r = recordFromMessage(env, fn, h)
	} else if err != nil {
		log.Warn("read invocation", "err", err)
		_ = m.NakWithDelay(time.Second)
		return nil, f, nil, false
	}
	if r.terminal() {
		// A duplicate of a finished invocation: the process may have died
		// between recording the outcome and scheduling its callback.
		if err := q.scheduleCallback(ctx, r.Invocation); err != nil {
			log.Warn("schedule callback", "err", err)
			_ = m.NakWithDelay(time.Second)
			return nil, f, nil, false
		}
		q.ack(m)
		return nil, f, nil, false
	}
	if wait := time.Until(r.NotBefore); wait > 0 {
		_ = m.NakWithDelay(wait) // a restart skipped the rest of the backoff
		return nil, f, nil, false
	}

	r.Attempts++
	r.Status = v1.InvocationRunning
	r.NotBefore = time.Time{}
	if err := q.putRecord(ctx, r); err != nil {
		log.Warn("record attempt", "err", err)
		_ = m.NakWithDelay(time.Second)
		return nil, f, nil, false
	}
	return r, f, log, true
}

// result is what calling the function came to.
type result struct {
	status   int
	body     []byte
	err      error
	timedOut bool // the attempt's timeout cut the call short
	closing  bool // the queue was closing when the call returned
}

// call makes the attempt's request to the function.
func (q *Queue) call(env, fn string, f Function, r *record, m jetstream.Msg) result {
	header := userHeader(m.Headers())
	header.Set(HeaderInvocationID, r.ID)
	header.Set(HeaderAttempt, strconv.Itoa(int(r.Attempts)))
	header.Set(HeaderSource, r.Source)
	ictx, icancel := context.WithTimeout(q.ctx, f.Timeout)
	defer icancel()
	status, _, body, err := q.cfg.Invoker.Invoke(ictx, env, fn, m.Data(), header)
	return result{
		status:   status,
		body:     body,
		err:      err,
		timedOut: ictx.Err() == context.DeadlineExceeded,
		closing:  q.ctx.Err() != nil,
	}
}

// verdict is what becomes of an invocation after an attempt.
type verdict struct {
	// status is the record's next status: Succeeded, Pending (to be tried
	// again) or Failed.
	status string
	// uncounted: closing cut the attempt short. It is not the function's
	// failure, so it does not count and the record keeps what it held.
	uncounted bool
	// retryIn is the backoff before the next attempt of a Pending one.
	retryIn time.Duration
	// statusCode and errMsg are what the record shows of the attempt.
	statusCode int
	errMsg     string
	// deadLetter is the topic a Failed invocation is published to, if
	// any. ownDeadLetter: it came from that very topic and is not sent
	// there again, or a subscriber of its own dead-letter topic would feed
	// itself forever.
	deadLetter    string
	ownDeadLetter bool
}

// decide turns attempt number attempts (counting this one) of an
// invocation of f, which came from source, into a verdict. It is the
// queue's retry policy and does nothing else.
func decide(f Function, attempts int, source string, res result) verdict {
	if res.err == nil && res.status >= 200 && res.status < 300 {
		return verdict{status: v1.InvocationSucceeded, statusCode: res.status}
	}
	if res.closing {
		return verdict{status: v1.InvocationPending, uncounted: true}
	}
	v := verdict{statusCode: res.status, errMsg: fmt.Sprintf("function answered HTTP %d", res.status)}
	if res.err != nil {
		v.statusCode, v.errMsg = 0, res.err.Error()
		if res.timedOut {
			v.errMsg = fmt.Sprintf("timed out after %s: %v", f.Timeout, res.err)
		}
	}
	if retries := attempts - 1; retries < f.MaxRetries {
		retry := backoff.Backoff{Base: f.Backoff, Max: maxBackoff}
		v.status, v.retryIn = v1.InvocationPending, retry.Delay(attempts-1)
		return v
	}
	v.status = v1.InvocationFailed
	switch {
	case f.DeadLetterTopic == "":
	case source == "topic:"+f.DeadLetterTopic:
		v.ownDeadLetter = true
	default:
		v.deadLetter = f.DeadLetterTopic
	}
	return v
}

// settle records the verdict on an attempt of r, then acknowledges the
// message or puts it back.
func (q *Queue) settle(ctx context.Context, log *slog.Logger, f Function, r *record, m jetstream.Msg, body []byte, v verdict) {
	if v.uncounted {
		r.Attempts--
		r.Status = v1.InvocationPending
		if err := q.putRecord(ctx, r); err != nil {
			log.Warn("record interrupted attempt", "err", err)
		}
		_ = m.Nak()
		return
	}
	r.Status = v.status
	r.StatusCode = v.statusCode
	r.Body = storedBody(body)
	r.Error = v.errMsg
	switch v.status {
	case v1.InvocationSucceeded:
		r.Finished = q.now()
		q.finish(ctx, log, r, m)
	case v1.InvocationPending:
		r.NotBefore = time.Now().Add(v.retryIn)
		if err := q.putRecord(ctx, r); err != nil {
			log.Warn("record failed attempt", "err", err)
		}
		log.Debug("attempt failed, retrying", "attempt", r.Attempts, "delay", v.retryIn, "err", r.Error)
		_ = m.NakWithDelay(v.retryIn)
	default:
		if v.ownDeadLetter {
			log.Warn("not dead-lettering a dead letter to its own topic", "topic", f.DeadLetterTopic)
		} else if v.deadLetter != "" {
			// The dead letter goes first: if the process dies before
			// the record says Failed, the invocation is retried once
			// more and dead-lettered again rather than never.
			q.sendDeadLetter(ctx, log, f, r, m, v.deadLetter)
		}
		r.Finished = q.now()
		log.Info("invocation failed", "attempts", r.Attempts, "err", r.Error)
		q.finish(ctx, log, r, m)
	}
}

// sendDeadLetter publishes the failed invocation r of f to topic, with
// what failed and why.
func (q *Queue) sendDeadLetter(ctx context.Context, log *slog.Logger, f Function, r *record, m jetstream.Msg, topic string) {
	dh := userHeader(m.Headers())
	dh.Set(HeaderInvocationID, r.ID)
	dh.Set(HeaderFailedInvocationID, r.ID)
	dh.Set(HeaderFunction, f.Name)
	dh.Set(HeaderError, r.Error)
	did := derivedID(r.Created, "dead-letter", f.Environment, r.ID)
	if err := q.publishTopic(ctx, f.Environment, topic, did, m.Data(), messageHeader(dh)); err != nil {
		log.Error("dead letter lost", "topic", topic, "err", err)
	}
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
	q.metrics.finished(r.Environment, r.Function, r.Status)
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
