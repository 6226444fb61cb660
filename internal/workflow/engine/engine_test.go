package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/workflow/engine"
)

// checkout exercises every kind of state the engine must journal: a Task,
// a Choice, a long Wait, a Map of tasks, a Parallel with a service call
// and a task that fails twice before Retry gets it through, and a Catch
// of a custom error a function reports.
const checkout = `{
  "StartAt": "Double",
  "States": {
    "Double": {"Type": "Task", "Resource": "function:double", "Parameters": {"n.$": "$.n"}, "ResultPath": "$.doubled", "Next": "Big?"},
    "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.doubled.n", "NumericGreaterThan": 10, "Next": "Pause"}], "Default": "Small"},
    "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n is too small"},
    "Pause": {"Type": "Wait", "Seconds": 3600, "Next": "Each"},
    "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.mapped", "Next": "Both",
      "ItemProcessor": {"StartAt": "D", "States": {"D": {"Type": "Task", "Resource": "function:double", "End": true}}}},
    "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "Pay", "Branches": [
      {"StartAt": "Reserve", "States": {"Reserve": {"Type": "Task", "Resource": "service:inventory/reserve", "Parameters": {"items.$": "$.items"}, "End": true}}},
      {"StartAt": "Flaky", "States": {"Flaky": {"Type": "Task", "Resource": "function:flaky", "End": true,
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "MaxAttempts": 3}]}}}]},
    "Pay": {"Type": "Task", "Resource": "function:pay", "Next": "Done",
      "Catch": [{"ErrorEquals": ["CardDeclined"], "ResultPath": "$.declined", "Next": "Done"}]},
    "Done": {"Type": "Succeed"}
  }
}`

const checkoutInput = `{"n": 6, "items": [1, 2, 3, 4, 5]}`

const checkoutOutput = `{"n": 6, "items": [1, 2, 3, 4, 5], "doubled": {"n": 12}, "mapped": [2, 4, 6, 8, 10],
  "both": [{"reserved": 5}, {"ok": true}], "declined": {"Error": "CardDeclined", "Cause": "insufficient funds"}}`

// skipClock is an injected clock on which waiting takes no time: After
// moves it forward by d and fires at once. A one-hour Wait passes in a
// blink, yet every due time is computed and journaled as in production.
type skipClock struct {
	mu  sync.Mutex
	now time.Time
}

func newSkipClock(start time.Time) *skipClock { return &skipClock{now: start} }

func (c *skipClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *skipClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// fakeWorkloads answers function and service calls as the test's
// workloads would, and logs every call's idempotency key (to a file too,
// when logPath is set, so that a parent process sees a child's calls).
type fakeWorkloads struct {
	mu      sync.Mutex
	keys    []string
	calls   map[string]int // by function or service
	headers []http.Header
	logPath string
	// onCall runs first in every call (the crash tests kill there).
	onCall func(n int)
	// block, when set, holds function calls of that name until ctx ends.
	block string
	// asked receives the body of each call of the function ask (a task
	// that waits for its token hands it to a worker that way).
	asked chan []byte
}

func (f *fakeWorkloads) note(what string, header http.Header) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[what]++
	key := header.Get(engine.IdempotencyKeyHeader)
	f.keys = append(f.keys, key)
	f.headers = append(f.headers, header.Clone())
	if f.logPath != "" {
		fh, err := os.OpenFile(f.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintln(fh, key)
			fh.Close()
		}
	}
	return len(f.keys)
}

