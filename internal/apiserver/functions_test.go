package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

func function(name, image string, triggerTopics ...string) *v1.Function {
	f := &v1.Function{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: image}},
	}
	for _, t := range triggerTopics {
		f.Spec.Triggers = append(f.Spec.Triggers, v1.Trigger{Topic: t})
	}
	return f
}

func topic(name string) *v1.Topic {
	return &v1.Topic{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTopic}, Metadata: v1.ObjectMeta{Name: name}}
}

func decodeFunction(t *testing.T, b []byte) *v1.Function {
	t.Helper()
	var f v1.Function
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("decode function %s: %v", b, err)
	}
	return &f
}

const fnPath = "/api/v1/environments/default/functions/resize"

func TestFunctionApplyLifecycle(t *testing.T) {
	e := newEnv(t, options{})
	fn := decodeFunction(t, e.apply(fnPath, function("resize", "media/resize:1"), http.StatusCreated, "created"))
	if fn.Metadata.Generation != 1 || fn.Spec.Concurrency != 1 || *fn.Spec.Scale.Max != 10 || fn.Spec.Timeout != "30s" ||
		*fn.Spec.TerminationGracePeriodSeconds != 10 || fn.Spec.Port != 8080 {
		t.Fatalf("created function not defaulted: %+v", fn.Spec)
	}

	// The controller writes status; an apply keeps it and bumps the
	// generation only when the spec changes.
	var stored v1.Function
	if err := store.Get(t.Context(), e.store, store.KeyOf(fn), &stored); err != nil {
		t.Fatal(err)
	}
	stored.Status = v1.FunctionStatus{ObservedGeneration: 1, Revision: 1, ColdStarts: 4}
	if err := store.Update(t.Context(), e.store, &stored); err != nil {
		t.Fatal(err)
	}
	same := function("resize", "media/resize:1")
	same.Spec.Concurrency = 1
	e.apply(fnPath, same, http.StatusOK, "unchanged")

	scaled := function("resize", "media/resize:1")
	scaled.Spec.Scale.Max = ptr[int32](3)
	scaled.Status.ColdStarts = 99
	fn = decodeFunction(t, e.apply(fnPath, scaled, http.StatusOK, "configured"))
	if fn.Metadata.Generation != 2 || fn.Status.ColdStarts != 4 || fn.Status.Revision != 1 {
		t.Errorf("after a spec change: generation %d status %+v; want 2 and the controller's status", fn.Metadata.Generation, fn.Status)
	}

	got := decodeFunction(t, e.do(http.MethodGet, fnPath, nil).body)
	if *got.Spec.Scale.Max != 3 || got.Status.ColdStarts != 4 {
		t.Errorf("GET: max %d status %+v", *got.Spec.Scale.Max, got.Status)
	}
	r := e.do(http.MethodGet, "/api/v1/functions", nil)
	e.expect(r, http.StatusOK, "", "")
	var list v1.List
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("functions in all environments: %s", r.body)
	}

	// A function sent to the services path is refused with a hint.
	r = e.do(http.MethodPut, "/api/v1/environments/default/services/resize", function("resize", "x"))
	e.expect(r, http.StatusBadRequest, v1.ErrInvalid, "kind")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "functions path") {
		t.Errorf("message %q should point at the functions path", msg)
	}
	withVolume := function("resize", "x")
	withVolume.Spec.Volumes = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
	r = e.do(http.MethodPut, fnPath, withVolume)
	e.expect(r, http.StatusBadRequest, v1.ErrInvalid, "spec.volumes")
	r = e.do(http.MethodPut, fnPath, `{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":"resize"},"spec":{"image":"x","concurrency":0}}`)
	e.expect(r, http.StatusBadRequest, v1.ErrInvalid, "spec.concurrency")

	e.expect(e.do(http.MethodDelete, fnPath, nil), http.StatusOK, "", "")
	e.expect(e.do(http.MethodGet, fnPath, nil), http.StatusNotFound, v1.ErrNotFound, "")
}

