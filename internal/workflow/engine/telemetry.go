package engine

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/metrics"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/workflow/asl"
)

// counts are what the engine tells metrics: per workflow, the executions
// running now, those finished since start by status, and states entered.
// Transitions count what the interpreter entered, so an execution replayed
// after a crash counts the states it re-entered again.
type counts struct {
	mu sync.Mutex
	by map[[2]string]*metrics.WorkflowCount
}

func (c *counts) get(env, wf string) *metrics.WorkflowCount {
	if c.by == nil {
		c.by = map[[2]string]*metrics.WorkflowCount{}
	}
	k := [2]string{env, wf}
	w := c.by[k]
	if w == nil {
		w = &metrics.WorkflowCount{Environment: env, Workflow: wf, Finished: map[string]int64{}}
		c.by[k] = w
	}
	return w
}

func (c *counts) started(env, wf string) {
	c.mu.Lock()
	c.get(env, wf).Running++
	c.mu.Unlock()
}

func (c *counts) finished(env, wf, status string) {
	c.mu.Lock()
	w := c.get(env, wf)
	w.Running--
	w.Finished[status]++
	c.mu.Unlock()
}

// left drops an execution this engine stops running without it finishing
// (the server shutting down): still RUNNING, resumed by the next engine.
func (c *counts) left(env, wf string) {
	c.mu.Lock()
	c.get(env, wf).Running--
	c.mu.Unlock()
}

func (c *counts) entered(env, wf string, ev asl.Event) {
	if !strings.HasSuffix(ev.Type, "StateEntered") {
		return
	}
	c.mu.Lock()
	c.get(env, wf).Transitions++
	c.mu.Unlock()
}

// WorkflowCounts implements metrics.Workflows.
func (e *Engine) WorkflowCounts() []metrics.WorkflowCount {
	e.counts.mu.Lock()
	defer e.counts.mu.Unlock()
	out := make([]metrics.WorkflowCount, 0, len(e.counts.by))
	for _, w := range e.counts.by {
		c := *w
		c.Finished = make(map[string]int64, len(w.Finished))
		for k, v := range w.Finished {
			c.Finished[k] = v
		}
		out = append(out, c)
	}
	return out
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
