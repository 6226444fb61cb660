package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/workflow/asl"
)

// Invoker calls a function of an environment synchronously, waking it from
// zero when it has no instance. The API server's Invocations.Invoke has
// this shape, so the composition root can pass the same value.
type Invoker interface {
	Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (status int, respHeader http.Header, respBody []byte, err error)
}

// ServiceCaller POSTs to a service of an environment, at path ("/ship"),
// the way a workload would: through the gateway, at the host
// NAME.ENV.<domain>.
type ServiceCaller interface {
	CallService(ctx context.Context, env, service, path string, body []byte, header http.Header) (status int, respHeader http.Header, respBody []byte, err error)
}

// Egress gives the HTTP client for calls made on behalf of an environment:
// one that reaches only what the environment's own containers may (never
// another environment, the host or link-local addresses), and its own
// services by name through its gateway.
type Egress interface {
	Client(env string) *http.Client
}

// Headers every task request carries.
const (
	// IdempotencyKeyHeader is "<execution id>/<task key>": the same for
	// every delivery of one attempt of one task state, different for the
	// next attempt, so a handler can de-duplicate redeliveries.
	IdempotencyKeyHeader = "X-Berth-Idempotency-Key"
	ExecutionIDHeader    = "X-Berth-Execution-Id"
)

// Config is what an Engine is built from.
type Config struct {
	Store store.Store
	// Invoker runs "function:NAME" tasks; nil fails them.
	Invoker Invoker
	// Services runs "service:NAME/PATH" tasks; nil fails them.
	Services ServiceCaller
	// Egress gives the client "http://" and "https://" tasks are sent
	// with, the execution's environment's (package egress); nil fails
	// them. Each task's TimeoutSeconds bounds the call.
	Egress Egress
	// Clock is the time the engine reads (default time.Now); After waits
	// on it (default time.After). Tests inject both.
	Clock func() time.Time
	After func(d time.Duration) <-chan time.Time
	// RetryBackoff is the first wait before re-running an execution whose
	// journal could not be written (default 1s, doubled up to 30s).
	RetryBackoff time.Duration
	// TracerProvider, when set, traces each execution and its tasks and
	// passes traceparent to the functions and services tasks call.
	TracerProvider trace.TracerProvider
	// Observer, when set, is told what executions do (metrics).
	Observer Observer
	Logger   *slog.Logger
}

// Engine starts, resumes, stops and answers about executions.
type Engine struct {
	st       store.Store
	invoker  Invoker
	services ServiceCaller
	egress   Egress
	clock    func() time.Time
	after    func(time.Duration) <-chan time.Time
	backoff  time.Duration
	log      *slog.Logger
	tp       trace.TracerProvider
	obs      Observer

	mu   sync.Mutex
	base context.Context // Run's; nil until Run
	runs map[string]*execution
	wg   sync.WaitGroup
}

