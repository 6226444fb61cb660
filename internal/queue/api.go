package queue

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Enqueue stores an asynchronous invocation of env/fn (source "async") and
// returns its id once the invocation is durably stored. The function must be
// in the last SetFunctions. callbackURL, when not empty, receives the result
// as a POST of the Invocation JSON after success or the final failure, at
// least once (see callbacks.go), sent as env's egress allows.
func (q *Queue) Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	if _, ok := q.function(env, fn); !ok {
		return "", v1.NotFound("function %q not found in environment %q", fn, env)
	}
	if len(body) > q.cfg.MaxPayload {
		return "", tooLarge("request body", len(body), q.cfg.MaxPayload)
	}
	if n := headerSize(header); n > maxHeaderBytes {
		return "", tooLarge("request header", n, maxHeaderBytes)
	}
	if callbackURL != "" {
		u, err := url.Parse(callbackURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", v1.FieldError("callbackUrl", "must be an absolute http or https URL")
		}
		if q.cfg.Egress == nil {
			return "", v1.Unavailable("this server posts no callbacks")
		}
		// What can be told now is refused now; a name is checked again,
		// address by address, each time the callback is posted.
		if err := q.cfg.Egress.CheckURL(env, callbackURL); err != nil {
			return "", fmt.Errorf("callbackUrl: %w", err)
		}
	}
	now := q.now()
	r := &record{Invocation: v1.Invocation{
		ID:          newID(now),
		Environment: env,
		Function:    fn,
		Source:      "async",
		Status:      v1.InvocationPending,
		Created:     now,
		CallbackURL: callbackURL,
	}}
	if err := q.submit(ctx, r, body, header); err != nil {
		return "", err
	}
	return r.ID, nil
}

// Get returns an invocation of env by id; NotFound for an unknown id or one
// of another environment.
func (q *Queue) Get(ctx context.Context, env, id string) (v1.Invocation, error) {
	if !validToken(env) || !validID(id) {
		return v1.Invocation{}, v1.NotFound("invocation %q not found in environment %q", id, env)
	}
	r, _, err := q.loadRecord(ctx, env, id)
	if err != nil {
		return v1.Invocation{}, err
	}
	return r.Invocation, nil
}

// Publish stores a message on topic env/topic and returns its id once it is
// durably stored. Every function with a trigger on that topic gets it as an
// invocation (source "topic:NAME"). A function subscribes when SetFunctions
// first names it with the topic: messages published before that are not
// delivered to it; from then on its durable consumer keeps its place, across
// restarts and while the function is removed, for the topic's retention.
func (q *Queue) Publish(ctx context.Context, env, topic string, body []byte, header http.Header) (string, error) {
	if !validToken(env) {
		return "", v1.FieldError("environment", "must be a DNS label")
	}
	if !validToken(topic) {
		return "", v1.FieldError("topic", "must be a DNS label")
	}
	if len(body) > q.cfg.MaxPayload {
		return "", tooLarge("message", len(body), q.cfg.MaxPayload)
	}
	if n := headerSize(header); n > maxHeaderBytes {
		return "", tooLarge("message header", n, maxHeaderBytes)
	}
	id := newID(q.now())
	if err := q.publishTopic(ctx, env, topic, id, body, messageHeader(header)); err != nil {
		return "", err
	}
	return id, nil
}

func (q *Queue) publishTopic(ctx context.Context, env, topic, id string, body []byte, h nats.Header) error {
	msg := nats.NewMsg(topicSubject(env, topic))
	msg.Header = h
	msg.Header.Set(internalID, id)
	msg.Data = body
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(topicStream)); err != nil {
		return v1.Unavailable("queue: publish to topic %s: %v", topic, err)
	}
	return nil
}

// Depth is how many invocations of env/fn are stored and not finished:
// waiting, backing off before a retry, or in flight. It is 0 when JetStream
// does not answer within a second (it is for metrics).
func (q *Queue) Depth(env, fn string) int {
	if !validToken(env) || !validToken(fn) {
		return 0
	}
	ctx, cancel := context.WithTimeout(q.ctx, time.Second)
	defer cancel()
	subj := workSubject(env, fn)
	info, err := q.work.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		q.log.Debug("queue depth", "environment", env, "function", fn, "err", err)
		return 0
	}
	return int(info.State.Subjects[subj])
}

// maxHeaderBytes bounds the headers stored with a body; the embedded
// server's message limit leaves room for them (and for a dead letter's
// additions) on top of MaxPayload.
const maxHeaderBytes = 64 << 10

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(userHeaderPrefix) + len(k) + len(v) + 4
		}
	}
	return n
}
