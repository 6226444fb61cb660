package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// seedFunctions stores what a server would hold with two functions: resize,
// scaled to zero after serving a burst, and worker, kept warm, fed by a
// topic and a schedule.
func seedFunctions(f *testAPI) {
	resize := &v1.Function{
		TypeMeta: tm(v1.KindFunction),
		Metadata: meta("default", "resize", 2*time.Hour),
		Spec: v1.FunctionSpec{
			Template:    v1.Template{Image: "registry.local/media/resize:v2", Resources: v1.Resources{Memory: "128Mi"}},
			Concurrency: 10,
			Scale:       v1.FunctionScale{Max: ptr[int32](20), IdleTimeout: "2m"},
			Timeout:     "10s",
			Route:       &v1.Route{Path: "/resize"},
		},
		Status: v1.FunctionStatus{ObservedGeneration: 1, Revision: 1, ImageDigest: digest124, ColdStarts: 3,
			LastColdStart: &v1.ColdStart{At: testNow.Add(-10 * time.Minute), DurationMS: 12.34, Phases: []v1.ColdStartPhase{
				{Name: "schedule", MS: 0.9}, {Name: "sandbox", MS: 0}, {Name: "start", MS: 4.21}, {Name: "init", MS: 3.3}, {Name: "route", MS: 3.93}}},
			KeepAlive: &v1.KeepAliveStatus{IdleTimeout: "10s", StandbyIdle: "4h0m0s", Standby: false, Learned: true,
				Reason: "gaps are long (median 2h0m0s of the last 12): to zero after 10s, the standby answers the next request; standby kept 4h0m0s after the last request"}},
	}
	worker := &v1.Function{
		TypeMeta: tm(v1.KindFunction),
		Metadata: meta("default", "worker", 5*time.Minute),
		Spec: v1.FunctionSpec{
			Template: v1.Template{Image: "registry.local/shop/worker:v5", Env: []v1.EnvVar{{Name: "MODE", Value: "batch"}}},
			Scale:    v1.FunctionScale{Min: ptr[int32](1), Max: ptr[int32](4), TargetUtilization: ptr(0.5)},
			Triggers: []v1.Trigger{{Topic: "orders"}, {Cron: "*/15 * * * *", Data: `{"sweep":true}`}},
			Async:    v1.Async{MaxRetries: ptr[int32](5), Backoff: "500ms", DeadLetterTopic: "orders-failed"},
		},
		Status: v1.FunctionStatus{ObservedGeneration: 2, Revision: 2, ImageDigest: digest125, Desired: 2, ReadyInstances: 1,
			InFlight: 3, ColdStarts: 1, LastColdStart: &v1.ColdStart{At: testNow.Add(-4 * time.Minute), DurationMS: 1234},
			Instances: []v1.InstanceStatus{
				{Name: "worker-2-aaaaa", Revision: 2, Phase: v1.PhaseRunning, Ready: true, IP: "10.89.0.9", Port: 8080},
				{Name: "worker-2-bbbbb", Revision: 2, Phase: v1.PhaseStarting, IP: "10.89.0.10", Port: 8080},
			}},
	}
	worker.Metadata.Generation = 2
	rev := func(n int64, image, digest string, ago time.Duration) *v1.Revision {
		return &v1.Revision{TypeMeta: tm(v1.KindRevision), Metadata: meta("default", v1.RevisionName("worker", n), ago),
			Spec: v1.RevisionSpec{Owner: "worker", OwnerKind: v1.KindFunction, Number: n, Image: image, ImageDigest: digest,
				Template: v1.Template{Image: image, Port: 8080}, ChangeCause: "apply"}}
	}
	f.seed(
		&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "default", 4*24*time.Hour)},
		&v1.Topic{TypeMeta: tm(v1.KindTopic), Metadata: meta("default", "orders", 3*time.Hour), Spec: v1.TopicSpec{Retention: "72h"}},
		&v1.Topic{TypeMeta: tm(v1.KindTopic), Metadata: meta("default", "orders-failed", 3*time.Hour)},
		resize, worker,
		rev(1, "registry.local/shop/worker:v4", digest124, 5*time.Minute),
		rev(2, "registry.local/shop/worker:v5", digest125, 4*time.Minute),
		&v1.Event{TypeMeta: tm(v1.KindEvent), Metadata: meta("default", "worker.1", 4*time.Minute), Object: "Function/worker",
			Type: "Normal", Reason: "ColdStart", Message: "instance worker-2-aaaaa ready after 1.234s", Time: testNow.Add(-4 * time.Minute)},
	)
}

