package asl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

func TestParallel(t *testing.T) {
	def := `{"StartAt":"P","States":{"P":{"Type":"Parallel","Parameters":{"v.$":"$.v"},"ResultSelector":{"sum.$":"States.MathAdd($[0], $[1].w)"},"ResultPath":"$.out","End":true,"Branches":[
		{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"function:slow","OutputPath":"$.v","End":true}}},
		{"StartAt":"B","States":{"B":{"Type":"Pass","Parameters":{"w.$":"$.v"},"End":true}}}]}}}`
	m := mustParse(t, def)
	rt := newMem(t)
	rt.tasks["function:slow"] = echo
	out, err := m.Run(context.Background(), json.RawMessage(`{"v":20}`), cobj(), rt)
	if err != nil || canon(t, string(out)) != `{"out":{"sum":40},"v":20}` {
		t.Fatalf("out %s err %v", out, err)
	}
	runCases(t, []runCase{
		{name: "results in branch order", def: `{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,"Branches":[
			{"StartAt":"A","States":{"A":{"Type":"Pass","Result":"a","End":true}}},
			{"StartAt":"B","States":{"B":{"Type":"Pass","Result":"b","End":true}}},
			{"StartAt":"C","States":{"C":{"Type":"Pass","Result":"c","End":true}}}]}}}`, want: `["a","b","c"]`},
		{name: "branch failure fails the state and is catchable", def: `{"StartAt":"P","States":{"P":{"Type":"Parallel","Next":"Ok","Branches":[
			{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}},
			{"StartAt":"B","States":{"B":{"Type":"Fail","Error":"Boom","Cause":"b"}}}],
			"Catch":[{"ErrorEquals":["Boom"],"ResultPath":"$.e","Next":"Caught"}]},
			"Ok":{"Type":"Succeed"},"Caught":{"Type":"Pass","End":true}}}`, input: `{}`, want: `{"e":{"Error":"Boom","Cause":"b"}}`},
	})
}

func TestMap(t *testing.T) {
	runCases(t, []runCase{
		{name: "ItemsPath results in order", def: one(`{"Type":"Map","ItemsPath":"$.items","ItemProcessor":{"StartAt":"D","States":{"D":{"Type":"Pass","Parameters":{"d.$":"States.MathAdd($.n, $.n)"},"OutputPath":"$.d","End":true}}},"ResultPath":"$.doubled","End":true}`),
			input: `{"items":[{"n":1},{"n":2},{"n":3}]}`, want: `{"items":[{"n":1},{"n":2},{"n":3}],"doubled":[2,4,6]}`},
		{name: "ItemSelector with Map.Item", def: one(`{"Type":"Map","ItemsPath":"$.items","ItemSelector":{"i.$":"$$.Map.Item.Index","v.$":"$$.Map.Item.Value","c.$":"$.customer"},"Iterator":{"StartAt":"D","States":{"D":{"Type":"Pass","End":true}}},"End":true}`),
			input: `{"customer":"ann","items":["x","y"]}`, want: `[{"i":0,"v":"x","c":"ann"},{"i":1,"v":"y","c":"ann"}]`},
		{name: "Parameters is the older ItemSelector", def: one(`{"Type":"Map","Parameters":{"v.$":"$$.Map.Item.Value"},"Iterator":{"StartAt":"D","States":{"D":{"Type":"Pass","End":true}}},"End":true}`),
			input: `[1,2]`, want: `[{"v":1},{"v":2}]`},
		{name: "empty array", def: one(`{"Type":"Map","ItemProcessor":{"StartAt":"D","States":{"D":{"Type":"Pass","End":true}}},"End":true}`), input: `[]`, want: `[]`},
		{name: "not an array", def: one(`{"Type":"Map","ItemsPath":"$.x","ItemProcessor":{"StartAt":"D","States":{"D":{"Type":"Pass","End":true}}},"End":true}`), input: `{"x":1}`, err: ErrRuntime},
		{name: "iteration failure", def: one(`{"Type":"Map","ItemProcessor":{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$","NumericEquals":2,"Next":"F"}],"Default":"P"},"F":{"Type":"Fail","Error":"Two"},"P":{"Type":"Pass","End":true}}},"End":true}`),
			input: `[1,2,3]`, err: "Two"},
		{name: "nested map", def: one(`{"Type":"Map","ItemProcessor":{"StartAt":"Inner","States":{"Inner":{"Type":"Map","ItemProcessor":{"StartAt":"D","States":{"D":{"Type":"Pass","Parameters":{"x.$":"States.Format('{}', $)"},"OutputPath":"$.x","End":true}}},"End":true}}},"End":true}`),
			input: `[[1,2],[3]]`, want: `[["1","2"],["3"]]`},
	})
}

