package v1

import "time"

// The bodies of API requests and answers that are not resources. The
// server writes them and the client reads them from this one declaration,
// so the two cannot drift apart.

// ImageEntry is one image of GET /api/v1/images: a v1.Image (name, digest,
// size) plus where it is. Registry images are named REPOSITORY:TAG; images
// only on the node keep containerd's name.
type ImageEntry struct {
	Name       string `json:"name"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
	// Registry: stored in the built-in registry; Node: unpacked in the
	// node's containerd (same digest).
	Registry bool `json:"registry"`
	Node     bool `json:"node"`
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	// Name defaults to a generated token-XXXXXX.
	Name         string   `json:"name,omitempty"`
	Environments []string `json:"environments"`
	Role         string   `json:"role"`
}

// TraceList is the answer of GET /api/v1/traces, newest first.
type TraceList struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"` // "TraceList"
	Items      []TraceSummary `json:"items"`
}

// TraceSummary is one trace of the server's trace store, one line of
// `berth traces`.
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

// Trace is every span the server kept of one trace, in start order: the
// answer of GET /api/v1/traces/{id}.
type Trace struct {
	TraceID string `json:"traceId"`
	Spans   []Span `json:"spans"`
}

// Span is one timed step of a trace.
type Span struct {
	SpanID string `json:"spanId"`
	// ParentID is "" for a root span; it may name a span outside the
	// trace store (the caller's, when the request came with traceparent).
	ParentID string    `json:"parentId,omitempty"`
	Name     string    `json:"name"`
	Kind     string    `json:"kind"` // server, client, internal, producer, consumer
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// Attributes are rendered as strings: the store is for reading, and
	// JSON numbers would lose int64 precision anyway.
	Attributes map[string]string `json:"attributes,omitempty"`
	Status     string            `json:"status"` // unset, ok, error
	Error      string            `json:"error,omitempty"`
}

// Duration is how long the span took.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// WatchEvent is one line of GET /api/v1/watch (newline-delimited JSON):
// an object changed. It names the object and carries no value: a watcher
// reads what it needs through the ordinary endpoints, so the stream can
// never show more than those would.
type WatchEvent struct {
	// Type is PUT (created or changed), DELETE, or BOOKMARK: no change, the
	// store's revision now (sent first, and then every WatchBookmarkEvery
	// as a heartbeat); resume from it with ?resourceVersion=.
	Type        string `json:"type"`
	Kind        string `json:"kind,omitempty"`
	Environment string `json:"environment,omitempty"`
	Name        string `json:"name,omitempty"`
	// ResourceVersion is the store revision of the change.
	ResourceVersion uint64 `json:"resourceVersion"`
}

// Watch event types.
const (
	WatchPut      = "PUT"
	WatchDelete   = "DELETE"
	WatchBookmark = "BOOKMARK"
)

// KindExecution names a workflow execution in a WatchEvent: any change of
// the execution or its history. Executions are not objects of the
// resource endpoints; read them under /executions.
const KindExecution = "Execution"

// WhoAmI is the answer of GET /api/v1/whoami: who the request's token is.
type WhoAmI struct {
	Name         string   `json:"name"`
	Role         string   `json:"role"`
	Environments []string `json:"environments"`
}

// DashboardLink is the answer of POST /ui/login-links (a bearer token in
// the request): a one-use login link to the dashboard for that token.
type DashboardLink struct {
	// Path is the link's path and query on the API address.
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}
