// Command workflow measures durable state transitions per second: executions
// of a chain of Pass and Choice states (no I/O in the states) run by the
// real engine on the real bbolt store (fsync on), at 1, 4, 16 and 64
// concurrent executions, beside the interpreter alone on an in-memory
// runtime in the same run (the cost of durability).
//
//	go run ./bench/workflow [-states 50] [-executions 200]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/workflow/asl"
	"berth.dev/berth/internal/workflow/engine"
)

func main() {
	states := flag.Int("states", 50, "states per execution (Pass and Choice alternating)")
	executions := flag.Int("executions", 200, "executions per measurement")
	flag.Parse()
	if err := run(*states, *executions); err != nil {
		fmt.Fprintln(os.Stderr, "bench/workflow:", err)
		os.Exit(1)
	}
}

// chain is a definition of n states: Pass, Choice, Pass, Choice, …
func chain(n int) []byte {
	st := map[string]any{}
	for i := range n {
		name := fmt.Sprintf("S%d", i)
		next := fmt.Sprintf("S%d", i+1)
		last := i == n-1
		if i%2 == 0 {
			s := map[string]any{"Type": "Pass", "Parameters": map[string]any{"i": i, "v.$": "$.v"}}
			if last {
				s["End"] = true
			} else {
				s["Next"] = next
			}
			st[name] = s
			continue
		}
		if last {
			st[name] = map[string]any{"Type": "Succeed"}
			continue
		}
		st[name] = map[string]any{"Type": "Choice",
			"Choices": []any{map[string]any{"Variable": "$.v", "NumericGreaterThanEquals": 0, "Next": next}},
			"Default": next}
	}
	b, _ := json.Marshal(map[string]any{"StartAt": "S0", "States": st})
	return b
}

type memRuntime struct{}

func (memRuntime) Task(context.Context, string, asl.TaskCall) (json.RawMessage, error) {
	return nil, &asl.Error{Name: "States.TaskFailed"}
}
func (memRuntime) SleepUntil(context.Context, string, time.Time) error { return nil }
func (memRuntime) Now(string) time.Time                                { return time.Now() }
func (memRuntime) Random(string) float64                               { return 0.5 }
func (memRuntime) UUID(string) string                                  { return "u" }
func (memRuntime) Record(asl.Event)                                    {}

func run(states, executions int) error {
	def := chain(states)
	m, err := asl.Parse(def)
	if err != nil {
		return err
	}
	ctx := context.Background()

	t0 := time.Now()
	for range executions {
		if _, err := m.Run(ctx, json.RawMessage(`{"v":1}`), asl.ContextObject{ExecutionID: "x"}, memRuntime{}); err != nil {
			return err
		}
	}
	mem := time.Since(t0)

	dir, err := os.MkdirTemp("", "bwf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	wf := &v1.Workflow{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
		Metadata: v1.ObjectMeta{Name: "chain", Environment: "default"},
		Spec:     v1.WorkflowSpec{Definition: def},
	}
	if err := store.Create(ctx, st, wf); err != nil {
		return err
	}
	eng := engine.New(engine.Config{Store: st})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go eng.Run(rctx)

	fmt.Printf("durable state transitions, chains of %d Pass/Choice states, %d executions per row\n", states, executions)
	fmt.Printf("%-34s %14s %14s\n", "", "transitions/s", "executions/s")
	fmt.Printf("%-34s %14.0f %14.0f\n", "interpreter alone (in memory)",
		float64(states*executions)/mem.Seconds(), float64(executions)/mem.Seconds())
	for _, conc := range []int{1, 4, 16, 64} {
		t0 := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		var firstErr error
		var mu sync.Mutex
		for range executions {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ex, err := eng.Start(ctx, "default", "chain", json.RawMessage(`{"v":1}`))
				if err == nil {
					ex, err = eng.Wait(ctx, "default", ex.ID)
				}
				if err == nil && ex.Status != v1.ExecutionSucceeded {
					err = fmt.Errorf("execution %s: %s %s", ex.ID, ex.Status, ex.Cause)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		d := time.Since(t0)
		fmt.Printf("%-34s %14.0f %14.0f\n", fmt.Sprintf("durable engine, %d concurrent", conc),
			float64(states*executions)/d.Seconds(), float64(executions)/d.Seconds())
	}
	return nil
}