func TestMapMaxConcurrency(t *testing.T) {
	for _, c := range []struct {
		limit, items, want int
	}{{2, 8, 2}, {1, 5, 1}, {0, 6, 6}} {
		def := one(fmt.Sprintf(`{"Type":"Map","MaxConcurrency":%d,"ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","End":true}}},"End":true}`, c.limit))
		m := mustParse(t, def)
		rt := newMem(t)
		rt.hold = c.want
		rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
			var n int
			json.Unmarshal(c.Input, &n)
			return json.RawMessage(fmt.Sprint(n * 10)), nil
		}
		var items []string
		var want []string
		for i := range c.items {
			items = append(items, fmt.Sprint(i))
			want = append(want, fmt.Sprint(i*10))
		}
		out, err := m.Run(context.Background(), json.RawMessage("["+strings.Join(items, ",")+"]"), cobj(), rt)
		if err != nil || string(out) != "["+strings.Join(want, ",")+"]" {
			t.Fatalf("limit %d: out %s err %v", c.limit, out, err)
		}
		if rt.peak != c.want {
			t.Errorf("MaxConcurrency %d over %d items: peak of %d tasks in flight, want %d", c.limit, c.items, rt.peak, c.want)
		}
	}
}

// TestMapEventsInIndexOrder: iterations finish in reverse order, yet the
// history lists each iteration's events together, in index order.
func TestMapEventsInIndexOrder(t *testing.T) {
	m := mustParse(t, one(`{"Type":"Map","ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","End":true}}},"End":true}`))
	rt := newMem(t)
	gates := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	var started int32
	rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
		var i int
		json.Unmarshal(c.Input, &i)
		atomic.AddInt32(&started, 1)
		<-gates[i]
		return c.Input, nil
	}
	done := make(chan error)
	go func() {
		_, err := m.Run(context.Background(), json.RawMessage(`[0,1,2]`), cobj(), rt)
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "all three branches to start", func() bool { return atomic.LoadInt32(&started) == 3 })
	close(gates[2])
	close(gates[1])
	close(gates[0])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rt.events {
		if e.StateName == "T" || strings.HasPrefix(e.Type, "MapIteration") || strings.HasPrefix(e.Type, "Task") {
			var d struct{ Index *int }
			json.Unmarshal(e.Details, &d)
			if d.Index != nil {
				got = append(got, fmt.Sprintf("%s[%d]", e.Type, *d.Index))
			} else {
				got = append(got, e.Type+" "+e.Key)
			}
		}
	}
	want := []string{}
	for i := range 3 {
		k := fmt.Sprintf("S#1/a1[%d]/T#1", i)
		want = append(want, fmt.Sprintf("MapIterationStarted[%d]", i), "TaskStateEntered "+k, "TaskScheduled "+k, "TaskSucceeded "+k, "TaskStateExited "+k, fmt.Sprintf("MapIterationSucceeded[%d]", i))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
}

func TestMapFailureCancelsLaterIterations(t *testing.T) {
	m := mustParse(t, one(`{"Type":"Map","ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:f","End":true}}},"End":true}`))
	rt := newMem(t)
	rt.tasks["function:f"] = func(c TaskCall) (json.RawMessage, error) {
		if string(c.Input) == `1` {
			return nil, &Error{Name: "Bad", Cause: "one"}
		}
		return c.Input, nil
	}
	rt.hold = 4
	_, err := m.Run(context.Background(), json.RawMessage(`[0,1,2,3]`), cobj(), rt)
	if se, ok := err.(*Error); !ok || se.Name != "Bad" {
		t.Fatalf("err %v, want Bad", err)
	}
	for _, e := range rt.events {
		if strings.Contains(e.Key, "[2]") || strings.Contains(e.Key, "[3]") {
			t.Fatalf("event of an iteration after the failed one: %+v", e)
		}
	}
	if ts := joinTypes(rt.eventTypes()); !strings.HasSuffix(ts, "MapIterationFailed MapStateFailed ExecutionFailed") {
		t.Fatalf("events %s", ts)
	}
}