func (f *fakeWorkloads) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	n := f.note("function:"+fn, header)
	if f.onCall != nil {
		f.onCall(n)
	}
	if fn == f.block {
		<-ctx.Done()
		return 0, nil, nil, ctx.Err()
	}
	switch fn {
	case "double":
		var v any
		json.Unmarshal(body, &v)
		switch x := v.(type) {
		case float64:
			return jsonAnswer(200, x*2)
		case map[string]any:
			return jsonAnswer(200, map[string]any{"n": x["n"].(float64) * 2})
		}
		return jsonAnswer(400, map[string]string{"error": "BadInput", "cause": string(body)})
	case "flaky":
		// Fails its first two attempts: the key ends in the attempt, so
		// this holds across a crash too.
		key := header.Get(engine.IdempotencyKeyHeader)
		if strings.HasSuffix(key, "/a1") || strings.HasSuffix(key, "/a2") {
			return 503, nil, []byte("try again later"), nil
		}
		return jsonAnswer(200, map[string]bool{"ok": true})
	case "pay":
		return jsonAnswer(402, map[string]string{"errorType": "CardDeclined", "errorMessage": "insufficient funds"})
	case "text":
		return 200, nil, []byte("plain words"), nil
	case "ask":
		if f.asked != nil {
			f.asked <- body
		}
		return 202, nil, nil, nil
	}
	return 404, nil, []byte(`{"error":{"kind":"NotFound","message":"no such function"}}`), nil
}

func (f *fakeWorkloads) CallService(ctx context.Context, env, svc, path string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	n := f.note("service:"+svc+path, header)
	if f.onCall != nil {
		f.onCall(n)
	}
	if svc == "inventory" && path == "/reserve" {
		var in struct{ Items []any }
		json.Unmarshal(body, &in)
		return jsonAnswer(200, map[string]int{"reserved": len(in.Items)})
	}
	return 404, nil, []byte("no such service"), nil
}

func (f *fakeWorkloads) seenKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys)
}

func jsonAnswer(status int, v any) (int, http.Header, []byte, error) {
	b, _ := json.Marshal(v)
	return status, http.Header{"Content-Type": {"application/json"}}, b, nil
}

func openStore(t testing.TB, path string) store.Store {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before any engine's, so it runs after the engine stopped.
	t.Cleanup(func() { st.Close() })
	return st
}

func putWorkflow(t testing.TB, st store.Store, env, name, def string) {
	t.Helper()
	wf := &v1.Workflow{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
		Metadata: v1.ObjectMeta{Name: name, Environment: env}, Spec: v1.WorkflowSpec{Definition: json.RawMessage(def)}}
	if err := store.Create(context.Background(), st, wf); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	st    store.Store
	eng   *engine.Engine
	fake  *fakeWorkloads
	clock *skipClock
	stop  func()
}

