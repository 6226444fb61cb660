package gateway

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"berth.dev/berth/internal/telemetry/tracing"
)

// tracerName is the instrumentation scope of the gateway's spans.
const tracerName = "berth.dev/berth/internal/gateway"

// propagator is W3C trace context. It is stateless, so one value serves
// every request; it is not taken from otel's globals, which a library
// must not depend on.
var propagator = propagation.TraceContext{}

// serverSpan is the span of one request through the gateway. Sampling is
// decided when it starts (parent-based, a ratio of new traces); a request
// the sampler skipped still carries a trace context, so every hop after it
// agrees, and is recorded after all if it fails or waits for a cold start
// (keep): those are the requests someone looks for.
//
// With Config.SampleRatio set the gateway decides itself, and a request
// it skips costs no span at all: a trace context of its own (sc) is all it
// passes on. Otherwise the provider's sampler decides on every request.
type serverSpan struct {
	g      *Gateway
	span   trace.Span // nil: skipped by the gateway's own sampling
	sc     trace.SpanContext
	parent context.Context // the caller's span, if any
	start  time.Time
	r      *http.Request
	rt     *route
}

func (sp *serverSpan) recording() bool { return sp.span != nil && sp.span.IsRecording() }

// startServerSpan starts (or continues, from the request's traceparent)
// the span of one request and returns the context carrying it. Only
// called when tracing is on.
func (g *Gateway) startServerSpan(ctx context.Context, sp *serverSpan, r *http.Request, rt *route, start time.Time) context.Context {
	if _, ok := r.Header["Traceparent"]; ok {
		ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	*sp = serverSpan{g: g, parent: ctx, start: start, r: r, rt: rt}
	opts := serverOpts
	if ratio := g.cfg.SampleRatio; ratio > 0 && ratio < 1 {
		psc := trace.SpanContextFromContext(ctx)
		sampled := psc.IsSampled() || (!psc.IsValid() && rand.Float64() < ratio)
		if !sampled {
			tid := psc.TraceID()
			if !psc.IsValid() {
				tid = newTraceID()
			}
			sp.sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID(), TraceState: psc.TraceState()})
			return ctx
		}
		if !psc.IsValid() {
			// Chosen here: the provider's own ratio must not choose again.
			opts = keptServerOpts
		}
	}
	ctx, sp.span = g.tracer.Start(ctx, sp.name(), opts...)
	sp.sc = sp.span.SpanContext()
	if sp.span.IsRecording() {
		sp.span.SetAttributes(sp.attributes("")...)
	}
	return ctx
}