// TestReplay runs the order workflow (Choice, Retry with jitter, Catch, Map
// with concurrency, Parallel, Wait, intrinsics with UUID and random numbers)
// once against a runtime that records every answer, then again against one
// that answers only from that record: the output and the whole history must
// be the same, and the replay must ask nothing new.
func TestReplay(t *testing.T) {
	def, err := os.ReadFile("testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, string(def))
	for _, input := range []string{
		`{"orderId":"o-1","customer":{"id":"c-9","tier":"gold"},"items":[{"sku":"a","qty":1,"price":5},{"sku":"b","qty":2,"price":7},{"sku":"c","qty":1,"price":100}],"card":"4111"}`,
		`{"orderId":"o-2","customer":{"id":"c-1","tier":"basic"},"items":[{"sku":"z","qty":3,"price":1}],"card":"declined"}`,
		`{"orderId":"o-3","customer":{"id":"c-2","tier":"basic"},"items":[],"card":"4111"}`,
	} {
		rec := newMem(t)
		orderTasks(rec)
		out1, err1 := m.Run(context.Background(), json.RawMessage(input), cobj(), rec)
		if err1 != nil {
			t.Logf("first run failed: %v", err1)
		}
		rp := &replayRuntime{t: t, journal: rec.journal}
		out2, err2 := m.Run(context.Background(), json.RawMessage(input), cobj(), rp)
		if string(out1) != string(out2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("replay gave %s, %v; first run %s, %v", out2, err2, out1, err1)
		}
		if !reflect.DeepEqual(rec.events, rp.events) {
			t.Fatalf("replayed history differs:\nfirst  %v\nreplay %v", rec.eventTypes(), joinEvents(rp.events))
		}
		t.Logf("%s → %s (%d events, %d journal entries)", input[:18], out1, len(rec.events), len(rec.journal))
	}
}

// TestReplayTestdata replays the other realistic definitions the same way,
// with every task echoing its payload.
func TestReplayTestdata(t *testing.T) {
	for file, input := range map[string]string{
		"testdata/signup.json": `{"email":"ann@example.com","name":"Ann","pollSeconds":60}`,
		"testdata/batch.json":  `{"records":[1,2,3,4,5,6,7]}`,
	} {
		def, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := mustParse(t, string(def))
		rec := newMem(t)
		var n int32
		rec.fallback = func(c TaskCall) (json.RawMessage, error) {
			if c.Resource == "function:transform" && atomic.AddInt32(&n, 1)%4 == 0 {
				return nil, errors.New("flaky transform")
			}
			if c.Resource == "http://accounts.internal/verified" {
				return json.RawMessage(`{"verified":false}`), nil
			}
			return c.Payload(), nil
		}
		out1, err1 := m.Run(context.Background(), json.RawMessage(input), cobj(), rec)
		rp := &replayRuntime{t: t, journal: rec.journal}
		out2, err2 := m.Run(context.Background(), json.RawMessage(input), cobj(), rp)
		if string(out1) != string(out2) || fmt.Sprint(err1) != fmt.Sprint(err2) || !reflect.DeepEqual(rec.events, rp.events) {
			t.Fatalf("%s: replay gave %s, %v; first run %s, %v", file, out2, err2, out1, err1)
		}
		t.Logf("%s → %s %v (%d events, clock advanced %v)", file, out1, err1, len(rec.events), rec.now.Sub(t0))
	}
}

func joinEvents(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Type)
	}
	return out
}

// orderTasks wires the functions testdata/order.json calls: a reserve that
// fails twice before succeeding, a card charge that declines one card, and
// plain ones.
func orderTasks(rt *memRuntime) {
	var reserveCalls int32
	rt.rand = func(key string) float64 { return float64(len(key)%10) / 10 }
	rt.tasks["function:validate"] = func(c TaskCall) (json.RawMessage, error) { return json.RawMessage(`{"valid":true}`), nil }
	rt.tasks["function:reserve"] = func(c TaskCall) (json.RawMessage, error) {
		if atomic.AddInt32(&reserveCalls, 1)%3 != 0 {
			return nil, &Error{Name: "Inventory.Busy", Cause: "try again"}
		}
		var in struct{ Sku string }
		json.Unmarshal(c.Payload(), &in)
		return json.RawMessage(`{"reserved":"` + in.Sku + `"}`), nil
	}
	rt.tasks["function:charge"] = func(c TaskCall) (json.RawMessage, error) {
		var in struct{ Card string }
		json.Unmarshal(c.Payload(), &in)
		if in.Card == "declined" {
			return nil, &Error{Name: "Payment.Declined", Cause: "card declined"}
		}
		return json.RawMessage(`{"chargeId":"ch-1"}`), nil
	}
	rt.tasks["service:mailer/send"] = func(c TaskCall) (json.RawMessage, error) { return json.RawMessage(`{"sent":true}`), nil }
	rt.tasks["service:ledger/record"] = func(c TaskCall) (json.RawMessage, error) { return json.RawMessage(`{"entry":1}`), nil }
}
