package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
)

// DefaultScrapeTimeout bounds the reads a scrape makes of the runtime and
// the queue; what does not answer in time is left out of that scrape.
const DefaultScrapeTimeout = 2 * time.Second

// Gateway is what the metrics read of the gateway at scrape time.
type Gateway interface {
	// Stats lists the targets the gateway has counters for; the entry
	// with an empty Environment counts unrouted requests.
	Stats() []gateway.TargetStats
	// Load is the requests in the gateway for a target now, held for a
	// cold start or proxied.
	Load(env, name string) (inFlight int, arrivals int64)
}

// ColdStarts is the activator's view of a function's cold starts.
type ColdStarts interface {
	Stats(env, name string) (held int, coldStarts int64, last *v1.ColdStart)
}

// Queue is the async queue's depth per function.
type Queue interface {
	Depth(env, fn string) int
}

// Workflows is what the workflow engine would expose for metrics. It is
// declared here, by its user; the engine satisfies it by having the method.
type Workflows interface {
	// WorkflowCounts returns one entry per workflow the engine has seen
	// since it started.
	WorkflowCounts() []WorkflowCount
}

// WorkflowCount is one workflow's executions and state transitions.
type WorkflowCount struct {
	Environment, Workflow string
	// Running is the executions not finished now.
	Running int
	// Finished counts executions by final status (Succeeded, Failed,
	// TimedOut, Aborted) since the engine started.
	Finished map[string]int64
	// Transitions counts states entered since the engine started.
	Transitions int64
}

// Config is what Metrics reads. Only Store is required; a part left nil
// leaves its metrics out.
type Config struct {
	Store   store.Store
	Gateway Gateway
	// Driver reads instance CPU and memory; an instance's container ID is
	// ENVIRONMENT + "." + INSTANCE.
	Driver     runtime.StatsReader
	Queue      Queue
	ColdStarts ColdStarts
	Workflows  Workflows
	Logger     *slog.Logger
	// ScrapeTimeout bounds the runtime and queue reads of one scrape
	// (default DefaultScrapeTimeout).
	ScrapeTimeout time.Duration
}

// Metrics owns the registry and the counters fed on the request path.
type Metrics struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	coldDuration *prometheus.HistogramVec
	async        *prometheus.CounterVec

	// coldHooked is set once ObserveColdStart is called: the histogram
	// then comes from the hook and scrapes stop sampling the activator's
	// last cold start, which would count each one twice.
	coldHooked atomic.Bool
	coldMu     sync.Mutex
	coldSeen   map[string]time.Time // env/name → At of the last sampled cold start
}

// Buckets of the request latency: from a cached answer to the gateway's
// default timeout.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Buckets of a cold start: from a warm standby to a slow image pull.
var coldBuckets = []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60}

// New builds the metrics and registers them; it starts nothing.
func New(cfg Config) *Metrics {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = DefaultScrapeTimeout
	}
	m := &Metrics{
		cfg:      cfg,
		log:      cfg.Logger,
		reg:      prometheus.NewRegistry(),
		coldSeen: map[string]time.Time{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_requests_total",
			Help: "Requests the gateway routed to a workload, by the status it answered (499: the client went away) and the revision of the instance that answered (empty when none did).",
		}, []string{"environment", "workload", "kind", "revision", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_request_duration_seconds",
			Help:    "Time from routing a request to the end of its answer, cold starts included.",
			Buckets: latencyBuckets,
		}, []string{"environment", "workload"}),
		coldDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cold_start_duration_seconds",
			Help:    "Time a request waited for a function at zero to get a ready instance.",
			Buckets: coldBuckets,
		}, []string{"environment", "function"}),
		async: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_async_invocations_total",
			Help: "Async invocations finished, by outcome (succeeded, failed).",
		}, []string{"environment", "function", "outcome"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.coldDuration, m.async,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observer is what the gateway calls per request (gateway.Config.Observer).
func (m *Metrics) Observer() gateway.Observer { return m }

var _ gateway.Observer = (*Metrics)(nil)

// Observe counts one answered request; the gateway calls it.
func (m *Metrics) Observe(env, name, kind string, revision int64, status int, d time.Duration) {
	rev := ""
	if revision > 0 {
		rev = strconv.FormatInt(revision, 10)
	}
	m.requests.WithLabelValues(env, name, kind, rev, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(env, name).Observe(d.Seconds())
}

// ObserveColdStart records one cold start's duration. Without it the
// histogram samples the activator's last cold start at each scrape, which
// misses all but one of the cold starts of a function between two scrapes.
func (m *Metrics) ObserveColdStart(env, function string, d time.Duration) {
	m.coldHooked.Store(true)
	m.coldDuration.WithLabelValues(env, function).Observe(d.Seconds())
}

// Outcome values of AsyncOutcome.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// AsyncOutcome counts one finished async invocation; the queue calls it
// when an invocation reaches Succeeded or Failed.
func (m *Metrics) AsyncOutcome(env, function, outcome string) {
	m.async.WithLabelValues(env, function, outcome).Inc()
}

// Register adds another part's collector to the registry served.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the registry in the Prometheus text format (or protobuf,
// when the scraper asks). The store, runtime and queue are read during the
// request, bounded by its context and ScrapeTimeout.
func (m *Metrics) Handler() http.Handler {
	opts := promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := m.scrape(r.Context())
		g := prometheus.Gatherers{m.reg, snap}
		promhttp.HandlerFor(g, opts).ServeHTTP(w, r)
	})
}

// SetGateway plugs in the gateway after construction: the gateway is built
// with Observer() as its observer, so it comes after the Metrics. Call it
// before serving.
func (m *Metrics) SetGateway(g Gateway) { m.cfg.Gateway = g }

// SetColdStarts plugs in the activator, which is built after the gateway.
// Call it before serving.
func (m *Metrics) SetColdStarts(c ColdStarts) { m.cfg.ColdStarts = c }

// SetWorkflows plugs in the workflow engine; call it before serving.
func (m *Metrics) SetWorkflows(w Workflows) { m.cfg.Workflows = w }

// SetQueue plugs in the queue (built after the gateway it delivers
// through); call it before serving.
func (m *Metrics) SetQueue(q Queue) { m.cfg.Queue = q }
