package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
)

// Attribute keys Berth's spans carry. The store reads the first two to say
// which workload a trace belongs to; the others follow OpenTelemetry's HTTP
// semantic conventions where one exists.
const (
	AttrWorkload    = "berth.workload"
	AttrEnvironment = "berth.environment"
	AttrKind        = "berth.kind"
	AttrEndpoint    = "berth.endpoint.id"
	AttrRevision    = "berth.revision"
	AttrAttempt     = "berth.attempt"
	AttrWaitMS      = "berth.cold_start.wait_ms"
	AttrOutcome     = "berth.cold_start.outcome"
	// AttrKeep on a span at its start records it whatever the sampling
	// ratio, its value saying why ("error", "cold_start"): Berth's
	// sampler honours it (see New).
	AttrKeep = "berth.trace.kept"
)

// Defaults for Config's zero values.
const (
	DefaultServiceName = "berth"
	DefaultStoreSize   = 1000
	// DefaultSampleRatio is the share of new traces recorded when none is
	// configured. Errors and cold starts are recorded whatever it is.
	DefaultSampleRatio = 0.01
	// spansPerTrace sizes the span bound from the trace bound: a request
	// through two hops with a cold start is about five spans.
	spansPerTrace = 10
)

// Config configures a Tracing.
type Config struct {
	// ServiceName is the service.name resource attribute (default "berth").
	ServiceName string
	// OTLPEndpoint is an OTLP/HTTP collector: "http://host:4318" (the
	// path /v1/traces is added when none is given), "https://…", a full
	// URL with its own path, or "host:port" (plain HTTP). Empty: no export.
	OTLPEndpoint string
	// SampleRatio is the share of new traces recorded, in (0, 1]; 0 means
	// DefaultSampleRatio. A trace continued from an incoming traceparent
	// follows the caller's sampling decision. A span started with AttrKeep
	// is recorded regardless.
	SampleRatio float64
	// StoreSize bounds the in-memory store: this many traces (default
	// 1000) and ten times as many spans, whichever is reached first.
	StoreSize int
	Logger    *slog.Logger
	// Now is the store's clock for "how old"; spans carry their own times.
	Now func() time.Time
}

// Tracing is the process's tracer provider with its store and exporter.
type Tracing struct {
	ratio    float64
	provider *sdktrace.TracerProvider
	store    *Store
	log      *slog.Logger
}

// New builds the provider. It connects to nothing yet: the exporter sends
// in the background and a collector that is down only costs dropped spans
// (logged), never a failed request.
func New(cfg Config) (*Tracing, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = DefaultServiceName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, v1.FieldError("sampleRatio", "must be between 0 and 1, got %v", cfg.SampleRatio)
	}
	if cfg.SampleRatio == 0 {
		cfg.SampleRatio = DefaultSampleRatio
	}
	if cfg.StoreSize < 0 {
		return nil, v1.FieldError("storeSize", "must not be negative, got %d", cfg.StoreSize)
	}
	if cfg.StoreSize == 0 {
		cfg.StoreSize = DefaultStoreSize
	}
	store := NewStore(cfg.StoreSize, cfg.StoreSize*spansPerTrace)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(keepSampler{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))}),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))),
		sdktrace.WithSpanProcessor(store),
	}
	if cfg.OTLPEndpoint != "" {
		u, err := otlpURL(cfg.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u),
			otlptracehttp.WithTimeout(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("OTLP exporter for %s: %w", u, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		cfg.Logger.Info("exporting traces", "endpoint", u, "sampleRatio", cfg.SampleRatio)
	}
	return &Tracing{ratio: cfg.SampleRatio, provider: sdktrace.NewTracerProvider(opts...), store: store, log: cfg.Logger}, nil
}

// keepSampler is parent-based ratio sampling, except that a span started
// with the AttrKeep attribute is always recorded: the gateway starts one
// for a request that failed or waited for a cold start after the ratio
// skipped it.
type keepSampler struct{ base sdktrace.Sampler }

func (s keepSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, a := range p.Attributes {
		if a.Key == AttrKeep {
			return sdktrace.SamplingResult{
				Decision:   sdktrace.RecordAndSample,
				Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
			}
		}
	}
	return s.base.ShouldSample(p)
}

func (s keepSampler) Description() string {
	return "KeepOrElse{" + s.base.Description() + "}"
}

// otlpURL turns the configured endpoint into the URL spans are POSTed to.
func otlpURL(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", v1.FieldError("otlpEndpoint", "%q is not an http(s) URL or host:port", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// TracerProvider is what the gateway, the activator and the workflow engine
// take.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// SampleRatio is the share of new traces recorded (the configured ratio,
// or the default), for a caller that decides before asking the provider.
func (t *Tracing) SampleRatio() float64 { return t.ratio }

// Propagator is W3C trace context (traceparent, tracestate): what Berth
// reads from requests and passes to workloads.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Store is the in-memory trace store.
func (t *Tracing) Store() *Store { return t.store }

// Traces lists recent traces, newest first.
func (t *Tracing) Traces(f Filter) []v1.TraceSummary { return t.store.Traces(f) }

// Trace returns one trace's spans.
func (t *Tracing) Trace(id string) (v1.Trace, error) { return t.store.Trace(id) }

// Shutdown ends spans' export: queued spans are sent until ctx ends.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}
