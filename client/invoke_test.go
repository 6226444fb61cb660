package client

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

// echoInvocations answers as a function that echoes its body would, with
// the status the X-Want-Status header asks for.
type echoInvocations struct {
	mu       sync.Mutex
	header   http.Header
	callback string
}

func (e *echoInvocations) Invoke(ctx context.Context, env, fn string, body []byte, h http.Header) (int, http.Header, []byte, error) {
	e.mu.Lock()
	e.header = h
	e.mu.Unlock()
	status := http.StatusOK
	if h.Get("X-Want-Status") == "404" {
		status = http.StatusNotFound
	}
	return status, http.Header{"Content-Type": {h.Get("Content-Type")}}, body, nil
}

func (e *echoInvocations) Enqueue(ctx context.Context, env, fn string, body []byte, h http.Header, callbackURL string) (string, error) {
	e.mu.Lock()
	e.header, e.callback = h, callbackURL
	e.mu.Unlock()
	return "inv-" + fn, nil
}

func (e *echoInvocations) Get(ctx context.Context, env, id string) (v1.Invocation, error) {
	if id != "inv-echo" {
		return v1.Invocation{}, v1.NotFound("invocation %q not found", id)
	}
	return v1.Invocation{ID: id, Environment: env, Function: "echo", Source: "async", Status: v1.InvocationSucceeded, Attempts: 1, StatusCode: 200, Body: "hi"}, nil
}

func (e *echoInvocations) Publish(ctx context.Context, env, topic string, body []byte, h http.Header) (string, error) {
	e.mu.Lock()
	e.header = h
	e.mu.Unlock()
	return "msg-" + topic, nil
}

// realServer is the API server over a real store, with inv as its invoker.
func realServer(t *testing.T, inv apiserver.Invocations) (*Client, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(apiserver.Config{Store: st, Token: "tok", Invocations: inv, MaxPayloadBytes: 1 << 10,
		Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return New(Config{Addr: ts.URL, Token: "tok"}), st
}

func TestFunctionsAndTopicsThroughTheGenericCalls(t *testing.T) {
	for _, k := range []string{"Function", "function", "functions"} {
		if p, err := Plural(k); err != nil || p != "functions" {
			t.Errorf("Plural(%q) = %q, %v", k, p, err)
		}
	}
	if p, err := Plural("Topic"); err != nil || p != "topics" {
		t.Errorf("Plural(Topic) = %q, %v", p, err)
	}

	c, st := realServer(t, &echoInvocations{})
	ctx := t.Context()
	tp := &v1.Topic{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTopic}, Metadata: v1.ObjectMeta{Name: "jobs", Environment: "default"}}
	fn := &v1.Function{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "echo", Environment: "default"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "echo:1"}, Triggers: []v1.Trigger{{Topic: "jobs"}}}}

	// The function's topic must exist first: the error names the field.
	_, _, err := c.Apply(ctx, fn, false)
	var e *v1.Error
	if !errors.As(err, &e) || e.Kind != v1.ErrInvalid || e.Field != "spec.triggers[0].topic" {
		t.Fatalf("apply before the topic: %v", err)
	}
	if res, _, err := c.Apply(ctx, tp, false); err != nil || res != ResultCreated {
		t.Fatalf("apply topic: %q %v", res, err)
	}
	if res, _, err := c.Apply(ctx, fn, false); err != nil || res != ResultCreated {
		t.Fatalf("apply function: %q %v", res, err)
	}
	var got v1.Function
	if err := c.Get(ctx, "function", "default", "echo", &got); err != nil || got.Spec.Concurrency != 1 {
		t.Fatalf("get function: %+v %v", got.Spec, err)
	}
	items, err := c.List(ctx, "topics", "")
	if err != nil || len(items) != 1 {
		t.Fatalf("list topics: %d %v", len(items), err)
	}

	// Revisions and rollback of a function.
	for n, image := range map[int64]string{1: "echo:0", 2: "echo:1"} {
		tmpl := v1.Template{Image: image}
		v1.DefaultFunctionTemplate(&tmpl)
		rev := &v1.Revision{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
			Metadata: v1.ObjectMeta{Name: v1.RevisionName("echo", n), Environment: "default"},
			Spec:     v1.RevisionSpec{Owner: "echo", OwnerKind: v1.KindFunction, Number: n, Image: image, Template: tmpl}}
		if err := store.Create(ctx, st, rev); err != nil {
			t.Fatal(err)
		}
	}
	got.Status.Revision = 2
	if err := store.Update(ctx, st, &got); err != nil {
		t.Fatal(err)
	}
	revs, err := c.RevisionsOf(ctx, v1.KindFunction, "default", "echo")
	if err != nil || len(revs) != 2 || revs[0].Spec.Number != 1 {
		t.Fatalf("function revisions %+v %v", revs, err)
	}
	if _, err := c.Revisions(ctx, "default", "echo"); !v1.IsNotFound(err) {
		t.Errorf("service revisions of a function: %v, want NotFound", err)
	}
	var back v1.Function
	if err := c.RollbackOf(ctx, v1.KindFunction, "default", "echo", 0, &back); err != nil || back.Spec.Image != "echo:0" {
		t.Fatalf("rollback: %q %v", back.Spec.Image, err)
	}
	if _, err := c.RevisionsOf(ctx, v1.KindTopic, "default", "jobs"); !v1.IsInvalid(err) {
		t.Errorf("revisions of a topic: %v, want Invalid", err)
	}

	if err := c.Delete(ctx, "topic", "default", "jobs"); !v1.IsConflict(err) {
		t.Errorf("delete a topic in use: %v, want Conflict", err)
	}
	if err := c.Delete(ctx, "function", "default", "echo"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "topic", "default", "jobs"); err != nil {
		t.Fatal(err)
	}
}

