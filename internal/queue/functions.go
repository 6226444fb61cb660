package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"
)

// Function is the asynchronous configuration of one function.
type Function struct {
	Environment, Name string
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// MaxRetries after the first failed attempt.
	MaxRetries int
	// Backoff is the first retry's delay, doubled each time (default 1s).
	Backoff time.Duration
	// DeadLetterTopic, a topic of the same environment, receives the
	// invocations that failed every attempt.
	DeadLetterTopic string
	// Topics the function is triggered by, in its environment.
	Topics []string
	Crons  []Cron
}

// Cron is one cron trigger.
type Cron struct {
	// Schedule is a 5-field expression or a descriptor (@every 1m,
	// @hourly, …), in UTC.
	Schedule string
	// Data is the request body of each tick's invocation.
	Data string
}

const (
	defaultTimeout = 30 * time.Second
	defaultBackoff = time.Second
	maxBackoff     = time.Hour
)

type fnKey struct{ env, name string }

// fnState is a configured function and the consumers that feed it.
type fnState struct {
	fn     Function
	work   jetstream.ConsumeContext
	topics map[string]jetstream.ConsumeContext
}

func (s *fnState) stop() {
	if s.work != nil {
		s.work.Stop()
	}
	for _, c := range s.topics {
		c.Stop()
	}
}

// ParseSchedule parses a cron trigger's schedule as the queue does: a
// standard 5-field expression or a descriptor, in UTC. API validation can
// use it to reject a schedule before it is stored.
func ParseSchedule(spec string) (cron.Schedule, error) {
	return cron.ParseStandard(spec)
}

// SetFunctions makes fns the full list of functions with asynchronous work:
// it starts consumers and cron entries for new ones, adjusts changed ones and
// stops removed ones (whose stored invocations wait until they come back).
// It is level-triggered: call it with the whole list whenever a function
// changes.
//
// Invalid entries do not stop the rest: a function with a bad name is
// skipped, an invalid cron schedule or topic is skipped while the rest of its
// function is configured, and every such problem is logged and returned,
// joined, as Invalid field errors. A failure to create a consumer is
// returned too; the next call retries it.
func (q *Queue) SetFunctions(fns []Function) error {
	q.setMu.Lock()
	defer q.setMu.Unlock()
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	defer cancel()

	var errs []error
	want := map[fnKey]Function{}
	var crons []cronEntry
	for _, f := range fns {
		f, fcrons, ferrs := normalize(f)
		errs = append(errs, ferrs...)
		if f.Name == "" {
			continue
		}
		want[fnKey{f.Environment, f.Name}] = f
		crons = append(crons, fcrons...)
	}

	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return v1.Unavailable("queue: closed")
	}
	var removed []*fnState
	for k, st := range q.fns {
		if _, ok := want[k]; !ok {
			removed = append(removed, st)
			delete(q.fns, k)
		}
	}
	q.mu.Unlock()
	for _, st := range removed {
		st.stop()
		q.log.Info("function async work stopped", "environment", st.fn.Environment, "function", st.fn.Name)
	}

	for k, f := range want {
		if err := q.ensure(ctx, k, f); err != nil {
			errs = append(errs, err)
		}
	}

	// An entry counts from when it is first named here, not from when the
	// cron loop first sees it.
	base := q.now().UTC().Truncate(time.Second)
	for _, e := range crons {
		if err := q.cronStart(ctx, e, base); err != nil {
			errs = append(errs, err)
		}
	}
	q.mu.Lock()
	q.crons = crons
	q.mu.Unlock()
	q.wakeCron()

	for _, err := range errs {
		q.log.Warn("function async configuration", "err", err)
	}
	return errors.Join(errs...)
}