// start builds an engine on st and runs it until the test ends or stop.
func start(t testing.TB, st store.Store, fake *fakeWorkloads, clock *skipClock, egress engine.Egress) *harness {
	t.Helper()
	h := &harness{st: st, fake: fake, clock: clock}
	h.eng = engine.New(engine.Config{
		Store: st, Invoker: fake, Services: fake, Egress: egress,
		Clock: clock.Now, After: clock.After, RetryBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// anyClient sends every environment's http tasks with one client: these
// tests call a loopback server. The policy itself is package egress's;
// TestHTTPTasksKeepTheEnvironmentsSeal runs with it.
type anyClient struct{ c *http.Client }

func (a anyClient) Client(string) *http.Client { return a.c }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitDone(t testing.TB, eng *engine.Engine, env, id string) v1.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exec, err := eng.Wait(ctx, env, id)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	return exec
}

func sameJSON(t testing.TB, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("not JSON: %s", got)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("bad expectation %s", want)
	}
	return reflect.DeepEqual(a, b)
}

func TestExecutionRunsEveryKindOfState(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "shop", "checkout", checkout)
	fake := &fakeWorkloads{}
	start0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h := start(t, st, fake, newSkipClock(start0), nil)

	exec, err := h.eng.Start(t.Context(), "shop", "checkout", json.RawMessage(checkoutInput))
	if err != nil {
		t.Fatal(err)
	}
	if exec.Status != v1.ExecutionRunning || exec.ID == "" || exec.Generation != 1 {
		t.Fatalf("started: %+v", exec)
	}
	done := waitDone(t, h.eng, "shop", exec.ID)
	if done.Status != v1.ExecutionSucceeded || !sameJSON(t, done.Output, checkoutOutput) {
		t.Fatalf("finished %s %s/%s with output %s, want %s", done.Status, done.Error, done.Cause, done.Output, checkoutOutput)
	}
	// The Wait took an hour and the retries 2s + 4s, on the clock.
	if took := done.StopDate.Sub(done.StartDate); took < time.Hour+6*time.Second {
		t.Errorf("the execution took %s on the clock; the Wait and retries were not waited", took)
	}
	// Calls: 1 + 5 doubles, 1 reservation, 3 flaky attempts, 1 payment;
	// every one with its own key, execution id first.
	want := map[string]int{"function:double": 6, "service:inventory/reserve": 1, "function:flaky": 3, "function:pay": 1}
	if !reflect.DeepEqual(fake.calls, want) {
		t.Errorf("calls %v, want %v", fake.calls, want)
	}
	keys := fake.seenKeys()
	if len(slices.Compact(slices.Sorted(slices.Values(keys)))) != len(keys) {
		t.Errorf("a key was used twice in an uncrashed run: %v", keys)
	}
	for i, hdr := range fake.headers {
		if !strings.HasPrefix(keys[i], exec.ID+"/") || hdr.Get(engine.ExecutionIDHeader) != exec.ID || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("call %d headers %v", i, hdr)
		}
	}

	// History: numbered 1..n, chained, timed by the clock, shaped like
	// Step Functions'.
	hist, err := h.eng.History(t.Context(), "shop", exec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, ev := range hist {
		types = append(types, ev.Type)
		if ev.ID != int64(i+1) || (i > 0 && ev.PreviousEventID != int64(i)) || ev.Timestamp.Before(start0) {
			t.Errorf("event %d: id %d previous %d at %s", i, ev.ID, ev.PreviousEventID, ev.Timestamp)
		}
	}
	first, last := hist[0], hist[len(hist)-1]
	if first.Type != "ExecutionStarted" || !bytes.Contains(first.Details, []byte(`"input":{"items":[1,2,3,4,5],"n":6}`)) {
		t.Errorf("first event %s %s", first.Type, first.Details)
	}
	if last.Type != "ExecutionSucceeded" || !bytes.Contains(last.Details, []byte(`"output":`)) {
		t.Errorf("last event %s %s", last.Type, last.Details)
	}
	for _, typ := range []string{"TaskScheduled", "TaskSucceeded", "TaskFailed", "ChoiceStateEntered", "WaitStateEntered", "MapStateEntered", "ParallelStateEntered"} {
		if !slices.Contains(types, typ) {
			t.Errorf("no %s event in %v", typ, types)
		}
	}
	for _, ev := range hist {
		if ev.Type == "TaskScheduled" && ev.StateName == "Double" && !bytes.Contains(ev.Details, []byte(`"resource":"function:double"`)) {
			t.Errorf("TaskScheduled details %s", ev.Details)
		}
	}

	list, err := h.eng.List(t.Context(), "shop", "checkout")
	if err != nil || len(list) != 1 || list[0].ID != exec.ID {
		t.Errorf("List: %v %+v", err, list)
	}
	if list, _ := h.eng.List(t.Context(), "shop", "other"); len(list) != 0 {
		t.Errorf("List of another workflow: %+v", list)
	}
}

func TestStartRefusesWhatCannotRun(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "shop", "checkout", checkout)
	h := start(t, st, &fakeWorkloads{}, newSkipClock(time.Now()), nil)
	if _, err := h.eng.Start(t.Context(), "shop", "nope", nil); !v1.IsNotFound(err) {
		t.Errorf("unknown workflow: %v, want NotFound", err)
	}
	if _, err := h.eng.Start(t.Context(), "shop", "checkout", json.RawMessage(`{"n":`)); !v1.IsInvalid(err) {
		t.Errorf("input not JSON: %v, want Invalid", err)
	}
	if _, err := h.eng.Get(t.Context(), "shop", "nope-123"); !v1.IsNotFound(err) {
		t.Errorf("Get of an unknown id: %v", err)
	}
	if err := h.eng.Stop(t.Context(), "shop", "nope-123", "", ""); !v1.IsNotFound(err) {
		t.Errorf("Stop of an unknown id: %v", err)
	}
}

