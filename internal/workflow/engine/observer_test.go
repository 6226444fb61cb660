package engine_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/workflow/engine"
)

// recorder is an Observer that keeps what it was told, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) ExecutionStarted(env, wf string) { r.add("started " + env + "/" + wf) }
func (r *recorder) ExecutionFinished(env, wf, status string) {
	r.add("finished " + env + "/" + wf + " " + status)
}
func (r *recorder) ExecutionLeft(env, wf string) { r.add("left " + env + "/" + wf) }
func (r *recorder) StateEntered(env, wf string)  { r.add("entered " + env + "/" + wf) }

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func TestObserverIsToldWhatExecutionsDo(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	putWorkflow(t, st, "shop", "two", `{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Succeed"}}}`)
	putWorkflow(t, st, "shop", "slow", `{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}`)
	rec := &recorder{}
	eng := engine.New(engine.Config{Store: st, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	x, err := eng.Start(ctx, "shop", "two", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, eng, "shop", x.ID)
	want := []string{"started shop/two", "entered shop/two", "entered shop/two", "finished shop/two " + v1.ExecutionSucceeded}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(rec.seen(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("observer saw %q, want %q", rec.seen(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// An execution still waiting when the engine stops has left, not
	// finished: the next engine resumes it.
	if _, err := eng.Start(ctx, "shop", "slow", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	for !slices.Contains(rec.seen(), "entered shop/slow") {
		if time.Now().After(deadline) {
			t.Fatalf("the slow execution never entered its state: %q", rec.seen())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	done <- nil
	got := rec.seen()
	if got[len(got)-1] != "left shop/slow" {
		t.Errorf("after stopping, the observer saw %q, want it to end with the slow execution leaving", got)
	}
}
