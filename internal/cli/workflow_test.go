package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// workflowAPI answers the execution endpoints of docs/api.md from a fixed
// set of executions; a start creates one that finishes as finishAs says
// after polls long polls.
type workflowAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	execs    map[string]v1.Execution
	history  map[string][]v1.HistoryEvent
	finishAs v1.Execution // status, output, error, cause of a started execution
	polls    int          // long polls answered RUNNING before it finishes
	started  []string     // the inputs of starts
	stopped  []string
}

func newWorkflowAPI(t *testing.T) *workflowAPI {
	f := &workflowAPI{t: t, execs: map[string]v1.Execution{}, history: map[string][]v1.HistoryEvent{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/environments/{env}/workflows/{name}/executions", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "checkout" {
			writeError(w, v1.NotFound("workflow %q not found in environment %q", r.PathValue("name"), r.PathValue("env")))
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.started = append(f.started, string(body))
		e := v1.Execution{ID: "checkout-000000000001", Environment: r.PathValue("env"), Workflow: "checkout", Generation: 1,
			Status: v1.ExecutionRunning, Input: json.RawMessage(orEmptyObject(body)), StartDate: testNow}
		f.execs[e.ID] = e
		writeJSON(w, http.StatusCreated, e)
	})
	mux.HandleFunc("GET /api/v1/environments/{env}/executions", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		items := []v1.Execution{}
		for _, e := range f.execs {
			if wf := r.URL.Query().Get("workflow"); wf == "" || e.Workflow == wf {
				items = append(items, e)
			}
		}
		// Newest first, as the server answers.
		sortExecutions(items)
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
	mux.HandleFunc("GET /api/v1/environments/{env}/executions/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.execs[r.PathValue("id")]
		if !ok {
			writeError(w, v1.NotFound("execution %q not found", r.PathValue("id")))
			return
		}
		if r.URL.Query().Get("wait") != "" && e.Status == v1.ExecutionRunning {
			if f.polls > 0 {
				f.polls--
			} else {
				e.Status, e.Output, e.Error, e.Cause = f.finishAs.Status, f.finishAs.Output, f.finishAs.Error, f.finishAs.Cause
				e.StopDate = testNow.Add(1500 * time.Millisecond)
				f.execs[e.ID] = e
			}
		}
		writeJSON(w, http.StatusOK, e)
	})
	mux.HandleFunc("GET /api/v1/environments/{env}/executions/{id}/history", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"items": f.history[r.PathValue("id")]})
	})
	mux.HandleFunc("POST /api/v1/environments/{env}/executions/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.execs[r.PathValue("id")]
		if !ok {
			writeError(w, v1.NotFound("execution %q not found", r.PathValue("id")))
			return
		}
		f.stopped = append(f.stopped, string(body))
		e.Status, e.StopDate = v1.ExecutionAborted, testNow
		f.execs[e.ID] = e
		writeJSON(w, http.StatusOK, e)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
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

func runWF(t *testing.T, f *workflowAPI, stdin string, args ...string) result {
	t.Helper()
	return runCtx(t.Context(), t, f.srv.URL, stdin, newSyncBuffer(), args...)
}

// start --wait prints the output and exits 0 on SUCCEEDED; exits 1 with
// the error and cause on stderr otherwise; without --wait it prints the id.
func TestWorkflowStartWait(t *testing.T) {
	isolateConfig(t)
	f := newWorkflowAPI(t)
	f.finishAs = v1.Execution{Status: v1.ExecutionSucceeded, Output: json.RawMessage(`{"shipped":true}`)}
	f.polls = 2
	r := runWF(t, f, "", "workflow", "start", "checkout", "--input", `{"order": 42}`, "--wait")
	mustSucceed(t, r)
	if r.stdout != `{"shipped":true}`+"\n" {
		t.Errorf("stdout %q, want the output", r.stdout)
	}
	if f.started[0] != `{"order": 42}` {
		t.Errorf("input sent %q", f.started[0])
	}

	for _, status := range []string{v1.ExecutionFailed, v1.ExecutionTimedOut, v1.ExecutionAborted} {
		f := newWorkflowAPI(t)
		f.finishAs = v1.Execution{Status: status, Error: "CardDeclined", Cause: "insufficient funds"}
		r := runWF(t, f, `{"order": 7}`, "workflow", "start", "checkout", "--input", "@-", "--wait")
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1", status, r.code)
		}
		if r.stdout != "" || !strings.Contains(r.stderr, status) || !strings.Contains(r.stderr, "CardDeclined: insufficient funds") {
			t.Errorf("%s: stdout %q stderr %q", status, r.stdout, r.stderr)
		}
		if f.started[0] != `{"order": 7}` {
			t.Errorf("input from stdin sent as %q", f.started[0])
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

func seedExecutions(f *workflowAPI) {
	f.execs = map[string]v1.Execution{
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
	f.history["checkout-0a1b2c3d4e5f"] = []v1.HistoryEvent{
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
	seedExecutions(f)
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
	if r.stdout != "execution/checkout-3c9a0d1e2f40 aborted\n" || f.stopped[0] != `{"error":"Cancelled","cause":"customer asked"}` {
		t.Errorf("stop printed %q, sent %q", r.stdout, f.stopped)
	}
	if r := runWF(t, f, "", "workflow", "describe", "nope"); r.code != 5 {
		t.Errorf("unknown execution: exit %d, want 5", r.code)
	}
}

// `get workflows` and `describe workflow` read the Workflow objects and,
// for describe, the executions of the real API.
func TestWorkflowObjectsGolden(t *testing.T) {
	isolateConfig(t)
	f := newFakeAPI(t)
	wf := &v1.Workflow{TypeMeta: tm(v1.KindWorkflow), Metadata: meta("default", "checkout", 3*time.Hour),
		Spec: v1.WorkflowSpec{Definition: json.RawMessage(`{"Comment":"pay, then ship","StartAt":"Pay","States":{` +
			`"Pay":{"Type":"Task","Resource":"function:pay","Next":"Ship"},` +
			`"Ship":{"Type":"Task","Resource":"service:shipping/ship","Next":"Done"},"Done":{"Type":"Succeed"}}}`)}}
	wf.Metadata.Generation = 2
	f.seed(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "default", 4*24*time.Hour)}, wf)
	r := run(t, f, "get", "workflows")
	mustSucceed(t, r)
	checkGolden(t, "get_workflows", r.stdout)

	// describe also lists executions: the workflow fake answers them.
	wfAPI := newWorkflowAPI(t)
	seedExecutions(wfAPI)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/environments/{env}/executions", wfAPI.srv.Config.Handler)
	mux.Handle("/", f.srv.Config.Handler)
	both := httptest.NewServer(mux)
	t.Cleanup(both.Close)
	r = runCtx(t.Context(), t, both.URL, "", newSyncBuffer(), "describe", "workflow", "checkout")
	mustSucceed(t, r)
	checkGolden(t, "describe_workflow", r.stdout)
}
