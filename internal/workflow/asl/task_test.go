package asl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTaskIO(t *testing.T) {
	runCases(t, []runCase{
		{name: "input processing order", def: one(`{"Type":"Task","Resource":"function:f","InputPath":"$.order",
			"Parameters":{"id.$":"$.id","exec.$":"$$.Execution.Id","static":"s"},
			"ResultSelector":{"total.$":"$.price","n.$":"States.ArrayLength($.items)"},
			"ResultPath":"$.result","OutputPath":"$.result","End":true}`),
			input: `{"order":{"id":7}}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": func(c TaskCall) (json.RawMessage, error) {
				if got := canon(t, string(c.Parameters)); got != `{"exec":"exec-1","id":7,"static":"s"}` {
					return nil, fmt.Errorf("parameters %s", got)
				}
				if string(c.Input) != `{"id":7}` {
					return nil, fmt.Errorf("input %s", c.Input)
				}
				return json.RawMessage(`{"price":42,"items":[1,2]}`), nil
			}},
			want: `{"total":42,"n":2}`},
		{name: "ResultPath keeps raw input", def: one(`{"Type":"Task","Resource":"function:f","ResultPath":"$.r","End":true}`),
			input: `{"a":1}`, tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": ok(`"done"`)}, want: `{"a":1,"r":"done"}`},
		{name: "empty result is null", def: one(`{"Type":"Task","Resource":"function:f","ResultPath":"$.r","End":true}`),
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": ok(``)}, want: `{"r":null}`},
		{name: "plain error is TaskFailed", def: one(`{"Type":"Task","Resource":"function:f","End":true}`),
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": func(TaskCall) (json.RawMessage, error) { return nil, errors.New("boom") }},
			err:   ErrTaskFailed, cause: "boom"},
		{name: "deadline exceeded is Timeout", def: one(`{"Type":"Task","Resource":"function:f","TimeoutSeconds":5,"End":true}`),
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": func(c TaskCall) (json.RawMessage, error) {
				if c.Timeout != 5*time.Second {
					return nil, fmt.Errorf("timeout %v", c.Timeout)
				}
				return nil, context.DeadlineExceeded
			}},
			err: ErrTimeout},
		{name: "TimeoutSecondsPath", def: one(`{"Type":"Task","Resource":"function:f","TimeoutSecondsPath":"$.t","HeartbeatSecondsPath":"$.h","End":true}`), input: `{"t":30,"h":10}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": func(c TaskCall) (json.RawMessage, error) {
				return json.RawMessage(fmt.Sprintf(`[%v,%v]`, c.Timeout.Seconds(), c.Heartbeat.Seconds())), nil
			}},
			want: `[30,10]`},
		{name: "TimeoutSecondsPath not a number", def: one(`{"Type":"Task","Resource":"function:f","TimeoutSecondsPath":"$.t","End":true}`), input: `{"t":"x"}`, err: ErrRuntime},
		{name: "custom error name", def: one(`{"Type":"Task","Resource":"function:f","End":true}`),
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": failWith("CardDeclined", "insufficient funds")}, err: "CardDeclined", cause: "insufficient funds"},
	})
}

