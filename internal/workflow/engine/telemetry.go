package engine

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/workflow/asl"
)

// Observer is told what executions do, for metrics; the engine keeps no
// counts of its own. It is declared here, by its user, so that the engine
// depends on no metrics library: the composition root passes a collector
// that has these methods. Calls are made on the executions' goroutines and
// must be quick.
type Observer interface {
	// ExecutionStarted: an execution of env/workflow runs here now (a new
	// one, or one resumed after a restart).
	ExecutionStarted(env, workflow string)
	// ExecutionFinished: it reached its final status (Succeeded, Failed,
	// TimedOut, Aborted).
	ExecutionFinished(env, workflow, status string)
	// ExecutionLeft: it stopped running here without finishing (the
	// server shutting down); the next engine resumes it.
	ExecutionLeft(env, workflow string)
	// StateEntered: it entered a state. An execution replayed after a
	// crash enters again the states it had entered before.
	StateEntered(env, workflow string)
}

// noObserver is the Observer of an engine built without one.
type noObserver struct{}

func (noObserver) ExecutionStarted(env, workflow string)          {}
func (noObserver) ExecutionFinished(env, workflow, status string) {}
func (noObserver) ExecutionLeft(env, workflow string)             {}
func (noObserver) StateEntered(env, workflow string)              {}

// entered tells the observer about the events that enter a state.
func (e *Engine) entered(env, workflow string, ev asl.Event) {
	if strings.HasSuffix(ev.Type, "StateEntered") {
		e.obs.StateEntered(env, workflow)
	}
}

func (e *Engine) tracer() trace.Tracer {
	if e.tp == nil {
		return noop.NewTracerProvider().Tracer("")
	}
	return e.tp.Tracer("berth/workflow")
}

// startExecutionSpan opens the span of one attempt of an execution.
func (e *Engine) startExecutionSpan(ctx context.Context, rec record) (context.Context, trace.Span) {
	return e.tracer().Start(ctx, "execution "+rec.Workflow, trace.WithAttributes(
		attribute.String(tracing.AttrWorkload, rec.Workflow),
		attribute.String(tracing.AttrEnvironment, rec.Environment),
		attribute.String(tracing.AttrKind, v1.KindWorkflow),
		attribute.String("berth.execution", rec.ID),
	))
}

// startTaskSpan opens the span of one task call and puts its context in
// the call's traceparent, so the function or service joins the trace.
func (e *Engine) startTaskSpan(ctx context.Context, rec record, tc asl.TaskCall, header http.Header) (context.Context, trace.Span) {
	ctx, span := e.tracer().Start(ctx, "task "+tc.State, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String(tracing.AttrWorkload, rec.Workflow),
		attribute.String(tracing.AttrEnvironment, rec.Environment),
		attribute.String("berth.resource", tc.Resource),
		attribute.Int(tracing.AttrAttempt, tc.Attempt),
	))
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(header))
	return ctx, span
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
