package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
)

const orderWorkflow = `apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: order}
spec:
  definition:
    StartAt: Check
    States:
      Check:
        Type: Choice
        Choices:
          - {Variable: "$.qty", NumericGreaterThan: 0, Next: Hold}
        Default: Reject
      Hold:
        Type: Wait
        SecondsPath: "$.wait"
        Next: Charge
      Charge:
        Type: Task
        Resource: "function:worker"
        ResultSelector: {"charged.$": "$.version"}
        ResultPath: "$.payment"
        Retry: [{ErrorEquals: ["States.TaskFailed"], IntervalSeconds: 1, MaxAttempts: 2}]
        Next: Done
      Done:
        Type: Pass
        Parameters: {"qty.$": "$.qty", "paid.$": "$.payment.charged"}
        End: true
      Reject:
        Type: Fail
        Error: Rejected
        Cause: nothing to order
`

// TestWorkflow: a States Language workflow calls a function (woken from
// zero) and finishes with the right output; one waiting in a Wait state
// survives a kill -9 of the server and finishes after the restart.
func TestWorkflow(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: worker}
spec: {image: %s}
`, echoV1)+"---\n"+orderWorkflow, "apply", "-f", "-")

	out := s.mustBerth("", "workflow", "start", "order", "--input", `{"qty": 2, "wait": 0}`, "--wait", "--timeout", "2m")
	var got map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil || got["paid"] != "v1" || got["qty"] != float64(2) {
		t.Fatalf("output %q (%v)", out, err)
	}
	_, errOut, code := s.berth("", "workflow", "start", "order", "--input", `{"qty": 0}`, "--wait", "--timeout", "1m")
	if code != 1 || !strings.Contains(errOut, "Rejected") {
		t.Fatalf("a rejected order: exit %d, %s", code, errOut)
	}

	t.Run("an execution is one trace with its tasks' calls", func(t *testing.T) {
		ctx := context.Background()
		var names []string
		testutil.WaitForState(t, 10*time.Second, "the execution's trace", func() (bool, string) {
			sums, err := s.client.Traces(ctx, client.TraceQuery{Workload: "order", Environment: "default"})
			if err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, sum := range sums {
				tr, err := s.client.Trace(ctx, sum.TraceID)
				if err != nil {
					continue
				}
				names = names[:0]
				for _, sp := range tr.Spans {
					names = append(names, sp.Name)
				}
				j := strings.Join(names, ",")
				if strings.Contains(j, "execution order") && strings.Contains(j, "task Charge") && strings.Contains(j, "gateway worker.default") {
					return true, ""
				}
				seen = append(seen, j)
			}
			return false, strings.Join(seen, " | ")
		})
	})

	t.Run("an execution in a Wait survives kill -9", func(t *testing.T) {
		ctx := context.Background()
		ex, err := s.client.StartExecution(ctx, "default", "order", []byte(`{"qty": 1, "wait": 3}`))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WaitForState(t, 10*time.Second, "the Wait state to be entered", func() (bool, string) {
			h, err := s.client.ExecutionHistory(ctx, "default", ex.ID)
			for _, e := range h {
				if e.Type == "WaitStateEntered" {
					return true, ""
				}
			}
			return false, fmt.Sprint(len(h), err)
		})
		s.kill9()
		s.start()
		var final v1.Execution
		testutil.WaitForState(t, 60*time.Second, "the execution to finish after the restart", func() (bool, string) {
			final, err = s.client.Execution(ctx, "default", ex.ID)
			return err == nil && final.Status != v1.ExecutionRunning, fmt.Sprint(final.Status, err)
		})
		if final.Status != v1.ExecutionSucceeded || !strings.Contains(string(final.Output), `"paid":"v1"`) {
			t.Fatalf("after the restart: %+v", final)
		}
		h, _ := s.client.ExecutionHistory(ctx, "default", ex.ID)
		waits := 0
		for _, e := range h {
			if e.Type == "WaitStateEntered" {
				waits++
			}
		}
		if waits != 1 {
			t.Fatalf("history has %d WaitStateEntered events after replay, want 1", waits)
		}
		out := s.mustBerth("", "workflow", "history", ex.ID)
		if !strings.Contains(out, "TaskSucceeded") || !strings.Contains(out, "ExecutionSucceeded") {
			t.Fatalf("history:\n%s", out)
		}
	})

	t.Run("a bad definition names the state and field", func(t *testing.T) {
		_, errOut, code := s.berth(`apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: bad}
spec:
  definition:
    StartAt: A
    States:
      A: {Type: Pass, Next: Nowhere}
`, "apply", "-f", "-")
		if code != 3 || !strings.Contains(errOut, "States.A.Next") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}