func TestFunctionTablesGolden(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"get_functions", []string{"get", "functions"}},
		{"get_functions_wide", []string{"get", "fn", "-o", "wide"}},
		{"get_topics", []string{"get", "topics"}},
		{"describe_function", []string{"describe", "function", "worker"}},
		{"describe_function_at_zero", []string{"describe", "fn/resize"}},
		{"rollout_history_function", []string{"rollout", "history", "function/worker"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, f, tc.args...)
			mustSucceed(t, r)
			checkGolden(t, tc.name, r.stdout)
		})
	}
	// A topic is also "topic" on the command line.
	if r := run(t, f, "get", "topic", "orders", "-o", "name"); r.stdout != "topic/orders\n" {
		t.Errorf("get topic orders -o name: %q %s", r.stdout, r.stderr)
	}
}

const fnManifests = `apiVersion: berth.dev/v1
kind: Function
metadata: {name: resize}
spec:
  image: media/resize:v3
  triggers: [{topic: uploads}]
---
apiVersion: berth.dev/v1
kind: Topic
metadata: {name: uploads}
`

func TestApplyFunctionsAfterTheirTopics(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	r := runStdin(t, f, fnManifests, "apply", "-f", "-")
	mustSucceed(t, r)
	if r.stdout != "topic/uploads created\nfunction/resize configured\n" {
		t.Errorf("stdout %q: the topic must go first", r.stdout)
	}
	dir := writeFiles(t, map[string]string{"fn.yaml": fnManifests})
	r = run(t, f, "delete", "-f", dir)
	mustSucceed(t, r)
	if r.stdout != "function/resize deleted\ntopic/uploads deleted\n" {
		t.Errorf("delete stdout %q: the function must go before its topic", r.stdout)
	}
}