// New builds an Engine. It runs nothing until Run.
func New(cfg Config) *Engine {
	e := &Engine{
		st:       cfg.Store,
		invoker:  cfg.Invoker,
		services: cfg.Services,
		egress:   cfg.Egress,
		clock:    cfg.Clock,
		after:    cfg.After,
		backoff:  cfg.RetryBackoff,
		log:      cfg.Logger,
		tp:       cfg.TracerProvider,
		obs:      cfg.Observer,
		runs:     map[string]*execution{},
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.after == nil {
		e.after = time.After
	}
	if e.backoff <= 0 {
		e.backoff = time.Second
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.obs == nil {
		e.obs = noObserver{}
	}
	return e
}

// Run resumes every RUNNING execution from its journal, runs those
// started later, and returns when ctx ends and every execution has
// stopped where it was (still RUNNING in the store, to resume next time).
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.base != nil {
		e.mu.Unlock()
		return errors.New("workflow engine: Run called twice")
	}
	e.base = ctx
	e.mu.Unlock()

	recs, _, err := e.st.List(ctx, KindExecution, "")
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	if err != nil {
		return fmt.Errorf("workflow engine: list executions: %w", err)
	}
	resumed := 0
	for _, rec := range recs {
		var r record
		if err := json.Unmarshal(rec.Value, &r); err != nil {
			e.log.Error("skipping an unreadable execution", "key", rec.Key.String(), "err", err)
			continue
		}
		if r.Status == v1.ExecutionRunning {
			e.launch(r.Environment, r.ID)
			resumed++
		}
	}
	if resumed > 0 {
		e.log.Info("resumed executions", "count", resumed)
	}
	<-ctx.Done()
	e.wg.Wait()
	return nil
}

// Start begins an execution of the workflow with input (JSON; empty means
// {}) and returns it, RUNNING.
func (e *Engine) Start(ctx context.Context, env, workflow string, input json.RawMessage) (v1.Execution, error) {
	return e.StartNamed(ctx, env, workflow, "", input)
}

// StartNamed is Start with the execution's id chosen by the caller (""
// picks one), as Step Functions' StartExecution takes a name: an id
// already used in env is a Conflict, unless it names an execution of the
// same workflow with the same input, which is returned as it stands (a
// client's retry of a start that went through).
func (e *Engine) StartNamed(ctx context.Context, env, workflow, name string, input json.RawMessage) (v1.Execution, error) {
	if len(strings.TrimSpace(string(input))) == 0 {
		input = json.RawMessage("{}")
	}
	if !json.Valid(input) {
		return v1.Execution{}, v1.FieldError("input", "the execution input must be JSON")
	}
	input, _ = compact(input)
	var wf v1.Workflow
	err := store.Get(ctx, e.st, store.Key{Kind: v1.KindWorkflow, Environment: env, Name: workflow}, &wf)
	if v1.IsNotFound(err) {
		return v1.Execution{}, v1.NotFound("workflow %q not found in environment %q", workflow, env)
	}
	if err != nil {
		return v1.Execution{}, err
	}
	if _, err := asl.Parse(wf.Spec.Definition); err != nil {
		return v1.Execution{}, fmt.Errorf("workflow %q: %w", workflow, err)
	}
	r := record{
		Execution: v1.Execution{
			Environment: env,
			Workflow:    workflow,
			Generation:  wf.Metadata.Generation,
			Status:      v1.ExecutionRunning,
			Input:       input,
			StartDate:   e.clock().UTC(),
		},
		Definition: wf.Spec.Definition,
	}
	for try := 0; ; try++ {
		r.ID = name
		if name == "" {
			r.ID = newID(workflow)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return v1.Execution{}, err
		}
		_, err = e.st.Create(ctx, executionKey(env, r.ID), b)
		if v1.IsConflict(err) && name != "" {
			old, _, gerr := readRecord(ctx, e.st, env, name)
			if gerr == nil && old.Workflow == workflow && bytes.Equal(old.Input, input) {
				return old.Execution, nil
			}
			return v1.Execution{}, v1.Conflict("an execution named %q already exists in environment %q", name, env)
		}
		if v1.IsConflict(err) && try < 3 {
			continue
		}
		if err != nil {
			return v1.Execution{}, fmt.Errorf("start an execution of %q: %w", workflow, err)
		}
		break
	}
	e.log.Info("execution started", "environment", env, "workflow", workflow, "execution", r.ID)
	e.launch(env, r.ID)
	return r.Execution, nil
}

// Get returns the execution.
func (e *Engine) Get(ctx context.Context, env, id string) (v1.Execution, error) {
	r, _, err := readRecord(ctx, e.st, env, id)
	return r.Execution, err
}

// List returns the executions of env (of one workflow unless workflow is
// ""), newest first.
func (e *Engine) List(ctx context.Context, env, workflow string) ([]v1.Execution, error) {
	recs, _, err := e.st.List(ctx, KindExecution, env)
	if err != nil {
		return nil, err
	}
	out := []v1.Execution{}
	for _, rec := range recs {
		var r record
		if err := json.Unmarshal(rec.Value, &r); err != nil {
			return nil, fmt.Errorf("execution %s: %w", rec.Key, err)
		}
		if workflow == "" || r.Workflow == workflow {
			out = append(out, r.Execution)
		}
	}
	slices.SortStableFunc(out, func(a, b v1.Execution) int {
		if c := b.StartDate.Compare(a.StartDate); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// History returns the execution's events written so far, oldest first.
func (e *Engine) History(ctx context.Context, env, id string) ([]v1.HistoryEvent, error) {
	if _, _, err := readRecord(ctx, e.st, env, id); err != nil {
		return nil, err
	}
	entries, _, err := readJournal(ctx, e.st, env, id)
	if err != nil {
		return nil, err
	}
	out := []v1.HistoryEvent{}
	for _, en := range entries {
		if en.Event != nil {
			out = append(out, *en.Event)
		}
	}
	return out, nil
}

// Stop aborts a RUNNING execution with an error name and cause of the
// caller's choosing, and returns once it is ABORTED. A task in flight is
// cancelled; its result, if it comes, is ignored.
func (e *Engine) Stop(ctx context.Context, env, id, errName, cause string) error {
	r, _, err := readRecord(ctx, e.st, env, id)
	if err != nil {
		return err
	}
	if r.Status != v1.ExecutionRunning {
		return v1.Conflict("execution %q has already finished: %s", id, r.Status)
	}
	req := &stopRequest{errName: errName, cause: cause}
	e.mu.Lock()
	x := e.runs[env+"/"+id]
	e.mu.Unlock()
	if x != nil && x.stop(req) {
		got, err := e.Wait(ctx, env, id)
		if err != nil {
			return err
		}
		if got.Status != v1.ExecutionAborted {
			return v1.Conflict("execution %q finished as %s before it could be stopped", id, got.Status)
		}
		return nil
	}
	// Not running here (Run has not started it yet, or it is between
	// attempts): abort it in the store; a run that starts later sees it.
	x = &execution{e: e, env: env, id: id}
	return x.abortOffline(ctx, req)
}

// Wait returns the execution once it has finished, or ctx's error.
func (e *Engine) Wait(ctx context.Context, env, id string) (v1.Execution, error) {
	key := executionKey(env, id)
	for {
		rev, err := e.st.Revision(ctx)
		if err != nil {
			return v1.Execution{}, err
		}
		r, _, err := readRecord(ctx, e.st, env, id)
		if err != nil || r.Status != v1.ExecutionRunning {
			return r.Execution, err
		}
		if err := e.waitChange(ctx, key, rev); err != nil {
			return v1.Execution{}, err
		}
	}
}

// waitChange returns when the record at key may have changed after rev.
func (e *Engine) waitChange(ctx context.Context, key store.Key, rev uint64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := e.st.Watch(wctx, key.Kind, rev)
	if err != nil {
		if v1.IsConflict(err) { // compacted: read again
			return nil
		}
		return err
	}
	for ev := range ch {
		if ev.Record.Key == key {
			return nil
		}
	}
	// The watch ended: ctx, a closed store, or a consumer too slow.
	return ctx.Err()
}

// launch runs the execution in the background unless it already runs or
// Run has not started (Run resumes it then).
func (e *Engine) launch(env, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := env + "/" + id
	if e.base == nil || e.base.Err() != nil || e.runs[k] != nil {
		return
	}
	x := &execution{e: e, env: env, id: id}
	e.runs[k] = x
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		x.loop(e.base)
		e.mu.Lock()
		delete(e.runs, k)
		e.mu.Unlock()
	}()
}

// newID is the workflow's name and 12 random hex digits: unique enough
// with a Create that refuses duplicates, and readable in a table.
func newID(workflow string) string {
	var b [6]byte
	rand.Read(b[:])
	return workflow + "-" + hex.EncodeToString(b[:])
}

// compact is the one form event details take, fresh or read back: no
// spaces, and '<', '>', '&' escaped as encoding/json writes them when the
// journal is stored, so a replayed event compares equal to its stored copy.
func compact(b []byte) (json.RawMessage, error) {
	var buf, out bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	json.HTMLEscape(&out, buf.Bytes())
	return out.Bytes(), nil
}