func TestCatch(t *testing.T) {
	def := `{"StartAt":"Charge","States":{
		"Charge":{"Type":"Task","Resource":"function:charge","Catch":[
			{"ErrorEquals":["CardDeclined"],"ResultPath":"$.error","Next":"Declined"},
			{"ErrorEquals":["States.Timeout"],"ResultPath":null,"Next":"TimedOut"},
			{"ErrorEquals":["States.ALL"],"Next":"Other"}],"Next":"Done"},
		"Declined":{"Type":"Pass","End":true},
		"TimedOut":{"Type":"Pass","Result":"timed out","ResultPath":"$.note","End":true},
		"Other":{"Type":"Pass","End":true},
		"Done":{"Type":"Succeed"}}}`
	runCases(t, []runCase{
		{name: "specific error with ResultPath", def: def, input: `{"order":1}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:charge": failWith("CardDeclined", "no money")},
			want:  `{"order":1,"error":{"Error":"CardDeclined","Cause":"no money"}}`},
		{name: "timeout with null ResultPath", def: def, input: `{"order":1}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:charge": failWith(ErrTimeout, "")},
			want:  `{"order":1,"note":"timed out"}`},
		{name: "States.ALL replaces input", def: def, input: `{"order":1}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:charge": failWith("Weird", "x")},
			want:  `{"Error":"Weird","Cause":"x"}`},
		{name: "success goes to Next", def: def, input: `{"order":1}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:charge": ok(`{"paid":true}`)}, want: `{"paid":true}`},
		{name: "TaskFailed does not match Timeout", def: `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Catch":[{"ErrorEquals":["States.TaskFailed"],"Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": failWith(ErrTimeout, "")}, err: ErrTimeout},
		{name: "TaskFailed matches custom errors", def: `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Catch":[{"ErrorEquals":["States.TaskFailed"],"Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": failWith("Custom", "")}, want: `{"Error":"Custom","Cause":""}`},
		{name: "States.ALL does not catch States.Runtime", def: `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","OutputPath":"$.nope","Catch":[{"ErrorEquals":["States.ALL"],"Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": ok(`{}`)}, err: ErrRuntime},
		{name: "ParameterPathFailure is catchable", def: `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Parameters":{"x.$":"$.nope"},"Catch":[{"ErrorEquals":["States.ParameterPathFailure"],"Next":"C"}],"End":true},"C":{"Type":"Pass","Result":"caught","End":true}}}`,
			tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": ok(`{}`)}, want: `"caught"`},
		{name: "catcher ResultPath into a string fails", def: `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.a.b","Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`,
			input: `{"a":"s"}`, tasks: map[string]func(TaskCall) (json.RawMessage, error){"function:f": failWith("X", "")}, err: ErrResultPathMatchFailure},
	})
}

// retryDelays runs a Task that fails `failures` times and returns the retry
// sleeps measured on the injected clock, in seconds.
func retryDelays(t *testing.T, retry string, failures int, rand func(string) float64) ([]float64, error) {
	t.Helper()
	m := mustParse(t, one(`{"Type":"Task","Resource":"function:f","Retry":[`+retry+`],"End":true}`))
	rt := newMem(t)
	rt.rand = rand
	var n int32
	rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
		if int(atomic.AddInt32(&n, 1)) <= failures {
			return nil, &Error{Name: "Flaky", Cause: fmt.Sprintf("attempt %d", c.Attempt)}
		}
		return json.RawMessage(`"ok"`), nil
	}
	_, err := m.Run(context.Background(), json.RawMessage(`{}`), cobj(), rt)
	var out []float64
	for _, s := range rt.sleeps {
		out = append(out, s.At.Sub(s.From).Seconds())
	}
	return out, err
}

func TestRetryBackoff(t *testing.T) {
	got, err := retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":1,"BackoffRate":2,"MaxAttempts":3}`, 3, nil)
	if err != nil || !reflect.DeepEqual(got, []float64{1, 2, 4}) {
		t.Fatalf("delays %v, err %v; want [1 2 4], nil", got, err)
	}
	// One more failure than MaxAttempts allows: the error surfaces.
	got, err = retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":1,"BackoffRate":2,"MaxAttempts":3}`, 4, nil)
	var se *Error
	if !errors.As(err, &se) || se.Name != "Flaky" || se.Cause != "attempt 4" || len(got) != 3 {
		t.Fatalf("delays %v, err %v; want 3 retries then Flaky from attempt 4", got, err)
	}
	// Defaults: IntervalSeconds 1, BackoffRate 2.0, MaxAttempts 3.
	got, _ = retryDelays(t, `{"ErrorEquals":["States.ALL"]}`, 5, nil)
	if !reflect.DeepEqual(got, []float64{1, 2, 4}) {
		t.Fatalf("default delays %v, want [1 2 4]", got)
	}
	got, _ = retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":3,"BackoffRate":1.5,"MaxAttempts":4}`, 4, nil)
	if !reflect.DeepEqual(got, []float64{3, 4.5, 6.75, 10.125}) {
		t.Fatalf("delays %v, want [3 4.5 6.75 10.125]", got)
	}
	got, _ = retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":2,"BackoffRate":3,"MaxAttempts":5,"MaxDelaySeconds":10}`, 5, nil)
	if !reflect.DeepEqual(got, []float64{2, 6, 10, 10, 10}) {
		t.Fatalf("capped delays %v, want [2 6 10 10 10]", got)
	}
	got, err = retryDelays(t, `{"ErrorEquals":["Flaky"],"MaxAttempts":0}`, 1, nil)
	if len(got) != 0 || err == nil {
		t.Fatalf("MaxAttempts 0: delays %v err %v; want no retry", got, err)
	}
	// The first retrier that matches is used, even when another later one
	// would have matched too; each retrier counts its own attempts.
	got, _ = retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":5,"MaxAttempts":1},{"ErrorEquals":["States.ALL"],"IntervalSeconds":1}`, 2, nil)
	if !reflect.DeepEqual(got, []float64{5}) {
		t.Fatalf("first matching retrier: delays %v, want [5]", got)
	}
}

func TestRetryFullJitter(t *testing.T) {
	rs := []float64{0.25, 0.9, 0, 0.999}
	var i int32
	rand := func(string) float64 { return rs[int(atomic.AddInt32(&i, 1)-1)%len(rs)] }
	got, err := retryDelays(t, `{"ErrorEquals":["Flaky"],"IntervalSeconds":4,"BackoffRate":2,"MaxAttempts":4,"MaxDelaySeconds":20,"JitterStrategy":"FULL"}`, 4, rand)
	if err != nil {
		t.Fatal(err)
	}
	ceilings := []float64{4, 8, 16, 20}
	for k, d := range got {
		if d < 0 || d > ceilings[k] || math.Abs(d-rs[k]*ceilings[k]) > 1e-6 {
			t.Errorf("retry %d: delay %v, want random %v × ceiling %v", k+1, d, rs[k], ceilings[k])
		}
	}
}

func TestRetryThenCatchAndRetryCount(t *testing.T) {
	def := `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Parameters":{"try.$":"$$.State.RetryCount"},
		"Retry":[{"ErrorEquals":["Flaky"],"MaxAttempts":2}],"Catch":[{"ErrorEquals":["Flaky"],"ResultPath":"$.err","Next":"Fallback"}],"End":true},
		"Fallback":{"Type":"Pass","End":true}}}`
	m := mustParse(t, def)
	rt := newMem(t)
	var tries []string
	rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
		tries = append(tries, string(c.Parameters)+"@"+c.IdempotencyKey)
		return nil, &Error{Name: "Flaky", Cause: "again"}
	}
	out, err := m.Run(context.Background(), json.RawMessage(`{"x":1}`), cobj(), rt)
	if err != nil || canon(t, string(out)) != canon(t, `{"x":1,"err":{"Error":"Flaky","Cause":"again"}}`) {
		t.Fatalf("out %s err %v", out, err)
	}
	want := []string{`{"try":0}@exec-1/T#1/a1`, `{"try":1}@exec-1/T#1/a2`, `{"try":2}@exec-1/T#1/a3`}
	if !reflect.DeepEqual(tries, want) {
		t.Fatalf("attempts %v, want %v", tries, want)
	}
}

func TestWait(t *testing.T) {
	for _, c := range []struct {
		state, input string
		want         time.Time
	}{
		{`{"Type":"Wait","Seconds":10,"End":true}`, `{}`, t0.Add(10 * time.Second)},
		{`{"Type":"Wait","SecondsPath":"$.s","End":true}`, `{"s":3}`, t0.Add(3 * time.Second)},
		{`{"Type":"Wait","Timestamp":"2026-03-14T02:00:00Z","End":true}`, `{}`, time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)},
		{`{"Type":"Wait","TimestampPath":"$.at","End":true}`, `{"at":"2026-03-14T03:00:00+01:00"}`, time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)},
	} {
		m := mustParse(t, one(c.state))
		rt := newMem(t)
		out, err := m.Run(context.Background(), json.RawMessage(c.input), cobj(), rt)
		if err != nil || canon(t, string(out)) != canon(t, c.input) {
			t.Fatalf("%s: out %s err %v", c.state, out, err)
		}
		if len(rt.sleeps) != 1 || !rt.sleeps[0].At.Equal(c.want) || rt.sleeps[0].Key != "S#1/wait" {
			t.Fatalf("%s: sleeps %+v, want one until %v", c.state, rt.sleeps, c.want)
		}
	}
	runCases(t, []runCase{
		{name: "SecondsPath negative", def: one(`{"Type":"Wait","SecondsPath":"$.s","End":true}`), input: `{"s":-1}`, err: ErrRuntime},
		{name: "TimestampPath not a timestamp", def: one(`{"Type":"Wait","TimestampPath":"$.s","End":true}`), input: `{"s":"tomorrow"}`, err: ErrRuntime},
		{name: "Wait paths", def: one(`{"Type":"Wait","Seconds":1,"InputPath":"$.a","OutputPath":"$.b","End":true}`), input: `{"a":{"b":2}}`, want: `2`},
	})
}

