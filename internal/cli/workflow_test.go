package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
)

// executions stands in for the workflow engine behind the real API: it
// holds a fixed set of executions; a start creates one that finishes as
// finishAs says after polls long polls.
type executions struct {
	mu       sync.Mutex
	execs    map[string]v1.Execution
	history  map[string][]v1.HistoryEvent
	finishAs v1.Execution // status, output, error, cause of a started execution
	polls    int          // long polls answered RUNNING before it finishes
	started  []string     // the inputs of starts
	stopped  []string     // the stop requests, as JSON
}

var _ apiserver.Executions = (*executions)(nil)

func newExecutions() *executions {
	return &executions{execs: map[string]v1.Execution{}, history: map[string][]v1.HistoryEvent{}}
}

func (x *executions) Start(ctx context.Context, env, workflow string, input json.RawMessage) (v1.Execution, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.started = append(x.started, string(input))
	e := v1.Execution{ID: workflow + "-000000000001", Environment: env, Workflow: workflow, Generation: 1,
		Status: v1.ExecutionRunning, Input: json.RawMessage(orEmptyObject(input)), StartDate: testNow}
	x.execs[e.ID] = e
	return e, nil
}

func (x *executions) Get(ctx context.Context, env, id string) (v1.Execution, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.execs[id]
	if !ok || e.Environment != env {
		return v1.Execution{}, v1.NotFound("execution %q not found in environment %q", id, env)
	}
	return e, nil
}

func (x *executions) List(ctx context.Context, env, workflow string) ([]v1.Execution, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var items []v1.Execution
	for _, e := range x.execs {
		if e.Environment == env && (workflow == "" || e.Workflow == workflow) {
			items = append(items, e)
		}
	}
	sortExecutions(items) // newest first, as the engine answers
	return items, nil
}

func (x *executions) History(ctx context.Context, env, id string) ([]v1.HistoryEvent, error) {
	if _, err := x.Get(ctx, env, id); err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.history[id], nil
}

func (x *executions) Stop(ctx context.Context, env, id, errName, cause string) error {
	if _, err := x.Get(ctx, env, id); err != nil {
		return err
	}
	b, _ := json.Marshal(apiserver.StopRequest{Error: errName, Cause: cause})
	x.mu.Lock()
	defer x.mu.Unlock()
	x.stopped = append(x.stopped, string(b))
	e := x.execs[id]
	e.Status, e.StopDate = v1.ExecutionAborted, testNow
	x.execs[id] = e
	return nil
}

// Wait answers at once: still running while polls are left, then
// finished as finishAs says.
func (x *executions) Wait(ctx context.Context, env, id string) (v1.Execution, error) {
	e, err := x.Get(ctx, env, id)
	if err != nil || e.Status != v1.ExecutionRunning {
		return e, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.polls > 0 {
		x.polls--
		return e, nil
	}
	e.Status, e.Output, e.Error, e.Cause = x.finishAs.Status, x.finishAs.Output, x.finishAs.Error, x.finishAs.Cause
	e.StopDate = testNow.Add(1500 * time.Millisecond)
	x.execs[id] = e
	return e, nil
}

// newWorkflowAPI is the API with the default environment and its
// workflow checkout.
func newWorkflowAPI(t *testing.T) *testAPI {
	f := newTestAPI(t)
	f.seed(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "default", 4*24*time.Hour)},
		&v1.Workflow{TypeMeta: tm(v1.KindWorkflow), Metadata: meta("default", "checkout", 3*time.Hour),
			Spec: v1.WorkflowSpec{Definition: json.RawMessage(`{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}`)}})
	return f
}

func orEmptyObject(b []byte) []byte {
	if len(b) == 0 {
		return []byte("{}")
	}
	return b
}

