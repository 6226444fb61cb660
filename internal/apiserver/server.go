package apiserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// DefaultMaxBodyBytes bounds request bodies other than image imports.
const DefaultMaxBodyBytes = 4 << 20

// MaxImportBytes bounds an image import body.
const MaxImportBytes = 4 << 30

// Config is what the API server is built from.
type Config struct {
	Store store.Store
	// Ready says whether the server can take traffic yet (GET /readyz):
	// nil once it can; a nil Ready is ready whenever it answers.
	Ready func() error
	// Token is the admin bearer token. Empty admits nobody.
	Token string
	// Authorizer replaces the check built from Token when set.
	Authorizer Authorizer
	// Images serves the image endpoints; nil answers them Unavailable.
	Images ImageService
	// Logs reads the logs of workloads' instances: the backend.
	Logs   LogReader
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies (default 4 MiB); image imports
	// are bounded by MaxImportBytes instead.
	MaxBodyBytes int64
	// Invocations runs function invocations and topic publishes; nil
	// answers those endpoints Unavailable.
	Invocations Invocations
	// MaxPayloadBytes bounds invocation and publish bodies (default
	// DefaultMaxPayloadBytes).
	MaxPayloadBytes int64
	// Traces is the built-in trace store; nil answers /api/v1/traces
	// Unavailable.
	Traces TraceSource
	// Executions runs workflow executions; nil answers those endpoints
	// Unavailable.
	Executions Executions
	// Values keeps secrets and config values; nil answers those endpoints
	// Unavailable.
	Values Values
	// Capacity is the node's (HostCapacity): a workload that could never
	// fit on it is refused at apply. Zero skips the check.
	Capacity NodeCapacity
	// Advisor answers the advice endpoints and Converter conversions; nil
	// answers them Unavailable.
	Advisor   Advisor
	Converter Converter
	// Objects, KV and AccessKeys serve the environments' state (buckets,
	// objects, keys) and the key pairs of tokens; nil answers their
	// endpoints Unavailable.
	Objects    ObjectStore
	KV         KVStore
	AccessKeys AccessKeys
}

// Server answers the HTTP API.
type Server struct {
	ready     func() error
	store     store.Store
	auth      Authorizer
	images    ImageService
	logReader LogReader
	log       *slog.Logger
	maxBody   int64
	handler   http.Handler

	invocations Invocations
	maxPayload  int64
	traces      TraceSource
	executions  Executions
	values      Values
	capacity    NodeCapacity
	advisor     Advisor
	converter   Converter
	objects     ObjectStore
	kv          KVStore
	accessKeys  AccessKeys
}

// New builds a Server. It starts nothing: the caller serves Handler().
func New(cfg Config) *Server {
	s := &Server{
		ready:     cfg.Ready,
		store:     cfg.Store,
		auth:      cfg.Authorizer,
		images:    cfg.Images,
		logReader: cfg.Logs,
		log:       cfg.Logger,
		maxBody:   cfg.MaxBodyBytes,

		invocations: cfg.Invocations,
		maxPayload:  cfg.MaxPayloadBytes,
		traces:      cfg.Traces,
		executions:  cfg.Executions,
		values:      cfg.Values,
		capacity:    cfg.Capacity,
		advisor:     cfg.Advisor,
		converter:   cfg.Converter,
		objects:     cfg.Objects,
		kv:          cfg.KV,
		accessKeys:  cfg.AccessKeys,
	}
	if s.auth == nil {
		s.auth = NewTokenAuthorizer(cfg.Token)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.maxPayload <= 0 {
		s.maxPayload = DefaultMaxPayloadBytes
	}
	s.handler = s.accessLog(s.recoverPanics(s.routes()))
	return s
}

// Handler is the whole API, /healthz included.
func (s *Server) Handler() http.Handler { return s.handler }

// handlerFunc answers a request or returns the error to answer instead;
// errors become JSON in one place, writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type methods map[string]handlerFunc

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	// As Kubernetes' /readyz: alive is not yet ready to serve.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.ready != nil {
			if err := s.ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, "not ready: "+err.Error()+"\n")
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	api := func(pattern string, m methods) {
		mux.Handle(pattern, s.authorized(s.dispatch(m)))
	}
	// Patterns carry no method: dispatch answers a wrong method with a
	// JSON 405, which the mux's own plain-text one is not.
	api("/api/v1/environments", methods{http.MethodGet: s.listEnvironments})
	api("/api/v1/environments/{name}", methods{
		http.MethodGet:    s.getEnvironment,
		http.MethodPut:    s.applyEnvironment,
		http.MethodDelete: s.deleteEnvironment,
	})
	api("/api/v1/environments/{env}/{plural}", methods{http.MethodGet: s.listInEnvironment})
	api("/api/v1/environments/{env}/{plural}/{name}", methods{
		http.MethodGet:    s.getObject,
		http.MethodPut:    s.applyObject,
		http.MethodDelete: s.deleteObject,
	})
	api("/api/v1/environments/{env}/services/{name}/revisions", methods{http.MethodGet: s.listRevisions(v1.KindService)})
	api("/api/v1/environments/{env}/services/{name}/rollback", methods{http.MethodPost: s.rollback(v1.KindService)})
	api("/api/v1/environments/{env}/functions/{name}/revisions", methods{http.MethodGet: s.listRevisions(v1.KindFunction)})
	api("/api/v1/environments/{env}/functions/{name}/rollback", methods{http.MethodPost: s.rollback(v1.KindFunction)})
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		for _, action := range []string{"promote", "abort"} {
			res, _ := byKind(kind)
			api("/api/v1/environments/{env}/"+res.plural+"/{name}/"+action, methods{http.MethodPost: s.canaryAction(kind, action)})
		}
	}
	api("/api/v1/environments/{env}/services/{name}/convert", methods{http.MethodPost: s.convert(v1.KindService)})
	api("/api/v1/environments/{env}/functions/{name}/convert", methods{http.MethodPost: s.convert(v1.KindFunction)})
	api("/api/v1/environments/{env}/advice", methods{http.MethodGet: s.adviceList})
	api("/api/v1/environments/{env}/advice/{name}", methods{http.MethodGet: s.advice})
	api("/api/v1/environments/{env}/functions/{name}/invoke", methods{http.MethodPost: s.invoke})
	api("/api/v1/environments/{env}/functions/{name}/invocations", methods{http.MethodPost: s.enqueue})
	api("/api/v1/environments/{env}/invocations/{id}", methods{http.MethodGet: s.getInvocation})
	api("/api/v1/environments/{env}/topics/{name}/messages", methods{http.MethodPost: s.publish})
	api("/api/v1/environments/{env}/workflows/{name}/executions", methods{http.MethodPost: s.startExecution})
	api("/api/v1/environments/{env}/executions", methods{http.MethodGet: s.listExecutions})
	api("/api/v1/environments/{env}/executions/{id}", methods{http.MethodGet: s.getExecution})
	api("/api/v1/environments/{env}/executions/{id}/history", methods{http.MethodGet: s.executionHistory})
	api("/api/v1/environments/{env}/executions/{id}/stop", methods{http.MethodPost: s.stopExecution})
	api("/api/v1/environments/{env}/services/{name}/logs", methods{http.MethodGet: s.logs})
	// A function's logs live where a service's do (DATA/logs/ENV/NAME).
	api("/api/v1/environments/{env}/functions/{name}/logs", methods{http.MethodGet: s.logs})
	s.valueRoutes(api)
	s.stateRoutes(api)
	api("/api/v1/traces", methods{http.MethodGet: s.listTraces})
	api("/api/v1/traces/{id}", methods{http.MethodGet: s.getTrace})
	api("/api/v1/watch", methods{http.MethodGet: s.watch})
	api("/api/v1/whoami", methods{http.MethodGet: s.whoami})
	api("/api/v1/images", methods{http.MethodGet: s.listImages})
	api("/api/v1/images/import", methods{http.MethodPost: s.importImage})
	api("/api/v1/images/pull", methods{http.MethodPost: s.pullImage})
	api("/api/v1/images/tag", methods{http.MethodPost: s.tagImage})
	api("/api/v1/images/{ref...}", methods{http.MethodDelete: s.removeImage})
	api("/api/v1/{plural}", methods{http.MethodGet: s.listAll})
	api("/api/v1/", methods{"": func(w http.ResponseWriter, r *http.Request) error {
		return v1.NotFound("no API endpoint at %s", r.URL.Path)
	}})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, v1.NotFound("no endpoint at %s; the API is under /api/v1/", r.URL.Path))
	})
	return mux
}

// dispatch picks the handler for the method; "" in m takes any method.
func (s *Server) dispatch(m methods) http.Handler {
	allow := make([]string, 0, len(m))
	for method := range m {
		if method != "" {
			allow = append(allow, method)
		}
	}
	slices.Sort(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = m[http.MethodGet]
		}
		if !ok {
			h, ok = m[""]
		}
		var err error
		if ok {
			err = h(w, r)
		} else {
			err = notAllowed(allow, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
		}
		if err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

func (s *Server) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A scoped authorizer names the caller once, here; handlers read
		// it from the context instead of looking the token up again.
		if sc, ok := s.auth.(Scoper); ok {
			p, err := sc.Principal(r)
			if err == nil {
				err = Allowed(p, r.Method, r.URL.Path)
			}
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
			return
		}
		if err := s.auth.Authorize(r); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a 500 and a logged stack,
// so one bad request cannot take the API down.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // the server's own way of dropping a connection
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec, ok := w.(*recorder); ok && rec.status != 0 {
				// Half an answer is out: cut the connection so the client
				// sees a broken response, not a short one that looks whole.
				panic(http.ErrAbortHandler)
			}
			writeError(w, r, s.log, v1.Errorf(v1.ErrInternal, "internal error; the server log has the details"))
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code(),
				"bytes", rec.bytes, "duration", time.Since(start), "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r)
	})
}

// recorder notes the status and size of a response for the access log and
// the panic handler. It passes Flush through, and Unwrap lets
// http.ResponseController reach the connection (the logs stream clears its
// write deadline through it).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
