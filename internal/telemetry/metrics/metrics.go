package metrics

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"berth.dev/berth/internal/runtime"
)

// DefaultScrapeTimeout bounds the runtime reads of one scrape; what does
// not answer in time is left out of that scrape.
const DefaultScrapeTimeout = 2 * time.Second

// Config is what Metrics reads. Every field is optional; a part left out
// leaves its metrics out.
type Config struct {
	// Inventory returns the workloads and instances the instance gauges
	// count. It is called on every scrape, so it must read memory (the controllers'
	// caches), never list the store.
	Inventory func() Inventory
	// Driver reads instance CPU and memory; an instance's container ID is
	// ENVIRONMENT + "." + INSTANCE.
	Driver runtime.StatsReader
	Logger *slog.Logger
	// ScrapeTimeout bounds the runtime reads of one scrape (default
	// DefaultScrapeTimeout).
	ScrapeTimeout time.Duration
}

// Metrics owns the registry /metrics serves: the Go runtime's and the
// process's metrics, the collectors the composition root registers (one
// per part: the gateway, the activator, the queue, the workflow engine),
// and the instance gauges, computed at each scrape.
type Metrics struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
}

// New builds the registry; it starts nothing.
func New(cfg Config) *Metrics {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = DefaultScrapeTimeout
	}
	m := &Metrics{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds the parts' collectors to the registry served. A second
// collector of the same series is an error: each series has one owner.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves every series, as ServeMetrics with no filter does.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.ServeMetrics(w, r, nil) })
}

// ServeMetrics answers a scrape in the Prometheus text format (or
// protobuf, when the scraper asks) with the series whose environment label
// visible admits; series of no environment (the process's, unrouted
// requests) belong to the platform and go only to a caller of every
// environment, visible nil. Runtime reads are bounded by the request's
// context and ScrapeTimeout.
func (m *Metrics) ServeMetrics(w http.ResponseWriter, r *http.Request, visible func(env string) bool) {
	var g prometheus.Gatherer = prometheus.Gatherers{m.reg, m.scrape(r.Context())}
	if visible != nil {
		g = filtered{g, visible}
	}
	promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}

// filtered keeps the samples whose environment label visible admits.
type filtered struct {
	g       prometheus.Gatherer
	visible func(env string) bool
}

func (f filtered) Gather() ([]*dto.MetricFamily, error) {
	fams, err := f.g.Gather()
	out := fams[:0]
	for _, fam := range fams {
		kept := fam.Metric[:0]
		for _, s := range fam.Metric {
			if env, ok := environmentOf(s); ok && f.visible(env) {
				kept = append(kept, s)
			}
		}
		if len(kept) > 0 {
			fam.Metric = kept
			out = append(out, fam)
		}
	}
	return out, err
}

func environmentOf(s *dto.Metric) (string, bool) {
	for _, l := range s.Label {
		if l.GetName() == "environment" {
			return l.GetValue(), true
		}
	}
	return "", false
}
