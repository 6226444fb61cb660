package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Invoker calls a function synchronously. The server implements it through
// the gateway, which wakes a function from zero and holds the call meanwhile.
type Invoker interface {
	Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (status int, respHeader http.Header, respBody []byte, err error)
}

// Egress is how the queue reaches a callback URL: as the invocation's
// environment may (package egress), never with a client of its own.
type Egress interface {
	Client(env string) *http.Client
	CheckURL(env, rawURL string) error
}

// Config is what the composition root gives the queue.
type Config struct {
	// Dir holds JetStream's files; it is created if missing.
	Dir     string
	Invoker Invoker
	Logger  *slog.Logger
	// Clock stamps Created/Finished and drives cron ticks (default
	// time.Now). Retry backoff uses real time: it is a delay, not a date.
	Clock func() time.Time
	// MaxPayload bounds a request body or topic message (default 1 MiB).
	MaxPayload int
	// Egress posts callbacks, each with its environment's client, and
	// vets a callback URL when the invocation is enqueued. Without it,
	// an invocation with a callback URL is refused.
	Egress Egress
	// CallbackAttempts is how many times a callback is POSTed before it
	// is given up (default 6); CallbackBackoff the wait before the second
	// try, doubled for each next one (default 1s).
	CallbackAttempts int
	CallbackBackoff  time.Duration
}

const (
	workStream  = "BERTH_INVOCATIONS"
	topicStream = "BERTH_TOPICS"
	// callbackStream holds the callbacks of finished invocations until
	// they are posted (or given up), so that none is lost to a crash.
	callbackStream = "BERTH_CALLBACKS"
	invBucket      = "berth_invocations"
	cronBucket     = "berth_cron"
	defaultLimit   = 1 << 20

	// inFlightPerFunction bounds deliveries per function: the autoscaler
	// scales functions on concurrency, the queue must not flood them.
	inFlightPerFunction = 8
	// topicRetention keeps topic messages a week, the Topic default; a
	// per-topic retention is not applied yet.
	topicRetention = 7 * 24 * time.Hour
	// recordTTL is how long an invocation's record answers Get after its
	// last change. A pending invocation whose record expired is rebuilt
	// from its message when delivered.
	recordTTL = 7 * 24 * time.Hour
	// ackMargin is added to a function's timeout to make the consumer's
	// ack wait: recording the outcome must fit in it, or the invocation is
	// delivered twice.
	ackMargin = 30 * time.Second
)

// Queue is the embedded JetStream and the workers, triggers and cron loop
// on top of it.
type Queue struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	work   jetstream.Stream
	topics jetstream.Stream
	cbs    jetstream.Stream
	// cbCons posts callbacks; stopped by Close.
	cbCons jetstream.ConsumeContext
	invKV  jetstream.KeyValue
	cronKV jetstream.KeyValue

	metrics *metrics

	// ctx is cancelled by Close: it bounds invocations and callbacks.
	ctx    context.Context
	cancel context.CancelFunc

	setMu sync.Mutex // serialises SetFunctions

	mu     sync.Mutex
	fns    map[fnKey]*fnState
	crons  []cronEntry
	closed bool
	wg     sync.WaitGroup // deliveries, callbacks and the cron loop

	cronWake chan struct{}
}

// Open starts the embedded JetStream on cfg.Dir, recovers what it holds and
// starts the cron loop. Workers start with SetFunctions.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, v1.Invalid("queue: Dir is required")
	}
	if cfg.Invoker == nil {
		return nil, v1.Invalid("queue: Invoker is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = defaultLimit
	}
	if cfg.CallbackAttempts <= 0 {
		cfg.CallbackAttempts = defaultCallbackAttempts
	}
	if cfg.CallbackBackoff <= 0 {
		cfg.CallbackBackoff = defaultCallbackBackoff
	}
	q := &Queue{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Clock,
		fns:      map[fnKey]*fnState{},
		cronWake: make(chan struct{}, 1),
	}
	q.metrics = newMetrics(q)
	q.ctx, q.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := q.start(ctx); err != nil {
		q.shutdown()
		return nil, err
	}
	q.wg.Add(1)
	go q.cronLoop()
	return q, nil
}

