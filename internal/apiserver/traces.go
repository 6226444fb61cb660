package apiserver

import (
	"net/http"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/tracing"
)

// TraceSource is the built-in trace store the traces endpoints read.
type TraceSource interface {
	Traces(tracing.Filter) []v1.TraceSummary
	Trace(id string) (v1.Trace, error)
}

// maxTraceLimit bounds ?limit=: the store holds about a thousand traces.
const maxTraceLimit = 10000

// listTraces answers GET /api/v1/traces?workload=&environment=&minDuration=&errors=1&limit=.
func (s *Server) listTraces(w http.ResponseWriter, r *http.Request) error {
	if s.traces == nil {
		return v1.Unavailable("tracing is not enabled on this server")
	}
	q := r.URL.Query()
	f := tracing.Filter{Name: q.Get("workload"), Environment: q.Get("environment")}
	if v := q.Get("minDuration"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return v1.FieldError("minDuration", "%q is not a duration like 100ms or 2s", v)
		}
		f.MinDuration = d
	}
	if v := q.Get("errors"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return v1.FieldError("errors", "%q is not 1, 0, true or false", v)
		}
		f.ErrorsOnly = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTraceLimit {
			return v1.FieldError("limit", "%q is not a number from 1 to %d", v, maxTraceLimit)
		}
		f.Limit = n
	}
	items := s.traces.Traces(f)
	if items == nil {
		items = []v1.TraceSummary{}
	}
	writeJSON(w, http.StatusOK, v1.TraceList{APIVersion: v1.APIVersion, Kind: "TraceList", Items: items})
	return nil
}

// getTrace answers GET /api/v1/traces/{id}: every kept span of the trace.
func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) error {
	if s.traces == nil {
		return v1.Unavailable("tracing is not enabled on this server")
	}
	t, err := s.traces.Trace(r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