func TestFunctionTopicsMustExist(t *testing.T) {
	e := newEnv(t, options{})
	fn := function("worker", "w:1", "orders")
	fn.Spec.Async.DeadLetterTopic = "failed"

	r := e.do(http.MethodPut, "/api/v1/environments/default/functions/worker", fn)
	e.expect(r, http.StatusBadRequest, v1.ErrInvalid, "spec.triggers[0].topic")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, `topic "orders" not found in environment "default"; create it with a Topic manifest`) {
		t.Errorf("message %q", msg)
	}
	// A dry run checks too.
	e.expect(e.do(http.MethodPut, "/api/v1/environments/default/functions/worker?dryRun=1", fn), http.StatusBadRequest, v1.ErrInvalid, "spec.triggers[0].topic")

	// A topic of the same name in another environment does not count.
	e.apply("/api/v1/environments/staging", environment("staging"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/topics/orders", topic("orders"), http.StatusCreated, "created")
	e.expect(e.do(http.MethodPut, "/api/v1/environments/default/functions/worker", fn), http.StatusBadRequest, v1.ErrInvalid, "spec.triggers[0].topic")

	tp := e.apply("/api/v1/environments/default/topics/orders", topic("orders"), http.StatusCreated, "created")
	var stored v1.Topic
	json.Unmarshal(tp, &stored)
	if stored.Spec.Retention != "168h" || stored.Metadata.Environment != "default" {
		t.Errorf("topic stored as %+v", stored)
	}
	e.expect(e.do(http.MethodPut, "/api/v1/environments/default/functions/worker", fn), http.StatusBadRequest, v1.ErrInvalid, "spec.async.deadLetterTopic")
	e.apply("/api/v1/environments/default/topics/failed", topic("failed"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/default/functions/worker", fn, http.StatusCreated, "created")

	// A topic in use cannot go; the answer names the functions.
	other := function("audit", "a:1", "orders")
	e.apply("/api/v1/environments/default/functions/audit", other, http.StatusCreated, "created")
	r = e.do(http.MethodDelete, "/api/v1/environments/default/topics/orders", nil)
	e.expect(r, http.StatusConflict, v1.ErrConflict, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "audit, worker") {
		t.Errorf("conflict message %q should name the functions", msg)
	}
	r = e.do(http.MethodDelete, "/api/v1/environments/default/topics/failed", nil)
	e.expect(r, http.StatusConflict, v1.ErrConflict, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "worker") || strings.Contains(msg, "audit") {
		t.Errorf("conflict message %q should name only worker", msg)
	}

	// Once the functions let go of it, it can be deleted.
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/default/functions/audit", nil), http.StatusOK, "", "")
	e.apply("/api/v1/environments/default/functions/worker", function("worker", "w:1"), http.StatusOK, "configured")
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/default/topics/orders", nil), http.StatusOK, "", "")
}

func TestEnvironmentWithFunctionsCannotBeDeleted(t *testing.T) {
	e := newEnv(t, options{})
	e.apply("/api/v1/environments/staging", environment("staging"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/topics/jobs", topic("jobs"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/functions/cron", function("cron", "c:1"), http.StatusCreated, "created")

	r := e.do(http.MethodDelete, "/api/v1/environments/staging", nil)
	e.expect(r, http.StatusConflict, v1.ErrConflict, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "functions: cron") || !strings.Contains(msg, "topics: jobs") {
		t.Errorf("message %q should list the functions and topics", msg)
	}
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/staging/functions/cron", nil), http.StatusOK, "", "")
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/staging/topics/jobs", nil), http.StatusOK, "", "")
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/staging", nil), http.StatusOK, "", "")
}

func functionRevision(owner string, n int64, image string) *v1.Revision {
	rev := revision(owner, n, image)
	rev.Spec.OwnerKind = v1.KindFunction
	rev.Metadata.Name = v1.RevisionName(owner, n)
	tmpl := v1.Template{Image: image}
	v1.DefaultFunctionTemplate(&tmpl)
	rev.Spec.Template, rev.Spec.Hash = tmpl, v1.TemplateHash(tmpl)
	return rev
}

func TestFunctionRevisionsAndRollback(t *testing.T) {
	e := newEnv(t, options{})
	e.apply(fnPath, function("resize", "media/resize:3"), http.StatusCreated, "created")
	// A service of the same name has revisions too: they are not the
	// function's.
	e.apply("/api/v1/environments/default/services/resize", service("resize", "nginx"), http.StatusCreated, "created")
	seed(t, e.store, functionRevision("resize", 1, "media/resize:1"), functionRevision("resize", 2, "media/resize:2"),
		functionRevision("resize", 3, "media/resize:3"))
	svcRev := revision("resize", 7, "nginx")
	svcRev.Metadata.Name = "resize-svc-7"
	seed(t, e.store, svcRev)

	var fn v1.Function
	if err := store.Get(t.Context(), e.store, store.Key{Kind: v1.KindFunction, Environment: "default", Name: "resize"}, &fn); err != nil {
		t.Fatal(err)
	}
	fn.Status.Revision = 3
	fn.Spec.Scale.Min = ptr[int32](2)
	if err := store.Update(t.Context(), e.store, &fn); err != nil {
		t.Fatal(err)
	}

	r := e.do(http.MethodGet, fnPath+"/revisions", nil)
	e.expect(r, http.StatusOK, "", "")
	var list v1.List
	json.Unmarshal(r.body, &list)
	var got []string
	for _, item := range list.Items {
		var rev v1.Revision
		json.Unmarshal(item, &rev)
		got = append(got, fmt.Sprintf("%s/%d", rev.Spec.OwnerKind, rev.Spec.Number))
	}
	if strings.Join(got, " ") != "Function/1 Function/2 Function/3" {
		t.Errorf("function revisions %v", got)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/functions/nope/revisions", nil), http.StatusNotFound, v1.ErrNotFound, "")

	r = e.do(http.MethodPost, fnPath+"/rollback", nil)
	e.expect(r, http.StatusOK, "", "")
	after := decodeFunction(t, r.body)
	if after.Spec.Image != "media/resize:2" || after.Metadata.Generation != 2 || *after.Spec.Scale.Min != 2 ||
		*after.Spec.TerminationGracePeriodSeconds != 10 {
		t.Errorf("after rollback: image %q generation %d min %d; want resize:2, generation 2, scale kept",
			after.Spec.Image, after.Metadata.Generation, *after.Spec.Scale.Min)
	}
	e.expect(e.do(http.MethodPost, fnPath+"/rollback", map[string]int64{"toRevision": 3}), http.StatusConflict, v1.ErrConflict, "")
	e.expect(e.do(http.MethodPost, fnPath+"/rollback", map[string]int64{"toRevision": 7}), http.StatusNotFound, v1.ErrNotFound, "")
	r = e.do(http.MethodPost, fnPath+"/rollback", map[string]int64{"toRevision": 1})
	e.expect(r, http.StatusOK, "", "")
	if got := decodeFunction(t, r.body); got.Spec.Image != "media/resize:1" {
		t.Errorf("rollback to 1: image %q", got.Spec.Image)
	}
}

// fakeInvocations records what the API server passes on and answers as an
// invoker would.
type fakeInvocations struct {
	mu       sync.Mutex
	calls    []string
	header   http.Header
	body     []byte
	callback string
	invs     map[string]v1.Invocation
	err      error
}

func (f *fakeInvocations) record(call string, body []byte, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.body, f.header = body, h
}

func (f *fakeInvocations) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	f.record("invoke "+env+"/"+fn, body, header)
	if f.err != nil {
		return 0, nil, nil, f.err
	}
	return http.StatusTeapot, http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Internal": {"x"}}, append([]byte("echo: "), body...), nil
}

func (f *fakeInvocations) Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	f.record("enqueue "+env+"/"+fn, body, header)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callback = callbackURL
	id := fmt.Sprintf("inv-%d", len(f.invs)+1)
	f.invs[id] = v1.Invocation{ID: id, Environment: env, Function: fn, Source: "async", Status: v1.InvocationPending,
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), CallbackURL: callbackURL}
	return id, nil
}

func (f *fakeInvocations) Get(ctx context.Context, env, id string) (v1.Invocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invs[id]
	if !ok || inv.Environment != env {
		return v1.Invocation{}, v1.NotFound("invocation %q not found in environment %q", id, env)
	}
	return inv, nil
}

func (f *fakeInvocations) Publish(ctx context.Context, env, topic string, body []byte, header http.Header) (string, error) {
	f.record("publish "+env+"/"+topic, body, header)
	return "msg-1", nil
}

func TestInvocationEndpoints(t *testing.T) {
	inv := &fakeInvocations{invs: map[string]v1.Invocation{}}
	e := newEnv(t, options{invocations: inv, maxPayload: 1024})
	e.apply(fnPath, function("resize", "media/resize:1"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/default/topics/orders", topic("orders"), http.StatusCreated, "created")

	// Sync: the function's status, Content-Type and body; the caller's
	// token never reaches the function.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+fnPath+"/invoke", strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTeapot || body != "echo: hello" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("invoke answered %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.Header.Get("X-Berth-Origin") != "function" {
		t.Errorf("X-Berth-Origin %q, want function", resp.Header.Get("X-Berth-Origin"))
	}
	if resp.Header.Get("X-Internal") != "" {
		t.Error("a function's other headers leaked into the API answer")
	}
	inv.mu.Lock()
	if inv.header.Get("Authorization") != "" || inv.header.Get("Content-Type") != "text/plain" || inv.header.Get("Traceparent") == "" {
		t.Errorf("header passed to the invoker: %v", inv.header)
	}
	inv.mu.Unlock()

	e.expect(e.do(http.MethodPost, "/api/v1/environments/default/functions/nope/invoke", "x"), http.StatusNotFound, v1.ErrNotFound, "")
	r := e.do(http.MethodPost, fnPath+"/invoke", strings.Repeat("x", 1025))
	e.expect(r, http.StatusRequestEntityTooLarge, v1.ErrTooLarge, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "1024 bytes") {
		t.Errorf("too large message %q should give the limit", msg)
	}
	e.expect(e.do(http.MethodGet, fnPath+"/invoke", nil), http.StatusMethodNotAllowed, v1.ErrInvalid, "")

	// An invoker's error kind reaches the caller.
	inv.mu.Lock()
	inv.err = v1.Unavailable("no instance became ready within 30s")
	inv.mu.Unlock()
	r = e.do(http.MethodPost, fnPath+"/invoke", "x")
	e.expect(r, http.StatusServiceUnavailable, v1.ErrUnavailable, "")
	inv.mu.Lock()
	inv.err = nil
	inv.mu.Unlock()

	// Async: 202, the id, where to look, and the callback passed on.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+fnPath+"/invocations", strings.NewReader(`{"n":1}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Callback-Url", "https://hooks.example.com/done")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw := readAll(t, resp)
	var acc struct{ ID string }
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(raw), &acc) != nil || acc.ID != "inv-1" {
		t.Fatalf("enqueue answered %d %s", resp.StatusCode, raw)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/environments/default/invocations/inv-1" {
		t.Errorf("Location %q", loc)
	}
	inv.mu.Lock()
	if inv.callback != "https://hooks.example.com/done" || string(inv.body) != `{"n":1}` || inv.header.Get("X-Callback-Url") != "" {
		t.Errorf("enqueue got callback %q body %q header %v", inv.callback, inv.body, inv.header)
	}
	inv.mu.Unlock()

	r = e.do(http.MethodGet, "/api/v1/environments/default/invocations/inv-1", nil)
	e.expect(r, http.StatusOK, "", "")
	var got v1.Invocation
	if err := json.Unmarshal(r.body, &got); err != nil || got.Function != "resize" || got.Status != v1.InvocationPending {
		t.Errorf("invocation %s", r.body)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/staging/invocations/inv-1", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodPost, "/api/v1/environments/default/functions/nope/invocations", "x"), http.StatusNotFound, v1.ErrNotFound, "")

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+fnPath+"/invocations", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Callback-Url", "ftp://x")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad callback URL: status %d", resp.StatusCode)
	}

	// Publish.
	r = e.do(http.MethodPost, "/api/v1/environments/default/topics/orders/messages", `{"order":42}`)
	e.expect(r, http.StatusAccepted, "", "")
	if !strings.Contains(string(r.body), `"id":"msg-1"`) {
		t.Errorf("publish answered %s", r.body)
	}
	r = e.do(http.MethodPost, "/api/v1/environments/default/topics/nope/messages", "x")
	e.expect(r, http.StatusNotFound, v1.ErrNotFound, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, `topic "nope"`) {
		t.Errorf("message %q", msg)
	}
	inv.mu.Lock()
	if want := "invoke default/resize,invoke default/resize,enqueue default/resize,publish default/orders"; strings.Join(inv.calls, ",") != want {
		t.Errorf("invoker calls %v, want %s", inv.calls, want)
	}
	inv.mu.Unlock()

	// Without an invoker the endpoints say so.
	bare := newEnv(t, options{})
	bare.apply(fnPath, function("resize", "x"), http.StatusCreated, "created")
	bare.expect(bare.do(http.MethodPost, fnPath+"/invoke", "x"), http.StatusServiceUnavailable, v1.ErrUnavailable, "")
	bare.expect(bare.do(http.MethodGet, "/api/v1/environments/default/invocations/x", nil), http.StatusServiceUnavailable, v1.ErrUnavailable, "")
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }
