package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/workflow/asl"
)

// Executions runs workflow executions for the API; the composition root
// passes the workflow engine.
type Executions interface {
	// Start begins an execution of the workflow with input (JSON).
	Start(ctx context.Context, env, workflow string, input json.RawMessage) (v1.Execution, error)
	Get(ctx context.Context, env, id string) (v1.Execution, error)
	// List returns env's executions (of one workflow unless it is ""),
	// newest first.
	List(ctx context.Context, env, workflow string) ([]v1.Execution, error)
	History(ctx context.Context, env, id string) ([]v1.HistoryEvent, error)
	// Stop aborts a running execution; Conflict when it has finished.
	Stop(ctx context.Context, env, id, errName, cause string) error
	// Wait returns once the execution has finished, or ctx's error.
	Wait(ctx context.Context, env, id string) (v1.Execution, error)
}

// MaxExecutionWait bounds the long poll of GET .../executions/ID?wait=.
const MaxExecutionWait = 5 * time.Minute

// ExecutionList is the answer of a list of executions.
type ExecutionList struct {
	Items []v1.Execution `json:"items"`
}

// HistoryList is the answer of GET .../executions/ID/history.
type HistoryList struct {
	Items []v1.HistoryEvent `json:"items"`
}

// StopRequest is the body of POST .../executions/ID/stop.
type StopRequest struct {
	Error string `json:"error,omitempty"`
	Cause string `json:"cause,omitempty"`
}

var errNoExecutions = v1.Unavailable("this server does not run workflow executions")

// ValidateDefinition checks a workflow's definition as the interpreter
// reads it, and that every Task resource names something Berth can call;
// errors name the field from spec.definition down.
func ValidateDefinition(def json.RawMessage) error {
	m, err := asl.Parse(def)
	if err != nil {
		var e *v1.Error
		if errors.As(err, &e) {
			out := *e
			out.Field = joinField("spec.definition", e.Field)
			return &out
		}
		return v1.FieldError("spec.definition", "%v", err)
	}
	for _, ref := range m.Resources() {
		if msg := resourceProblem(ref.Resource); msg != "" {
			return v1.FieldError(joinField("spec.definition", ref.Field), "%s", msg)
		}
	}
	return nil
}

func joinField(prefix, field string) string {
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// resourceProblem says what is wrong with a Task resource, or "".
func resourceProblem(res string) string {
	const forms = "use function:NAME, service:NAME/PATH or an http:// or https:// URL, each optionally followed by " + asl.WaitForTaskToken
	res = strings.TrimSuffix(res, asl.WaitForTaskToken)
	switch {
	case strings.HasPrefix(res, "function:"):
		name := strings.TrimPrefix(res, "function:")
		if !isDNSLabel(name) {
			return fmt.Sprintf("%q: %q is not a function name (a DNS label)", res, name)
		}
	case strings.HasPrefix(res, "service:"):
		name, _, _ := strings.Cut(strings.TrimPrefix(res, "service:"), "/")
		if !isDNSLabel(name) {
			return fmt.Sprintf("%q: %q is not a service name (a DNS label); write service:NAME/PATH", res, name)
		}
	case strings.HasPrefix(res, "http://"), strings.HasPrefix(res, "https://"):
		u, err := url.Parse(res)
		if err != nil || u.Host == "" {
			return fmt.Sprintf("%q is not a URL with a host", res)
		}
	default:
		return fmt.Sprintf("unknown resource %q: %s", res, forms)
	}
	return ""
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > v1.MaxNameLength || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// startExecution answers POST .../workflows/NAME/executions: the body is
// the input; 201 with the execution, RUNNING.
func (s *Server) startExecution(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	res, _ := byKind(v1.KindWorkflow)
	if _, err := s.load(ctx, res, env, name); err != nil {
		return err
	}
	if s.executions == nil {
		return errNoExecutions
	}
	body, err := s.readBody(w, r, s.maxPayload)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return v1.Errorf(v1.ErrTooLarge, "the input is larger than the limit of %d bytes (%s); pass larger data by reference",
			s.maxPayload, v1.FormatMemory(s.maxPayload))
	}
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) > 0 && !json.Valid(body) {
		return v1.FieldError("input", "the execution input must be JSON")
	}
	exec, err := s.executions.Start(ctx, env, name, body)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/environments/"+url.PathEscape(env)+"/executions/"+url.PathEscape(exec.ID))
	writeJSON(w, http.StatusCreated, exec)
	return nil
}

func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) error {
	if s.executions == nil {
		return errNoExecutions
	}
	items, err := s.executions.List(r.Context(), r.PathValue("env"), r.URL.Query().Get("workflow"))
	if err != nil {
		return err
	}
	if items == nil {
		items = []v1.Execution{}
	}
	writeJSON(w, http.StatusOK, ExecutionList{Items: items})
	return nil
}

// getExecution answers GET .../executions/ID; with ?wait=DURATION it
// answers once the execution has finished or the wait is over, whichever
// comes first (at most MaxExecutionWait).
func (s *Server) getExecution(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if s.executions == nil {
		return errNoExecutions
	}
	env, id := r.PathValue("env"), r.PathValue("id")
	var wait time.Duration
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			return v1.FieldError("wait", "%q is not a duration: write it like \"30s\"", ws)
		}
		wait = d
	}
	exec, err := s.executions.Get(ctx, env, id)
	if err != nil {
		return err
	}
	if d := wait; d > 0 && exec.Status == v1.ExecutionRunning {
		wctx, cancel := context.WithTimeout(ctx, min(d, MaxExecutionWait))
		defer cancel()
		done, err := s.executions.Wait(wctx, env, id)
		switch {
		case err == nil:
			exec = done
		case wctx.Err() != nil && ctx.Err() == nil:
			// The wait is over: answer how it stands.
			if exec, err = s.executions.Get(ctx, env, id); err != nil {
				return err
			}
		default:
			return err
		}
	}
	writeJSON(w, http.StatusOK, exec)
	return nil
}

func (s *Server) executionHistory(w http.ResponseWriter, r *http.Request) error {
	if s.executions == nil {
		return errNoExecutions
	}
	events, err := s.executions.History(r.Context(), r.PathValue("env"), r.PathValue("id"))
	if err != nil {
		return err
	}
	if events == nil {
		events = []v1.HistoryEvent{}
	}
	writeJSON(w, http.StatusOK, HistoryList{Items: events})
	return nil
}

// stopExecution answers POST .../executions/ID/stop with the execution,
// ABORTED.
func (s *Server) stopExecution(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if s.executions == nil {
		return errNoExecutions
	}
	env, id := r.PathValue("env"), r.PathValue("id")
	body, err := s.readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var req StopRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return v1.Invalid("stop request: %v; send {\"error\": NAME, \"cause\": TEXT}", err)
		}
	}
	if err := s.executions.Stop(ctx, env, id, req.Error, req.Cause); err != nil {
		return err
	}
	exec, err := s.executions.Get(ctx, env, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, exec)
	return nil
}