// Failures end the execution FAILED with the States Language error, and
// http(s) resources are POSTed to with the same headers.
func TestTaskResultsAndErrors(t *testing.T) {
	var got []http.Header
	var mu sync.Mutex
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		switch r.URL.Path {
		case "/echo":
			json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "got": in})
		case "/slow":
			<-r.Context().Done()
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer outside.Close()

	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	task := func(res string, extra string) string {
		return `{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "` + res + `", "End": true` + extra + `}}}`
	}
	putWorkflow(t, st, "e", "echo", task(outside.URL+"/echo", ""))
	putWorkflow(t, st, "e", "broken", task(outside.URL+"/broken", ""))
	putWorkflow(t, st, "e", "slow", task(outside.URL+"/slow", `, "TimeoutSeconds": 1`))
	putWorkflow(t, st, "e", "text", task("function:text", ""))
	putWorkflow(t, st, "e", "missing", task("function:missing", ""))
	putWorkflow(t, st, "e", "declined", task("function:pay", ""))
	putWorkflow(t, st, "e", "small", `{"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "TooSmall", "Cause": "n is too small"}}}`)
	h := start(t, st, &fakeWorkloads{}, newSkipClock(time.Now()), anyClient{outside.Client()})

	for _, tc := range []struct {
		wf, status, errName, cause, output string
	}{
		{wf: "echo", status: v1.ExecutionSucceeded, output: `{"method": "POST", "got": {"a": 1}}`},
		{wf: "text", status: v1.ExecutionSucceeded, output: `"plain words"`},
		{wf: "broken", status: v1.ExecutionFailed, errName: "States.TaskFailed", cause: "HTTP 500 Internal Server Error: broken"},
		{wf: "slow", status: v1.ExecutionFailed, errName: "States.Timeout"},
		{wf: "missing", status: v1.ExecutionFailed, errName: "States.TaskFailed", cause: "HTTP 404 Not Found"},
		{wf: "declined", status: v1.ExecutionFailed, errName: "CardDeclined", cause: "insufficient funds"},
		{wf: "small", status: v1.ExecutionFailed, errName: "TooSmall", cause: "n is too small"},
	} {
		exec, err := h.eng.Start(t.Context(), "e", tc.wf, json.RawMessage(`{"a": 1}`))
		if err != nil {
			t.Fatal(err)
		}
		done := waitDone(t, h.eng, "e", exec.ID)
		if done.Status != tc.status || done.Error != tc.errName || !strings.HasPrefix(done.Cause, tc.cause) {
			t.Errorf("%s: %s %q %q, want %s %q %q", tc.wf, done.Status, done.Error, done.Cause, tc.status, tc.errName, tc.cause)
		}
		if tc.output != "" && !sameJSON(t, done.Output, tc.output) {
			t.Errorf("%s: output %s, want %s", tc.wf, done.Output, tc.output)
		}
		hist, _ := h.eng.History(t.Context(), "e", exec.ID)
		if want := map[string]string{v1.ExecutionSucceeded: "ExecutionSucceeded", v1.ExecutionFailed: "ExecutionFailed"}[tc.status]; hist[len(hist)-1].Type != want {
			t.Errorf("%s: last event %s, want %s", tc.wf, hist[len(hist)-1].Type, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, hdr := range got {
		if hdr.Get(engine.IdempotencyKeyHeader) == "" || hdr.Get(engine.ExecutionIDHeader) == "" {
			t.Errorf("an http task came without the headers: %v", hdr)
		}
	}
}

// Stop aborts an execution in a Wait, and one in a task, at once.
func TestStopAbortsAWaitingExecution(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "e", "sleepy", `{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": true}}}`)
	putWorkflow(t, st, "e", "stuck", `{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "function:stuck", "End": true}}}`)
	fake := &fakeWorkloads{block: "stuck"}
	// The real clock: the Wait really waits.
	eng := engine.New(engine.Config{Store: st, Invoker: fake})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { eng.Run(ctx); close(runDone) }()
	defer func() { cancel(); <-runDone }()

	for _, wf := range []string{"sleepy", "stuck"} {
		exec, err := eng.Start(t.Context(), "e", wf, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Stop once it is in its state: the history says so.
		testutil.WaitForValue(t, 10*time.Second, wf+" to enter its state", func() ([]v1.HistoryEvent, bool) {
			hist, _ := eng.History(t.Context(), "e", exec.ID)
			return hist, len(hist) >= 2
		})
		begin := time.Now()
		if err := eng.Stop(t.Context(), "e", exec.ID, "Cancelled", "the customer asked"); err != nil {
			t.Fatalf("%s: stop: %v", wf, err)
		}
		got, _ := eng.Get(t.Context(), "e", exec.ID)
		if got.Status != v1.ExecutionAborted || got.Error != "Cancelled" || got.Cause != "the customer asked" || got.StopDate.IsZero() {
			t.Errorf("%s: after Stop: %+v", wf, got)
		}
		if took := time.Since(begin); took > 5*time.Second {
			t.Errorf("%s: Stop took %s", wf, took)
		}
		hist, _ := eng.History(t.Context(), "e", exec.ID)
		if last := hist[len(hist)-1]; last.Type != "ExecutionAborted" {
			t.Errorf("%s: last event %s", wf, last.Type)
		}
		if err := eng.Stop(t.Context(), "e", exec.ID, "", ""); !v1.IsConflict(err) {
			t.Errorf("%s: second Stop: %v, want Conflict", wf, err)
		}
	}
}

// An engine that stops (a clean shutdown) in the middle of a Wait leaves
// the execution RUNNING; the next one waits only what is left.
func TestWaitSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	st := openStore(t, path)
	putWorkflow(t, st, "e", "sleepy", `{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "Next": "P"}, "P": {"Type": "Pass", "Result": "woke", "End": true}}}`)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	// A clock that never moves: the Wait cannot end in this engine.
	frozen := func() time.Time { return t0 }
	eng := engine.New(engine.Config{Store: st, Clock: frozen, After: func(time.Duration) <-chan time.Time { return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { eng.Run(ctx); close(runDone) }()
	// Characters encoding/json escapes for HTML: the replay must still
	// recognise the events already in the history.
	exec, err := eng.Start(t.Context(), "e", "sleepy", json.RawMessage(`{"note": "a<b & c>d"}`))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitForValue(t, 10*time.Second, "the Wait state to be entered", func() ([]v1.HistoryEvent, bool) {
		hist, _ := eng.History(t.Context(), "e", exec.ID)
		return hist, len(hist) > 0 && hist[len(hist)-1].Type == "WaitStateEntered"
	})
	cancel()
	<-runDone
	if got, _ := eng.Get(t.Context(), "e", exec.ID); got.Status != v1.ExecutionRunning {
		t.Fatalf("after a shutdown: %s", got.Status)
	}
	st.Close()

	// 59 minutes later, on a clock that skips: it waits one more minute.
	st = openStore(t, path)
	clock := newSkipClock(t0.Add(59 * time.Minute))
	h := start(t, st, &fakeWorkloads{}, clock, nil)
	done := waitDone(t, h.eng, "e", exec.ID)
	if done.Status != v1.ExecutionSucceeded || string(done.Output) != `"woke"` {
		t.Fatalf("resumed: %+v", done)
	}
	if !done.StopDate.Equal(t0.Add(time.Hour)) {
		t.Errorf("finished at %s, want the Wait's end %s", done.StopDate, t0.Add(time.Hour))
	}
	hist, _ := h.eng.History(t.Context(), "e", exec.ID)
	n := 0
	for _, ev := range hist {
		if ev.Type == "WaitStateEntered" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d WaitStateEntered events after the restart, want 1: %v", n, hist)
	}
}