func sortExecutions(items []v1.Execution) {
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && (items[j].StartDate.After(items[j-1].StartDate) ||
			items[j].StartDate.Equal(items[j-1].StartDate) && items[j].ID < items[j-1].ID); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

func runWF(t *testing.T, f *testAPI, stdin string, args ...string) result {
	t.Helper()
	return runCtx(t.Context(), t, f.URL(), stdin, newSyncBuffer(), args...)
}

// start --wait prints the output and exits 0 on SUCCEEDED; exits 1 with
// the error and cause on stderr otherwise; without --wait it prints the id.
func TestWorkflowStartWait(t *testing.T) {
	isolateConfig(t)
	f := newWorkflowAPI(t)
	f.execs.finishAs = v1.Execution{Status: v1.ExecutionSucceeded, Output: json.RawMessage(`{"shipped":true}`)}
	f.execs.polls = 2
	r := runWF(t, f, "", "workflow", "start", "checkout", "--input", `{"order": 42}`, "--wait")
	mustSucceed(t, r)
	if r.stdout != `{"shipped":true}`+"\n" {
		t.Errorf("stdout %q, want the output", r.stdout)
	}
	if f.execs.started[0] != `{"order": 42}` {
		t.Errorf("input sent %q", f.execs.started[0])
	}

	for _, status := range []string{v1.ExecutionFailed, v1.ExecutionTimedOut, v1.ExecutionAborted} {
		f := newWorkflowAPI(t)
		f.execs.finishAs = v1.Execution{Status: status, Error: "CardDeclined", Cause: "insufficient funds"}
		r := runWF(t, f, `{"order": 7}`, "workflow", "start", "checkout", "--input", "@-", "--wait")
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1", status, r.code)
		}
		if r.stdout != "" || !strings.Contains(r.stderr, status) || !strings.Contains(r.stderr, "CardDeclined: insufficient funds") {
			t.Errorf("%s: stdout %q stderr %q", status, r.stdout, r.stderr)
		}
		if f.execs.started[0] != `{"order": 7}` {
			t.Errorf("input from stdin sent as %q", f.execs.started[0])
		}
	}

	f = newWorkflowAPI(t)
	r = runWF(t, f, "", "workflow", "start", "checkout")
	mustSucceed(t, r)
	if r.stdout != "checkout-000000000001\n" {
		t.Errorf("start without --wait printed %q, want the id", r.stdout)
	}
	if r := runWF(t, f, "", "workflow", "start", "nope"); r.code != 5 {
		t.Errorf("unknown workflow: exit %d, want 5 (not found); stderr %q", r.code, r.stderr)
	}
	if r := runWF(t, f, "", "workflow", "start", "checkout", "--input", "{nope"); r.code != ExitUsage {
		t.Errorf("input not JSON: exit %d, want %d", r.code, ExitUsage)
	}
}