func (q *Queue) start(ctx context.Context) error {
	opts := &server.Options{
		ServerName: "berth",
		DontListen: true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   q.cfg.Dir,
		// SyncAlways makes every stream write O_SYNC before the publish
		// is acknowledged: an Enqueue that returned survives kill -9.
		SyncAlways:   true,
		SyncInterval: 2 * time.Minute,
		// Room for headers on top of the largest body we accept.
		MaxPayload:         int32(q.cfg.MaxPayload + 256<<10),
		JetStreamMaxMemory: 64 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("queue: nats server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{q.log}, false, false, false)
	q.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		return v1.Unavailable("queue: embedded JetStream did not start within 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("berth-queue"),
		nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("queue: connect in-process: %w", err)
	}
	q.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	q.js = js

	q.work, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        workStream,
		Description: "async invocations waiting for (or in) their attempt",
		Subjects:    []string{"inv.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", workStream, err)
	}
	q.topics, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        topicStream,
		Description: "messages published to topics",
		Subjects:    []string{"topic.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      topicRetention,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", topicStream, err)
	}
	q.cbs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        callbackStream,
		Description: "callbacks of finished invocations, until posted",
		Subjects:    []string{"cb.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      recordTTL,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", callbackStream, err)
	}
	q.invKV, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      invBucket,
		Description: "invocation records by ENV.ID",
		History:     1,
		TTL:         recordTTL,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("queue: bucket %s: %w", invBucket, err)
	}
	q.cronKV, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cronBucket,
		Description: "last fired tick per ENV.FN.SCHEDULE",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("queue: bucket %s: %w", cronBucket, err)
	}
	if err := q.resetWorkConsumers(ctx, q.work); err != nil {
		return err
	}
	if err := q.resetWorkConsumers(ctx, q.cbs); err != nil {
		return err
	}
	return q.startCallbacks(ctx)
}

// resetWorkConsumers deletes a work-queue stream's consumers left by the
// previous process (the invocations', the callbacks'). Only this process consumes the embedded stream, so everything they
// had delivered and not acknowledged was orphaned by a crash; a work-queue
// stream keeps unacknowledged messages when a consumer goes, so the fresh
// consumers SetFunctions creates deliver them at once instead of after the
// ack wait (which is the function's timeout plus a margin).
func (q *Queue) resetWorkConsumers(ctx context.Context, stream jetstream.Stream) error {
	names := stream.ConsumerNames(ctx)
	var list []string
	for n := range names.Name() {
		list = append(list, n)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("queue: list consumers: %w", err)
	}
	for _, n := range list {
		if err := stream.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("queue: delete consumer %s: %w", n, err)
		}
	}
	return nil
}

// JetStream is the embedded server's JetStream, for the parts that keep
// their own streams or buckets in it (the environments' key-value stores).
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Close stops the workers, the triggers and the cron loop, waits for
// deliveries in flight (their invocations are cancelled and left pending, not
// counted as attempts) and stops the embedded server. It is safe after a
// failed Open's half start and safe to call twice.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	// Cancelling first cuts a SetFunctions in progress short; holding
	// setMu then means no consumer starts after the others stopped.
	q.cancel()
	q.setMu.Lock()
	q.mu.Lock()
	states := q.fns
	q.fns = map[fnKey]*fnState{}
	q.mu.Unlock()
	for _, st := range states {
		st.stop()
	}
	if q.cbCons != nil {
		q.cbCons.Stop()
	}
	q.setMu.Unlock()
	q.wg.Wait()
	q.shutdown()
	return nil
}

func (q *Queue) shutdown() {
	if q.cancel != nil {
		q.cancel()
	}
	if q.nc != nil {
		q.nc.Close()
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// track registers a goroutine unless the queue is closing; the caller must
// call q.wg.Done when it returns true.
func (q *Queue) track() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.wg.Add(1)
	return true
}

// natsLogger sends the embedded server's log to the queue's logger. Notices
// (the startup banner, mostly) go to debug: they are not the operator's
// business.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Tracef(format string, v ...any) {}
