package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// TraceQuery narrows Traces. Zero fields do not filter.
type TraceQuery struct {
	// Workload keeps traces that passed through this Service or Function.
	Workload    string
	Environment string
	MinDuration time.Duration
	ErrorsOnly  bool
	// Limit caps the answer; the server's default is 100.
	Limit int
}

// TraceSummary is one trace in the server's trace store.
type TraceSummary struct {
	TraceID string `json:"traceId"`
	// Root is the name of the trace's first span ("gateway web.shop").
	Root        string        `json:"root"`
	Workload    string        `json:"workload,omitempty"`
	Environment string        `json:"environment,omitempty"`
	Start       time.Time     `json:"start"`
	Duration    time.Duration `json:"durationNs"`
	Spans       int           `json:"spans"`
	// Error reports a span of the trace that failed.
	Error bool `json:"error"`
}

// Trace is every span the server kept of one trace, in start order.
type Trace struct {
	TraceID string `json:"traceId"`
	Spans   []Span `json:"spans"`
}

// Span is one timed step of a trace.
type Span struct {
	SpanID string `json:"spanId"`
	// ParentID is "" for a root span; it may name a span outside the
	// trace store (the caller's, when the request came with traceparent).
	ParentID   string            `json:"parentId,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Status     string            `json:"status"` // unset, ok, error
	Error      string            `json:"error,omitempty"`
}

// Duration is how long the span took.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Traces lists the server's recent traces, newest first.
func (c *Client) Traces(ctx context.Context, q TraceQuery) ([]TraceSummary, error) {
	v := url.Values{}
	if q.Workload != "" {
		v.Set("workload", q.Workload)
	}
	if q.Environment != "" {
		v.Set("environment", q.Environment)
	}
	if q.MinDuration > 0 {
		v.Set("minDuration", q.MinDuration.String())
	}
	if q.ErrorsOnly {
		v.Set("errors", "1")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var l struct {
		Items []TraceSummary `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/traces", v, "", nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Trace returns one trace by its 32-hex-digit id.
func (c *Client) Trace(ctx context.Context, id string) (*Trace, error) {
	if id == "" {
		return nil, v1.FieldError("id", "must not be empty")
	}
	var t Trace
	if err := c.do(ctx, http.MethodGet, "/api/v1/traces/"+url.PathEscape(id), nil, "", nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