// serverKind is built once: an option is an allocation.
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// Span options, built once: an option is an allocation.
var (
	serverOpts     = []trace.SpanStartOption{serverKind}
	keptServerOpts = []trace.SpanStartOption{serverKind, trace.WithAttributes(attribute.String(tracing.AttrKeep, "sampled"))}
)

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for id == (trace.TraceID{}) {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for id == (trace.SpanID{}) {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

func (sp *serverSpan) name() string {
	if sp.rt == nil {
		return "gateway"
	}
	return sp.rt.spanName
}

func (sp *serverSpan) attributes(kept string) []attribute.KeyValue {
	r, rt := sp.r, sp.rt
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		attribute.String("http.request.method", r.Method),
		attribute.String("server.address", r.Host),
		attribute.String("url.path", r.URL.Path),
	)
	if rt != nil {
		attrs = append(attrs,
			attribute.String(tracing.AttrWorkload, rt.name),
			attribute.String(tracing.AttrEnvironment, rt.env),
			attribute.String(tracing.AttrKind, rt.kind),
		)
		if rt.path != "" && !sp.g.hostRouted(r) {
			attrs = append(attrs, attribute.String("http.route", rt.path))
		}
	}
	if kept != "" {
		attrs = append(attrs, attribute.String(tracing.AttrKeep, kept))
	}
	return attrs
}

// keep records the request whatever the sampler decided (a cold start),
// from its start on, and returns ctx carrying the recorded span so that
// what follows (the activator's wait, the upstream) is recorded as its
// children.
func (sp *serverSpan) keep(ctx context.Context, why string) context.Context {
	if sp.recording() {
		return ctx
	}
	sp.span = sp.startKept(why)
	return trace.ContextWithSpan(sp.parent, sp.span)
}

func (sp *serverSpan) startKept(why string) trace.Span {
	_, s := sp.g.tracer.Start(sp.parent, sp.name(), serverKind,
		trace.WithTimestamp(sp.start), trace.WithAttributes(sp.attributes(why)...))
	return s
}

// end ends the span with the status answered (0: none, the client went
// away or the answer broke off) and the revision of the instance that
// answered (0: none did). An unsampled request that failed is recorded
// now, with its start.
func (sp *serverSpan) end(status int, revision int64, _ error) {
	s := sp.span
	failed := status == 0 || status >= 500
	if !sp.recording() {
		if !failed {
			if s != nil {
				s.End()
			}
			return
		}
		s = sp.startKept("error")
	}
	if status == 0 {
		if revision > 0 {
			s.SetAttributes(attribute.Int64(tracing.AttrRevision, revision))
		}
		s.SetStatus(codes.Error, "no response")
	} else {
		// Which revision answered is what a split or a canary is read
		// by; set in one call with the status, one allocation.
		if revision > 0 {
			s.SetAttributes(attribute.Int("http.response.status_code", status), attribute.Int64(tracing.AttrRevision, revision))
		} else {
			s.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if status >= 500 {
			s.SetStatus(codes.Error, strconv.Itoa(status)+" "+http.StatusText(status))
		}
	}
	s.End()
}

// hostRouted reports a request addressed as NAME.ENV under the domain.
func (g *Gateway) hostRouted(r *http.Request) bool {
	_, ok := cutSuffixFold(strings.TrimSuffix(stripPort(r.Host), "."), g.suffix)
	return ok
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) < len(suffix) {
		return s, false
	}
	for i := 0; i < len(suffix); i++ {
		a, b := s[len(s)-len(suffix)+i], suffix[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if a != b {
			return s, false
		}
	}
	return s[:len(s)-len(suffix)], true
}

// startUpstreamSpan starts the client span of one attempt on endpoint e
// and writes its traceparent into the outgoing request, so the instance
// (and any call it makes back through the gateway) continues the trace.
func (g *Gateway) startUpstreamSpan(ctx context.Context, out http.Header, c *call, e *endpoint, attempt int) trace.Span {
	if c.span != nil && !c.span.recording() {
		// Not sampled: no span, but the trace context goes on with its
		// decision, so the workload and its calls follow it.
		injectTraceparent(out, c.span.sc)
		return nil
	}
	if parent := trace.SpanFromContext(ctx); !parent.IsRecording() {
		injectTraceparent(out, parent.SpanContext())
		return nil
	}
	// out shares its header map with the other attempts of this request;
	// each attempt overwrites traceparent with its own span.
	ctx, span := g.tracer.Start(ctx, "upstream "+c.route.name+"."+c.route.env,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String(tracing.AttrWorkload, c.route.name),
			attribute.String(tracing.AttrEnvironment, c.route.env),
			attribute.String(tracing.AttrEndpoint, e.id),
			attribute.String("network.peer.address", e.address),
			attribute.Int64(tracing.AttrRevision, e.revision.Load()),
			attribute.Int(tracing.AttrAttempt, attempt),
		))
	injectTraceparent(out, span.SpanContext())
	return span
}

// injectTraceparent writes sc as W3C trace context, as
// propagation.TraceContext does, without its allocations.
func injectTraceparent(h http.Header, sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	var b [55]byte
	copy(b[:], "00-")
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	flags := [1]byte{byte(sc.TraceFlags() & trace.FlagsSampled)}
	hex.Encode(b[53:55], flags[:])
	h["Traceparent"] = []string{string(b[:])}
	if ts := sc.TraceState(); ts.Len() > 0 {
		h["Tracestate"] = []string{ts.String()}
	}
}

// endUpstreamSpan ends an attempt's span with its outcome.
// status is the upstream's answer, 0 when err says why there was none.
func endUpstreamSpan(span trace.Span, status int, err error) {
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, fmt.Sprintf("upstream answered %d", status))
		}
	}
	span.End()
}
