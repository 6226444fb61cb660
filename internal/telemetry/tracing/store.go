package tracing

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
)

// The store keeps and serves the API's types: v1.Span, v1.Trace and
// v1.TraceSummary.

// Filter narrows Traces. Zero fields do not filter.
type Filter struct {
	// Name keeps traces with a span of this workload (the trace of a call
	// from A to B is found under both).
	Name        string
	Environment string
	MinDuration time.Duration
	ErrorsOnly  bool
	// Limit caps the answer (default 100), newest first.
	Limit int
}

// DefaultLimit is Filter.Limit's default.
const DefaultLimit = 100

// Store keeps the most recent traces within a trace and a span bound,
// evicting whole traces oldest first. It is a SpanProcessor: the provider
// hands it every sampled span as it ends.
type Store struct {
	maxTraces, maxSpans int

	mu     sync.Mutex
	traces map[trace.TraceID]*stored
	// order is a ring of trace ids in first-seen order; head is the oldest.
	order []trace.TraceID
	head  int
	spans int
}

type stored struct {
	spans []v1.Span
}

var _ sdktrace.SpanProcessor = (*Store)(nil)

// NewStore returns a store bounded to maxTraces traces and maxSpans spans.
func NewStore(maxTraces, maxSpans int) *Store {
	maxTraces, maxSpans = max(maxTraces, 1), max(maxSpans, 1)
	return &Store{maxTraces: maxTraces, maxSpans: maxSpans, traces: make(map[trace.TraceID]*stored)}
}

// OnStart does nothing: only ended spans are stored.
func (s *Store) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd copies the span into the store.
func (s *Store) OnEnd(ro sdktrace.ReadOnlySpan) {
	if !ro.SpanContext().IsSampled() {
		return
	}
	sp := toSpan(ro)
	id := ro.SpanContext().TraceID()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[id]
	if t == nil {
		for len(s.traces) >= s.maxTraces {
			s.evictOldest()
		}
		t = &stored{}
		s.traces[id] = t
		s.order = append(s.order, id)
	}
	if len(t.spans) >= s.maxSpans {
		// One runaway trace must not take the whole store: past the bound
		// its further spans are dropped, older traces are kept.
		return
	}
	for s.spans >= s.maxSpans {
		if !s.evictOldestExcept(id) {
			return
		}
	}
	t.spans = append(t.spans, sp)
	s.spans++
}

// evictOldest removes the oldest trace.
func (s *Store) evictOldest() { s.evictOldestExcept(trace.TraceID{}) }

// evictOldestExcept removes the oldest trace other than keep; it reports
// false when keep is the only trace left.
func (s *Store) evictOldestExcept(keep trace.TraceID) bool {
	for i := s.head; i < len(s.order); i++ {
		id := s.order[i]
		if id == keep {
			continue
		}
		s.spans -= len(s.traces[id].spans)
		delete(s.traces, id)
		// Close the gap so the order slice stays first-seen.
		copy(s.order[s.head+1:i+1], s.order[s.head:i])
		s.head++
		s.compact()
		return true
	}
	return false
}

// compact drops the evicted prefix of order once it is as long as the rest,
// so order stays O(maxTraces) without shifting on every eviction.
func (s *Store) compact() {
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// Shutdown and ForceFlush have nothing to flush: the store is in memory.
func (s *Store) Shutdown(context.Context) error   { return nil }
func (s *Store) ForceFlush(context.Context) error { return nil }

// Len reports the traces and spans held, for tests and metrics.
func (s *Store) Len() (traces, spans int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.traces), s.spans
}

// Traces lists the kept traces that match f, newest first.
func (s *Store) Traces(f Filter) []v1.TraceSummary {
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	s.mu.Lock()
	sums := make([]v1.TraceSummary, 0, len(s.traces))
	for id, t := range s.traces {
		if f.Name != "" || f.Environment != "" {
			if !matches(t.spans, f.Name, f.Environment) {
				continue
			}
		}
		sum := summarize(id, t.spans)
		if sum.Duration < f.MinDuration || (f.ErrorsOnly && !sum.Error) {
			continue
		}
		sums = append(sums, sum)
	}
	s.mu.Unlock()
	slices.SortFunc(sums, func(a, b v1.TraceSummary) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(a.TraceID, b.TraceID)
	})
	if len(sums) > f.Limit {
		sums = sums[:f.Limit]
	}
	return sums
}

// Trace returns the spans of the trace with the given 32-hex-digit id.
func (s *Store) Trace(idHex string) (v1.Trace, error) {
	id, err := trace.TraceIDFromHex(strings.ToLower(idHex))
	if err != nil {
		return v1.Trace{}, v1.FieldError("id", "%q is not a trace id (32 hex digits, not all zero)", idHex)
	}
	s.mu.Lock()
	t := s.traces[id]
	var spans []v1.Span
	if t != nil {
		spans = slices.Clone(t.spans)
	}
	s.mu.Unlock()
	if t == nil {
		return v1.Trace{}, v1.NotFound("trace %s not found; it may have been evicted from the store or never sampled", idHex)
	}
	slices.SortStableFunc(spans, func(a, b v1.Span) int { return a.Start.Compare(b.Start) })
	return v1.Trace{TraceID: id.String(), Spans: spans}, nil
}

func matches(spans []v1.Span, name, env string) bool {
	for _, sp := range spans {
		if (name == "" || sp.Attributes[AttrWorkload] == name) && (env == "" || sp.Attributes[AttrEnvironment] == env) {
			return true
		}
	}
	return false
}

// summarize describes a trace by its root: the earliest span whose parent
// is not in the store (the caller's own span when the trace came in with a
// traceparent), and by the extent of all its spans.
func summarize(id trace.TraceID, spans []v1.Span) v1.TraceSummary {
	sum := v1.TraceSummary{TraceID: id.String(), Spans: len(spans)}
	ids := make(map[string]bool, len(spans))
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	var root *v1.Span
	var end time.Time
	for i := range spans {
		sp := &spans[i]
		if sum.Start.IsZero() || sp.Start.Before(sum.Start) {
			sum.Start = sp.Start
		}
		if sp.End.After(end) {
			end = sp.End
		}
		if sp.Status == "error" {
			sum.Error = true
		}
		if !ids[sp.ParentID] && (root == nil || sp.Start.Before(root.Start)) {
			root = sp
		}
	}
	sum.Duration = end.Sub(sum.Start)
	if root != nil {
		sum.Root = root.Name
		sum.Workload = root.Attributes[AttrWorkload]
		sum.Environment = root.Attributes[AttrEnvironment]
	}
	return sum
}

func toSpan(ro sdktrace.ReadOnlySpan) v1.Span {
	sp := v1.Span{
		SpanID: ro.SpanContext().SpanID().String(),
		Name:   ro.Name(),
		Kind:   ro.SpanKind().String(),
		Start:  ro.StartTime(),
		End:    ro.EndTime(),
		Status: "unset",
	}
	if p := ro.Parent(); p.IsValid() {
		sp.ParentID = p.SpanID().String()
	}
	if attrs := ro.Attributes(); len(attrs) > 0 {
		sp.Attributes = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			sp.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
	}
	switch st := ro.Status(); st.Code {
	case codes.Ok:
		sp.Status = "ok"
	case codes.Error:
		sp.Status = "error"
		sp.Error = st.Description
	}
	return sp
}
