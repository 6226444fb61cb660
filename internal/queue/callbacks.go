package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Callbacks are at least once, like invocations: finish publishes the
// finished invocation to the callback stream before it acknowledges the
// invocation, and the callback consumer acknowledges a callback only once
// its POST was answered 2xx or its last attempt failed. A crash anywhere
// in between posts it again after the restart; a receiver de-duplicates by
// X-Berth-Invocation-Id. What is given up: a callback whose every attempt
// failed (logged), and one still unposted after the stream's retention
// (7 days).

const (
	defaultCallbackAttempts = 6
	defaultCallbackBackoff  = time.Second
	// callbackTimeout bounds one POST, connection included.
	callbackTimeout = 10 * time.Second
	// callbacksInFlight bounds the POSTs made at once.
	callbacksInFlight = 64
	// maxCallbackAnswer is how much of a receiver's answer is read (and
	// thrown away) so that the connection can be reused.
	maxCallbackAnswer = 64 << 10
)

func callbackSubject(env, id string) string { return "cb." + env + "." + id }

// scheduleCallback stores inv's callback durably, once per invocation
// within the stream's duplicate window. An invocation without a callback
// URL has nothing to schedule.
func (q *Queue) scheduleCallback(ctx context.Context, inv v1.Invocation) error {
	if inv.CallbackURL == "" {
		return nil
	}
	body, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(callbackSubject(inv.Environment, inv.ID))
	msg.Data = body
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID("cb-"+inv.ID), jetstream.WithExpectStream(callbackStream)); err != nil {
		return v1.Unavailable("queue: store callback of %s: %v", inv.ID, err)
	}
	return nil
}

// startCallbacks starts the one consumer that posts callbacks.
func (q *Queue) startCallbacks(ctx context.Context) error {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, callbackStream, jetstream.ConsumerConfig{
		Durable:       "callbacks",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       callbackTimeout + ackMargin,
		MaxAckPending: callbacksInFlight,
		MaxDeliver:    -1, // attempts are counted from the delivery count
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("queue: consumer for callbacks: %w", err)
	}
	cc, err := cons.Consume(q.deliverCallback, jetstream.PullMaxMessages(callbacksInFlight))
	if err != nil {
		return fmt.Errorf("queue: consume callbacks: %w", err)
	}
	q.cbCons = cc
	return nil
}

func (q *Queue) deliverCallback(m jetstream.Msg) {
	if !q.track() {
		return // closing: not acknowledged, posted after the restart
	}
	go func() {
		defer q.wg.Done()
		q.postCallback(m)
	}()
}

// postCallback makes one attempt of one callback.
func (q *Queue) postCallback(m jetstream.Msg) {
	var inv v1.Invocation
	if err := json.Unmarshal(m.Data(), &inv); err != nil || inv.CallbackURL == "" {
		q.log.Error("dropping an unreadable callback", "subject", m.Subject(), "err", err)
		q.ack(m)
		return
	}
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	err := q.post(inv, m.Data())
	switch {
	case err == nil:
		q.ack(m)
	case q.ctx.Err() != nil:
		_ = m.Nak() // closing: posted again after the restart
	case attempt >= q.cfg.CallbackAttempts:
		q.log.Warn("callback failed, given up", "environment", inv.Environment, "function", inv.Function,
			"invocation", inv.ID, "url", inv.CallbackURL, "attempts", attempt, "err", err)
		q.ack(m)
	default:
		retry := backoff.Backoff{Base: q.cfg.CallbackBackoff, Max: maxBackoff}
		delay := retry.Delay(attempt - 1)
		q.log.Debug("callback failed, retrying", "invocation", inv.ID, "attempt", attempt, "delay", delay, "err", err)
		_ = m.NakWithDelay(delay)
	}
}

// post sends one callback with its environment's egress client.
func (q *Queue) post(inv v1.Invocation, body []byte) error {
	if q.cfg.Egress == nil {
		return v1.Unavailable("this server posts no callbacks")
	}
	ctx, cancel := context.WithTimeout(q.ctx, callbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, inv.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderInvocationID, inv.ID)
	resp, err := q.cfg.Egress.Client(inv.Environment).Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxCallbackAnswer))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return fmt.Errorf("callback answered HTTP %d", resp.StatusCode)
	}
	return nil
}