func TestApplyFunctionBadInput(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	head := "apiVersion: berth.dev/v1\nkind: Function\nmetadata: {name: bad}\nspec:\n  image: fn:1\n"
	for _, tc := range []struct {
		name, spec string
		code       int
		want       []string
	}{
		{"concurrency 0", "  concurrency: 0\n", 3, []string{"spec.concurrency", "must be at least 1"}},
		{"min above max", "  scale: {min: 5, max: 3}\n", 3, []string{"spec.scale.min: 5 is greater than spec.scale.max 3"}},
		{"invalid cron", "  triggers: [{cron: '61 * * * *'}]\n", 3, []string{"spec.triggers[0].cron", "not a valid schedule"}},
		{"volumes", "  volumes: [{name: data, mountPath: /data}]\n", 3, []string{"spec.volumes: functions are stateless"}},
		{"missing topic", "  triggers: [{topic: nowhere}]\n", 3,
			[]string{"function/bad", "spec.triggers[0].topic", `topic "nowhere" not found in environment "default"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runStdin(t, f, head+tc.spec, "apply", "-f", "-")
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
	if r := run(t, f, "get", "fn", "bad"); r.code != 5 {
		t.Errorf("a refused function was stored: exit %d", r.code)
	}
}

func TestApplyWaitForFunction(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	steps := []v1.FunctionStatus{{}, {ObservedGeneration: 1}, {ObservedGeneration: 1, ReadyInstances: 1}, {ObservedGeneration: 1, ReadyInstances: 2}}
	i := 0
	f.onGetFunction = func(fn *v1.Function) {
		fn.Status = steps[min(i, len(steps)-1)]
		i++
	}
	m := "apiVersion: berth.dev/v1\nkind: Function\nmetadata: {name: warm}\nspec: {image: fn:1, scale: {min: 2}}\n"
	r := runStdin(t, f, m, "apply", "-f", "-", "--wait")
	mustSucceed(t, r)
	want := "Waiting for function/warm: waiting for the controller to see generation 1 (it has seen 0)…\n" +
		"Waiting for function/warm: 0 of 2 minimum instances ready…\n" +
		"Waiting for function/warm: 1 of 2 minimum instances ready…\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}

	// At zero, a function is ready as soon as its spec is seen.
	i = 0
	f.onGetFunction = func(fn *v1.Function) { fn.Status = v1.FunctionStatus{ObservedGeneration: fn.Metadata.Generation} }
	r = run(t, f, "rollout", "status", "function/resize")
	mustSucceed(t, r)
	if r.stdout != "function \"resize\" successfully rolled out\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestRolloutUndoFunction(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	r := run(t, f, "rollout", "undo", "fn/worker")
	mustSucceed(t, r)
	if r.stdout != "function/worker rolled back\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	var fn v1.Function
	mustSucceed(t, getJSON(t, f, &fn, "get", "fn", "worker"))
	if fn.Spec.Image != "registry.local/shop/worker:v4" || len(fn.Spec.Triggers) != 2 {
		t.Errorf("after undo: image %q triggers %v", fn.Spec.Image, fn.Spec.Triggers)
	}
	// A bare name is a service: there is no service "worker".
	if r := run(t, f, "rollout", "undo", "worker"); r.code != 5 {
		t.Errorf("undo of a bare name: exit %d, want 5 (no such service)", r.code)
	}
	if r := run(t, f, "rollout", "undo", "topic/orders"); r.code != 2 {
		t.Errorf("undo of a topic: exit %d, want 2", r.code)
	}
}

func TestInvoke(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)

	r := run(t, f, "invoke", "resize", "-d", `{"w":100}`, "-H", "X-Request-Id: 42")
	mustSucceed(t, r)
	if r.stdout != `{"W":100}` || r.stderr != "" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	last := f.invoke.last()
	if last.contentType != "application/json" || last.header.Get("X-Request-Id") != "42" || last.async {
		t.Errorf("the function got %+v", last)
	}

	file := filepath.Join(t.TempDir(), "body.txt")
	os.WriteFile(file, []byte("from a file"), 0o644)
	if r := run(t, f, "invoke", "resize", "-d", "@"+file, "-H", "Content-Type: text/csv"); r.stdout != "FROM A FILE" {
		t.Errorf("-d @FILE: %q %s", r.stdout, r.stderr)
	}
	if ct := f.invoke.last().contentType; ct != "text/csv" {
		t.Errorf("-H Content-Type: the function got %q", ct)
	}
	if r := runStdin(t, f, "from stdin", "invoke", "resize", "-d", "@-"); r.stdout != "FROM STDIN" {
		t.Errorf("-d @-: %q %s", r.stdout, r.stderr)
	}

	// A function's error: its body on stderr, exit 1.
	r = run(t, f, "invoke", "resize", "-d", "fail")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "something broke\n") ||
		!strings.Contains(r.stderr, `function "resize" answered 500 Internal Server Error`) {
		t.Errorf("failing function: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, f, "invoke", "nope"); r.code != 5 || !strings.Contains(r.stderr, `function "nope" in environment "default" not found`) {
		t.Errorf("missing function: exit %d stderr %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"invoke"},
		{"invoke", "resize", "--callback-url", "http://x"},
		{"invoke", "resize", "-H", "no colon"},
		{"invoke", "resize", "-d", "@/does/not/exist"},
	} {
		if r := run(t, f, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, r.code, r.stderr)
		}
	}

	// Async: the id, then its state.
	r = run(t, f, "invoke", "resize", "--async", "-d", "x", "--callback-url", "https://hooks.example.com/done")
	mustSucceed(t, r)
	id := strings.TrimSpace(r.stdout)
	last = f.invoke.last()
	if !strings.HasPrefix(id, "inv-") || !last.async || last.callback != "https://hooks.example.com/done" {
		t.Fatalf("async: id %q call %+v", id, last)
	}
	r = run(t, f, "invocation", id)
	mustSucceed(t, r)
	want := "ID      FUNCTION   SOURCE   STATUS    ATTEMPTS   RESULT   AGE\n" + id + "   resize     async    Pending   0          <none>   0s\n"
	if r.stdout != want {
		t.Errorf("invocation table:\n%s\nwant:\n%s", r.stdout, want)
	}
	var inv v1.Invocation
	r = run(t, f, "get", "invocation", id, "-o", "json")
	mustSucceed(t, r)
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || inv.ID != id || inv.Function != "resize" {
		t.Errorf("get invocation -o json: %q (%v)", r.stdout, err)
	}
	if r := run(t, f, "invocation", "inv-999"); r.code != 5 {
		t.Errorf("missing invocation: exit %d", r.code)
	}
}

func TestPublish(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedFunctions(f)
	r := run(t, f, "publish", "orders", "-d", `{"id":42}`)
	mustSucceed(t, r)
	if r.stdout != "msg-1\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	f.invoke.mu.Lock()
	if len(f.invoke.published) != 1 || f.invoke.published[0] != `orders:{"id":42}` {
		t.Errorf("published %v", f.invoke.published)
	}
	f.invoke.mu.Unlock()
	if r := run(t, f, "publish", "nope", "-d", "x"); r.code != 5 || !strings.Contains(r.stderr, `topic "nope" in environment "default" not found`) {
		t.Errorf("missing topic: exit %d %q", r.code, r.stderr)
	}
}
