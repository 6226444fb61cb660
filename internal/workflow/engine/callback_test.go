package engine_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

const approve = `{"StartAt": "Ask", "States": {
  "Ask": {"Type": "Task", "Resource": "function:ask.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"}, "ResultPath": "$.approval", "End": true}}}`

const approveWithHeartbeat = `{"StartAt": "Ask", "States": {
  "Ask": {"Type": "Task", "Resource": "function:ask.waitForTaskToken", "HeartbeatSeconds": 60,
    "Parameters": {"token.$": "$$.Task.Token"}, "End": true}}}`

// asked waits for a call of ask and returns the token it was given.
func asked(t *testing.T, f *fakeWorkloads) string {
	t.Helper()
	select {
	case body := <-f.asked:
		var in struct{ Token string }
		if err := json.Unmarshal(body, &in); err != nil || in.Token == "" {
			t.Fatalf("ask was called with %s, no token", body)
		}
		return in.Token
	case <-time.After(20 * time.Second):
		t.Fatal("ask was never called")
	}
	return ""
}

// journaled says whether the execution's journal holds an answer of kind.
func journaled(t *testing.T, h *harness, env, id, kind string) bool {
	recs, _, err := h.st.List(context.Background(), "WorkflowJournal/"+id, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(string(r.Value), `"answer":"`+kind+`"`) {
			return true
		}
	}
	return false
}

func TestTaskTokenCallbackSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	st := openStore(t, path)
	putWorkflow(t, st, "default", "approve", approve)
	fake := &fakeWorkloads{asked: make(chan []byte, 4)}
	clock := newSkipClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := start(t, st, fake, clock, nil)
	ctx := context.Background()

	exec, err := h.eng.Start(ctx, "default", "approve", json.RawMessage(`{"order": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	token := asked(t, fake)
	testutil.WaitFor(t, 20*time.Second, "the call to be journaled as sent", func() bool {
		return journaled(t, h, "default", exec.ID, "sent")
	})
	// The engine goes down while the task waits; the worker's answer
	// comes in while it is down, and counts once it is back.
	h.stop()
	if env, err := h.eng.TokenEnvironment(token); err != nil || env != "default" {
		t.Fatalf("TokenEnvironment = %q, %v", env, err)
	}
	if err := h.eng.SendTaskHeartbeat(ctx, token); err != nil {
		t.Fatalf("SendTaskHeartbeat: %v", err)
	}
	if err := h.eng.SendTaskSuccess(ctx, token, json.RawMessage(`{"approved": true}`)); err != nil {
		t.Fatalf("SendTaskSuccess: %v", err)
	}
	if err := h.eng.SendTaskSuccess(ctx, token, json.RawMessage(`{"approved": false}`)); !v1.IsConflict(err) {
		t.Fatalf("a second SendTaskSuccess: %v, want Conflict", err)
	}

	h2 := start(t, st, fake, clock, nil)
	done := waitDone(t, h2.eng, "default", exec.ID)
	if done.Status != v1.ExecutionSucceeded || !sameJSON(t, done.Output, `{"order": 7, "approval": {"approved": true}}`) {
		t.Fatalf("execution = %s %s %s", done.Status, done.Output, done.Cause)
	}
	if n := fake.calls["function:ask"]; n != 1 {
		t.Errorf("ask was called %d times; the restart must not call it again", n)
	}
	if err := h2.eng.SendTaskSuccess(ctx, token, json.RawMessage(`{}`)); !v1.IsConflict(err) {
		t.Errorf("SendTaskSuccess after the end: %v, want Conflict", err)
	}
	if _, err := h2.eng.TokenEnvironment("not-a-token"); !v1.IsInvalid(err) {
		t.Errorf("a made-up token: %v, want Invalid", err)
	}
	forged := strings.TrimRight(token, "=")
	forged = forged[:len(forged)-4] + "AAAA"
	if err := h2.eng.SendTaskSuccess(ctx, forged, json.RawMessage(`{}`)); err == nil {
		t.Errorf("a forged token was accepted")
	}
}

func TestTaskTokenFailureIsTheTasksError(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "default", "approve", approve)
	fake := &fakeWorkloads{asked: make(chan []byte, 4)}
	h := start(t, st, fake, newSkipClock(time.Now()), nil)
	ctx := context.Background()
	exec, err := h.eng.Start(ctx, "default", "approve", json.RawMessage(`{"order": 8}`))
	if err != nil {
		t.Fatal(err)
	}
	token := asked(t, fake)
	if err := h.eng.SendTaskFailure(ctx, token, "Rejected", "over budget"); err != nil {
		t.Fatal(err)
	}
	done := waitDone(t, h.eng, "default", exec.ID)
	if done.Status != v1.ExecutionFailed || done.Error != "Rejected" || done.Cause != "over budget" {
		t.Fatalf("execution = %s %s %s", done.Status, done.Error, done.Cause)
	}
}

func TestTaskTokenWithoutHeartbeatTimesOut(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "default", "approve", approveWithHeartbeat)
	fake := &fakeWorkloads{asked: make(chan []byte, 4)}
	// On the skip clock the 60 seconds pass at once.
	h := start(t, st, fake, newSkipClock(time.Now()), nil)
	ctx := context.Background()
	exec, err := h.eng.Start(ctx, "default", "approve", nil)
	if err != nil {
		t.Fatal(err)
	}
	token := asked(t, fake)
	done := waitDone(t, h.eng, "default", exec.ID)
	if done.Status != v1.ExecutionFailed || done.Error != "States.HeartbeatTimeout" {
		t.Fatalf("execution = %s %s %s", done.Status, done.Error, done.Cause)
	}
	hist, err := h.eng.History(ctx, "default", exec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var typesSeen []string
	for _, ev := range hist {
		typesSeen = append(typesSeen, ev.Type)
	}
	if !strings.Contains(strings.Join(typesSeen, ","), "TaskScheduled,TaskTimedOut") {
		t.Errorf("history = %v; want TaskScheduled then TaskTimedOut", typesSeen)
	}
	if err := h.eng.SendTaskSuccess(ctx, token, json.RawMessage(`{}`)); !v1.IsConflict(err) {
		t.Errorf("a callback after the timeout: %v, want Conflict", err)
	}
}
