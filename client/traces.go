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

// Traces lists the server's recent traces, newest first.
func (c *Client) Traces(ctx context.Context, q TraceQuery) ([]v1.TraceSummary, error) {
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
	var l v1.TraceList
	if err := c.do(ctx, http.MethodGet, "/api/v1/traces", v, "", nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Trace returns one trace by its 32-hex-digit id.
func (c *Client) Trace(ctx context.Context, id string) (*v1.Trace, error) {
	if id == "" {
		return nil, v1.FieldError("id", "must not be empty")
	}
	var t v1.Trace
	if err := c.do(ctx, http.MethodGet, "/api/v1/traces/"+url.PathEscape(id), nil, "", nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
