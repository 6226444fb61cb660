package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

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

// startServerSpan starts (or continues, from the request's traceparent)
// the span of one request through the gateway. It returns the request to
// serve, carrying the span, a writer that notes the status, and the end
// function. Only called when tracing is on.
func (g *Gateway) startServerSpan(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, func()) {
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	name := "gateway"
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		attribute.String("http.request.method", r.Method),
		attribute.String("server.address", r.Host),
		attribute.String("url.path", r.URL.Path),
	)
	// Routing is repeated here (a map lookup) so the span has its name
	// and target from the start, without reaching into ServeHTTP.
	if rt, _ := g.route(g.table.Load(), r); rt != nil {
		name = "gateway " + rt.name + "." + rt.env
		attrs = append(attrs,
			attribute.String(tracing.AttrWorkload, rt.name),
			attribute.String(tracing.AttrEnvironment, rt.env),
			attribute.String(tracing.AttrKind, rt.kind),
		)
		if rt.path != "" && !g.hostRouted(r) {
			attrs = append(attrs, attribute.String("http.route", rt.path))
		}
	}
	ctx, span := g.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	sw := &statusWriter{ResponseWriter: w}
	return sw, r.WithContext(ctx), func() {
		status := sw.status
		if status == 0 {
			// Nothing written: the handler panicked (an aborted response)
			// or the client went away before an answer.
			span.SetStatus(codes.Error, "no response")
		} else {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, strconv.Itoa(status)+" "+http.StatusText(status))
			}
		}
		span.End()
	}
}

// hostRouted reports a request addressed as NAME.ENV under the domain.
func (g *Gateway) hostRouted(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	_, ok := cutSuffixFold(host, g.suffix)
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
func (g *Gateway) startUpstreamSpan(ctx context.Context, out *http.Request, c *call, e *endpoint, attempt int) trace.Span {
	// out shares its header map with the other attempts of this request;
	// each attempt overwrites traceparent with its own span.
	ctx, span := g.tracer.Start(ctx, "upstream "+c.route.name+"."+c.route.env,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String(tracing.AttrWorkload, c.route.name),
			attribute.String(tracing.AttrEnvironment, c.route.env),
			attribute.String(tracing.AttrEndpoint, e.id),
			attribute.String("network.peer.address", e.address),
			attribute.Int64(tracing.AttrRevision, e.revision),
			attribute.Int(tracing.AttrAttempt, attempt),
		))
	propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	return span
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

// statusWriter notes the status the gateway answered. Unwrap lets
// ReverseProxy's ResponseController reach Flush and Hijack (upgrades).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers (103 Early Hints) come before the real one.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is for callers that type-assert instead of using a
// ResponseController.
// ReverseProxy hijacks for a protocol switch and writes the 101 itself.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}