func TestInvokeAndPublish(t *testing.T) {
	inv := &echoInvocations{}
	c, _ := realServer(t, inv)
	ctx := t.Context()
	for _, obj := range []v1.Object{
		&v1.Topic{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTopic}, Metadata: v1.ObjectMeta{Name: "jobs", Environment: "default"}},
		&v1.Function{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
			Metadata: v1.ObjectMeta{Name: "echo", Environment: "default"}, Spec: v1.FunctionSpec{Template: v1.Template{Image: "echo:1"}}},
	} {
		if _, _, err := c.Apply(ctx, obj, false); err != nil {
			t.Fatal(err)
		}
	}

	status, h, body, err := c.Invoke(ctx, "default", "echo", []byte(`{"a":1}`), "")
	if err != nil || status != 200 || string(body) != `{"a":1}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("invoke: %d %v %q %v", status, h, body, err)
	}
	inv.mu.Lock()
	if inv.header.Get("Authorization") != "" || inv.header.Get("Accept") != "" {
		t.Errorf("the function saw %v", inv.header)
	}
	inv.mu.Unlock()

	// A function's own 404 is its answer; a missing function is the API's.
	status, _, body, err = c.InvokeWithHeader(ctx, "default", "echo", []byte("x"), http.Header{"X-Want-Status": {"404"}})
	if err != nil || status != 404 || string(body) != "x" {
		t.Errorf("function's 404: %d %q %v", status, body, err)
	}
	if _, _, _, err := c.Invoke(ctx, "default", "nope", nil, ""); !v1.IsNotFound(err) {
		t.Errorf("missing function: %v, want NotFound", err)
	}
	if _, _, _, err := c.Invoke(ctx, "default", "echo", []byte(strings.Repeat("x", 2000)), ""); v1.KindOf(err) != v1.ErrTooLarge ||
		!strings.Contains(err.Error(), "1024 bytes") {
		t.Errorf("too large: %v", err)
	}

	id, err := c.InvokeAsync(ctx, "default", "echo", []byte("hi"), "http://127.0.0.1:9/cb")
	if err != nil || id != "inv-echo" {
		t.Fatalf("async: %q %v", id, err)
	}
	inv.mu.Lock()
	if inv.callback != "http://127.0.0.1:9/cb" {
		t.Errorf("callback %q", inv.callback)
	}
	inv.mu.Unlock()
	got, err := c.Invocation(ctx, "default", id)
	if err != nil || got.Status != v1.InvocationSucceeded || got.Body != "hi" {
		t.Errorf("invocation: %+v %v", got, err)
	}
	if _, err := c.Invocation(ctx, "default", "nope"); !v1.IsNotFound(err) {
		t.Errorf("missing invocation: %v", err)
	}

	id, err = c.Publish(ctx, "default", "jobs", []byte("payload"))
	if err != nil || id != "msg-jobs" {
		t.Errorf("publish: %q %v", id, err)
	}
	if _, err := c.Publish(ctx, "default", "nope", nil); !v1.IsNotFound(err) {
		t.Errorf("publish to a missing topic: %v", err)
	}
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), `"status":"Succeeded"`) {
		t.Errorf("invocation JSON %s", b)
	}
}
