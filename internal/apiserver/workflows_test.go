package apiserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/workflow/engine"
)

func workflow(name, def string) *v1.Workflow {
	return &v1.Workflow{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
		Metadata: v1.ObjectMeta{Name: name}, Spec: v1.WorkflowSpec{Definition: json.RawMessage(def)}}
}

const wfPath = "/api/v1/environments/default/workflows/"

// A definition is checked in full on apply: the error names the field
// under spec.definition that is wrong.
func TestWorkflowApplyValidates(t *testing.T) {
	e := newEnv(t, options{})
	ok := `{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Task", "Resource": "function:pay", "End": true}}}`
	e.apply(wfPath+"pay", workflow("pay", ok), http.StatusCreated, "created")
	e.apply(wfPath+"pay", workflow("pay", ok), http.StatusOK, "unchanged")

	for _, tc := range []struct{ def, field string }{
		{`{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}`, "spec.definition.States.A.Next"},
		{`{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "lambda:pay", "End": true}}}`, "spec.definition.States.A.Resource"},
		{`{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "function:Not_A_Name", "End": true}}}`, "spec.definition.States.A.Resource"},
		{`{"States": {"A": {"Type": "Pass", "End": true}}}`, "spec.definition.StartAt"},
	} {
		r := e.do(http.MethodPut, wfPath+"bad", workflow("bad", tc.def))
		e.expect(r, http.StatusBadRequest, v1.ErrInvalid, tc.field)
	}
	r := e.do(http.MethodGet, "/api/v1/environments/default/workflows", nil)
	e.expect(r, http.StatusOK, "", "")
	if !strings.Contains(string(r.body), `"name":"pay"`) || strings.Contains(string(r.body), `"name":"bad"`) {
		t.Errorf("list: %s", r.body)
	}
	// Executions need the engine: this server has none.
	r = e.do(http.MethodPost, wfPath+"pay/executions", `{}`)
	e.expect(r, http.StatusServiceUnavailable, v1.ErrUnavailable, "")
	e.expect(e.do(http.MethodDelete, wfPath+"pay", nil), http.StatusOK, "", "")
}

type passInvoker struct{}

func (passInvoker) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	return http.StatusOK, nil, body, nil
}

// The execution endpoints over a real engine: start, wait, list, history
// and stop.
func TestExecutionEndpoints(t *testing.T) {
	e := newEnv(t, options{executions: func(st store.Store) apiserver.Executions {
		eng := engine.New(engine.Config{Store: st, Invoker: passInvoker{}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { eng.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return eng
	}})
	e.apply(wfPath+"echo", workflow("echo", `{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "function:echo", "End": true}}}`),
		http.StatusCreated, "created")
	e.apply(wfPath+"sleepy", workflow("sleepy", `{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}`),
		http.StatusCreated, "created")

	r := e.do(http.MethodPost, wfPath+"echo/executions", `{"order": 42}`)
	e.expect(r, http.StatusCreated, "", "")
	var exec v1.Execution
	json.Unmarshal(r.body, &exec)
	if exec.Status != v1.ExecutionRunning || exec.Workflow != "echo" || r.header.Get("Location") != "/api/v1/environments/default/executions/"+exec.ID {
		t.Fatalf("start answered %s (Location %q)", r.body, r.header.Get("Location"))
	}
	r = e.do(http.MethodGet, "/api/v1/environments/default/executions/"+exec.ID+"?wait=20s", nil)
	e.expect(r, http.StatusOK, "", "")
	json.Unmarshal(r.body, &exec)
	if exec.Status != v1.ExecutionSucceeded || string(exec.Output) != `{"order":42}` {
		t.Fatalf("after the wait: %s", r.body)
	}
	r = e.do(http.MethodGet, "/api/v1/environments/default/executions/"+exec.ID+"/history", nil)
	e.expect(r, http.StatusOK, "", "")
	var hist apiserver.HistoryList
	json.Unmarshal(r.body, &hist)
	if len(hist.Items) < 3 || hist.Items[0].Type != "ExecutionStarted" || hist.Items[len(hist.Items)-1].Type != "ExecutionSucceeded" {
		t.Errorf("history: %s", r.body)
	}

	r = e.do(http.MethodPost, wfPath+"sleepy/executions", ``)
	e.expect(r, http.StatusCreated, "", "")
	var sleepy v1.Execution
	json.Unmarshal(r.body, &sleepy)
	// A short long poll answers RUNNING when time is up.
	begin := time.Now()
	r = e.do(http.MethodGet, "/api/v1/environments/default/executions/"+sleepy.ID+"?wait=100ms", nil)
	e.expect(r, http.StatusOK, "", "")
	if !strings.Contains(string(r.body), `"status":"RUNNING"`) || time.Since(begin) < 100*time.Millisecond {
		t.Errorf("long poll of a waiting execution: %s after %s", r.body, time.Since(begin))
	}
	r = e.do(http.MethodGet, "/api/v1/environments/default/executions?workflow=sleepy", nil)
	e.expect(r, http.StatusOK, "", "")
	var list apiserver.ExecutionList
	json.Unmarshal(r.body, &list)
	if len(list.Items) != 1 || list.Items[0].ID != sleepy.ID {
		t.Errorf("list of sleepy: %s", r.body)
	}
	r = e.do(http.MethodPost, "/api/v1/environments/default/executions/"+sleepy.ID+"/stop", `{"error": "Cancelled", "cause": "no time"}`)
	e.expect(r, http.StatusOK, "", "")
	json.Unmarshal(r.body, &sleepy)
	if sleepy.Status != v1.ExecutionAborted || sleepy.Error != "Cancelled" || sleepy.Cause != "no time" {
		t.Errorf("stop answered %s", r.body)
	}
	e.expect(e.do(http.MethodPost, "/api/v1/environments/default/executions/"+sleepy.ID+"/stop", ``), http.StatusConflict, v1.ErrConflict, "")
	e.expect(e.do(http.MethodPost, "/api/v1/environments/default/executions/"+sleepy.ID+"/stop", `{"eror": "x"}`), http.StatusBadRequest, v1.ErrInvalid, "")

	e.expect(e.do(http.MethodPost, wfPath+"nope/executions", `{}`), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodPost, wfPath+"echo/executions", `{not json`), http.StatusBadRequest, v1.ErrInvalid, "input")
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/executions/nope-1", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/executions/"+exec.ID+"?wait=soon", nil), http.StatusBadRequest, v1.ErrInvalid, "wait")
}