// normalize applies defaults and validates one function; it returns the
// function with its invalid parts dropped (Name "" if it is unusable), its
// parsed cron entries, and the problems.
func normalize(f Function) (Function, []cronEntry, []error) {
	var errs []error
	where := f.Environment + "/" + f.Name
	if !validToken(f.Environment) || !validToken(f.Name) {
		return Function{}, nil, []error{v1.FieldError("metadata.name", "function %q: environment and name must be DNS labels", where)}
	}
	if f.Timeout <= 0 {
		f.Timeout = defaultTimeout
	}
	if f.Backoff <= 0 {
		f.Backoff = defaultBackoff
	}
	if f.MaxRetries < 0 {
		f.MaxRetries = 0
	}
	if f.DeadLetterTopic != "" && !validToken(f.DeadLetterTopic) {
		errs = append(errs, v1.FieldError("spec.async.deadLetterTopic", "function %s: %q is not a topic name", where, f.DeadLetterTopic))
		f.DeadLetterTopic = ""
	}
	var topics []string
	for _, t := range f.Topics {
		if !validToken(t) {
			errs = append(errs, v1.FieldError("spec.triggers.topic", "function %s: %q is not a topic name", where, t))
			continue
		}
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	f.Topics = topics
	var entries []cronEntry
	for _, c := range f.Crons {
		sched, err := ParseSchedule(c.Schedule)
		if err != nil {
			errs = append(errs, v1.FieldError("spec.triggers.cron", "function %s: schedule %q: %v", where, c.Schedule, err))
			continue
		}
		entries = append(entries, cronEntry{
			env: f.Environment, fn: f.Name, spec: c.Schedule, data: c.Data, sched: sched,
			key: cronKey(f.Environment, f.Name, c.Schedule, c.Data),
		})
	}
	return f, entries, errs
}

// ensure creates or updates the consumers of one function and starts
// consuming from the ones not yet consumed.
func (q *Queue) ensure(ctx context.Context, k fnKey, f Function) error {
	q.mu.Lock()
	st := q.fns[k]
	if st == nil {
		st = &fnState{topics: map[string]jetstream.ConsumeContext{}}
		q.fns[k] = st
	}
	old := st.fn
	st.fn = f // retries, backoff and dead letters are read per delivery
	q.mu.Unlock()

	if st.work == nil || old.Timeout != f.Timeout {
		cons, err := q.js.CreateOrUpdateConsumer(ctx, workStream, jetstream.ConsumerConfig{
			Durable:       "inv_" + f.Environment + "_" + f.Name,
			FilterSubject: workSubject(f.Environment, f.Name),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       f.Timeout + ackMargin,
			MaxAckPending: inFlightPerFunction,
			MaxDeliver:    -1, // attempts are counted in the record
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fmt.Errorf("queue: consumer for %s/%s: %w", f.Environment, f.Name, err)
		}
		if st.work == nil {
			cc, err := cons.Consume(func(m jetstream.Msg) { q.deliver(f.Environment, f.Name, m) },
				jetstream.PullMaxMessages(inFlightPerFunction))
			if err != nil {
				return fmt.Errorf("queue: consume for %s/%s: %w", f.Environment, f.Name, err)
			}
			q.mu.Lock()
			st.work = cc
			q.mu.Unlock()
			q.log.Info("function async work started", "environment", f.Environment, "function", f.Name)
		}
	}

	for topic, cc := range st.topics {
		if !slices.Contains(f.Topics, topic) {
			cc.Stop()
			q.mu.Lock()
			delete(st.topics, topic)
			q.mu.Unlock()
		}
	}
	for _, topic := range f.Topics {
		if st.topics[topic] != nil {
			continue
		}
		cons, err := q.js.CreateOrUpdateConsumer(ctx, topicStream, jetstream.ConsumerConfig{
			// Names are DNS labels, so "_" separates them unambiguously.
			Durable:       "topic_" + f.Environment + "_" + topic + "_" + f.Name,
			FilterSubject: topicSubject(f.Environment, topic),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackMargin,
			MaxDeliver:    -1,
			// A new subscriber starts with the next message.
			DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err != nil {
			return fmt.Errorf("queue: consumer for topic %s of %s/%s: %w", topic, f.Environment, f.Name, err)
		}
		env, fn, topic := f.Environment, f.Name, topic
		cc, err := cons.Consume(func(m jetstream.Msg) { q.fanOut(env, fn, topic, m) })
		if err != nil {
			return fmt.Errorf("queue: consume topic %s for %s/%s: %w", topic, env, fn, err)
		}
		q.mu.Lock()
		st.topics[topic] = cc
		q.mu.Unlock()
	}
	return nil
}

// function returns the current configuration of env/fn.
func (q *Queue) function(env, fn string) (Function, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	st, ok := q.fns[fnKey{env, fn}]
	if !ok {
		return Function{}, false
	}
	return st.fn, true
}