func seedExecutions(x *executions) {
	x.execs = map[string]v1.Execution{
		"checkout-3c9a0d1e2f40": {ID: "checkout-3c9a0d1e2f40", Environment: "default", Workflow: "checkout", Generation: 2,
			Status: v1.ExecutionRunning, Input: json.RawMessage(`{"order":43}`), StartDate: testNow.Add(-3 * time.Minute)},
		"checkout-0a1b2c3d4e5f": {ID: "checkout-0a1b2c3d4e5f", Environment: "default", Workflow: "checkout", Generation: 1,
			Status: v1.ExecutionSucceeded, Input: json.RawMessage(`{"order":42}`), Output: json.RawMessage(`{"order":42,"paid":true,"shipped":true}`),
			StartDate: testNow.Add(-2 * time.Hour), StopDate: testNow.Add(-2*time.Hour + 2340*time.Millisecond)},
		"signup-77aa88bb99cc": {ID: "signup-77aa88bb99cc", Environment: "default", Workflow: "signup", Generation: 1,
			Status: v1.ExecutionFailed, Input: json.RawMessage(`{}`), Error: "States.TaskFailed", Cause: "HTTP 500 Internal Server Error: db down",
			StartDate: testNow.Add(-30 * time.Minute), StopDate: testNow.Add(-25 * time.Minute)},
	}
	ev := func(id int64, typ, state, details string, at time.Duration) v1.HistoryEvent {
		e := v1.HistoryEvent{ID: id, Timestamp: testNow.Add(-2*time.Hour + at), Type: typ, StateName: state}
		if id > 1 {
			e.PreviousEventID = id - 1
		}
		if details != "" {
			e.Details = json.RawMessage(details)
		}
		return e
	}
	x.history["checkout-0a1b2c3d4e5f"] = []v1.HistoryEvent{
		ev(1, "ExecutionStarted", "", `{"input":{"order":42}}`, 0),
		ev(2, "TaskStateEntered", "Pay", `{"name":"Pay","input":{"order":42}}`, time.Millisecond),
		ev(3, "TaskScheduled", "Pay", `{"resource":"function:pay","parameters":{"order":42,"amount":1999,"currency":"EUR","note":"a long parameter to cut"}}`, 2*time.Millisecond),
		ev(4, "TaskSucceeded", "Pay", `{"output":{"paid":true}}`, 1200*time.Millisecond),
		ev(5, "TaskStateExited", "Pay", `{"name":"Pay","output":{"order":42,"paid":true}}`, 1201*time.Millisecond),
		ev(6, "ExecutionSucceeded", "", `{"output":{"order":42,"paid":true,"shipped":true}}`, 2340*time.Millisecond),
	}
}

func TestWorkflowTablesGolden(t *testing.T) {
	isolateConfig(t)
	f := newWorkflowAPI(t)
	seedExecutions(f.execs)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"workflow_list", []string{"workflow", "list"}},
		{"workflow_list_checkout", []string{"workflow", "list", "checkout"}},
		{"workflow_history", []string{"workflow", "history", "checkout-0a1b2c3d4e5f"}},
		{"workflow_describe_succeeded", []string{"workflow", "describe", "checkout-0a1b2c3d4e5f"}},
		{"workflow_describe_failed", []string{"workflow", "describe", "signup-77aa88bb99cc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWF(t, f, "", tc.args...)
			mustSucceed(t, r)
			checkGolden(t, tc.name, r.stdout)
		})
	}
	r := runWF(t, f, "", "workflow", "stop", "checkout-3c9a0d1e2f40", "--error", "Cancelled", "--cause", "customer asked")
	mustSucceed(t, r)
	if r.stdout != "execution/checkout-3c9a0d1e2f40 aborted\n" || f.execs.stopped[0] != `{"error":"Cancelled","cause":"customer asked"}` {
		t.Errorf("stop printed %q, sent %q", r.stdout, f.execs.stopped)
	}
	if r := runWF(t, f, "", "workflow", "describe", "nope"); r.code != 5 {
		t.Errorf("unknown execution: exit %d, want 5", r.code)
	}
}

// `get workflows` and `describe workflow` read the Workflow objects and,
// for describe, the executions of the real API.
func TestWorkflowObjectsGolden(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	wf := &v1.Workflow{TypeMeta: tm(v1.KindWorkflow), Metadata: meta("default", "checkout", 3*time.Hour),
		Spec: v1.WorkflowSpec{Definition: json.RawMessage(`{"Comment":"pay, then ship","StartAt":"Pay","States":{` +
			`"Pay":{"Type":"Task","Resource":"function:pay","Next":"Ship"},` +
			`"Ship":{"Type":"Task","Resource":"service:shipping/ship","Next":"Done"},"Done":{"Type":"Succeed"}}}`)}}
	wf.Metadata.Generation = 2
	f.seed(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "default", 4*24*time.Hour)}, wf)
	r := run(t, f, "get", "workflows")
	mustSucceed(t, r)
	checkGolden(t, "get_workflows", r.stdout)

	// describe also lists the workflow's executions.
	seedExecutions(f.execs)
	r = run(t, f, "describe", "workflow", "checkout")
	mustSucceed(t, r)
	checkGolden(t, "describe_workflow", r.stdout)
}