func TestExecutionTimeout(t *testing.T) {
	def := `{"StartAt":"W","TimeoutSeconds":60,"States":{"W":{"Type":"Wait","Seconds":3600,"Next":"T"},"T":{"Type":"Task","Resource":"function:f","End":true}}}`
	m := mustParse(t, def)
	rt := newMem(t)
	rt.tasks["function:f"] = ok(`1`)
	_, err := m.Run(context.Background(), json.RawMessage(`{}`), cobj(), rt)
	var se *Error
	if !errors.As(err, &se) || se.Name != ErrTimeout {
		t.Fatalf("err %v, want States.Timeout", err)
	}
	if len(rt.sleeps) != 1 || !rt.sleeps[0].At.Equal(t0.Add(time.Minute)) || len(rt.calls) != 0 {
		t.Fatalf("sleeps %+v calls %d: want one sleep to the deadline and no task", rt.sleeps, len(rt.calls))
	}
	if ts := rt.eventTypes(); ts[len(ts)-1] != "ExecutionTimedOut" {
		t.Fatalf("events %v", ts)
	}

	// A task's timeout is bounded by what is left of the execution, and the
	// execution timeout cannot be caught.
	def = `{"StartAt":"T","TimeoutSeconds":60,"States":{"T":{"Type":"Task","Resource":"function:f","TimeoutSeconds":300,
		"Catch":[{"ErrorEquals":["States.ALL"],"Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`
	m = mustParse(t, def)
	rt = newMem(t)
	rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
		if c.Timeout != time.Minute {
			return nil, fmt.Errorf("timeout %v, want 1m", c.Timeout)
		}
		return nil, &Error{Name: ErrTimeout}
	}
	_, err = m.Run(context.Background(), json.RawMessage(`{}`), cobj(), rt)
	if !errors.As(err, &se) || se.Name != ErrTimeout {
		t.Fatalf("err %v, want the execution's States.Timeout", err)
	}
}

func TestContextCancelIsNotAFailure(t *testing.T) {
	m := mustParse(t, `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","Catch":[{"ErrorEquals":["States.ALL"],"Next":"C"}],"End":true},"C":{"Type":"Succeed"}}}`)
	rt := newMem(t)
	ctx, cancel := context.WithCancel(context.Background())
	rt.tasks["function:f"] = func(TaskCall) (json.RawMessage, error) { cancel(); return nil, context.Canceled }
	_, err := m.Run(ctx, json.RawMessage(`{}`), cobj(), rt)
	var se *Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
		t.Fatalf("err %v, want context.Canceled and no States error", err)
	}
	for _, ty := range rt.eventTypes() {
		if strings.HasPrefix(ty, "Execution") && ty != "ExecutionStarted" {
			t.Fatalf("recorded %s for an interrupted execution", ty)
		}
	}
}
