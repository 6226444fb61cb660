package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/workflow/engine"
)

// watchEvents runs a watch with c in the background and hands over its
// events; the watch ends with the test.
func watchEvents(t *testing.T, c *client.Client, opts client.WatchOptions) <-chan v1.WatchEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan v1.WatchEvent, 256)
	opened := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := c.Watch(ctx, opts, func(ev v1.WatchEvent) error {
			if ev.Type == v1.WatchBookmark {
				select {
				case <-opened:
				default:
					close(opened)
				}
				return nil
			}
			ch <- ev
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("watch: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch sent no first BOOKMARK")
	}
	return ch
}

// next waits for the first event that match accepts, failing on any event
// in between that reject names.
func next(t *testing.T, ch <-chan v1.WatchEvent, match func(v1.WatchEvent) bool, reject func(v1.WatchEvent) bool) v1.WatchEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if reject != nil && reject(ev) {
				t.Fatalf("the watch showed %+v", ev)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("no matching watch event within 10s")
		}
	}
}

// A watch names the changes of the token's environments, an execution's
// steps included, and nothing of the others; it refuses an environment
// the token has no access to.
func TestWatchNamesExecutionChanges(t *testing.T) {
	s := newScopedServer(t, func(cfg *apiserver.Config) {
		eng := engine.New(engine.Config{Store: cfg.Store, Invoker: passInvoker{}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { eng.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		cfg.Executions = eng
	})
	s.must(token, "PUT", "/api/v1/environments/dev", `{"apiVersion":"berth.dev/v1","kind":"Environment"}`, 201)
	out := s.must(token, "POST", "/api/v1/tokens", `{"name":"watcher","environments":["dev"],"role":"viewer"}`, 201)
	var tok v1.Token
	json.Unmarshal([]byte(out), &tok)

	admin := client.New(client.Config{Addr: s.url, Token: token})
	viewer := client.New(client.Config{Addr: s.url, Token: tok.Secret})
	who, err := viewer.WhoAmI(t.Context())
	if err != nil || who.Name != "watcher" || who.Role != v1.RoleViewer || len(who.Environments) != 1 || who.Environments[0] != "dev" {
		t.Fatalf("whoami of the viewer: %+v %v", who, err)
	}

	all := watchEvents(t, admin, client.WatchOptions{})
	dev := watchEvents(t, viewer, client.WatchOptions{})
	onlyWorkflows := watchEvents(t, admin, client.WatchOptions{Kinds: []string{v1.KindWorkflow}})

	svc := `{"apiVersion":"berth.dev/v1","kind":"Service","spec":{"image":"nginx:1.27"}}`
	s.must(token, "PUT", "/api/v1/environments/default/services/web", svc, 201)
	s.must(token, "PUT", "/api/v1/environments/dev/services/api", svc, 201)
	isService := func(env, name string) func(v1.WatchEvent) bool {
		return func(ev v1.WatchEvent) bool {
			return ev.Type == v1.WatchPut && ev.Kind == v1.KindService && ev.Environment == env && ev.Name == name
		}
	}
	next(t, all, isService("default", "web"), nil)
	next(t, all, isService("dev", "api"), nil)
	// The dev token sees dev's service and, before it, nothing of default.
	next(t, dev, isService("dev", "api"), func(ev v1.WatchEvent) bool { return ev.Environment != "dev" })

	wf := `{"apiVersion":"berth.dev/v1","kind":"Workflow","spec":{"definition":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"function:echo","End":true}}}}}`
	s.must(token, "PUT", "/api/v1/environments/dev/workflows/echo", wf, 201)
	next(t, onlyWorkflows, func(ev v1.WatchEvent) bool { return ev.Name == "echo" },
		func(ev v1.WatchEvent) bool { return ev.Kind != v1.KindWorkflow })
	var exec v1.Execution
	json.Unmarshal([]byte(s.must(token, "POST", "/api/v1/environments/dev/workflows/echo/executions", `{}`, 201)), &exec)
	// The engine writes the execution and appends its history; both are
	// the execution's changes, named by its id.
	next(t, dev, func(ev v1.WatchEvent) bool {
		return ev.Kind == v1.KindExecution && ev.Environment == "dev" && ev.Name == exec.ID
	}, func(ev v1.WatchEvent) bool { return ev.Kind == "" || ev.Environment != "dev" })

	s.must(token, "DELETE", "/api/v1/environments/dev/services/api", "", 200)
	next(t, dev, func(ev v1.WatchEvent) bool {
		return ev.Type == v1.WatchDelete && ev.Kind == v1.KindService && ev.Name == "api"
	}, nil)

	code, body := s.call(tok.Secret, "GET", "/api/v1/watch?environment=default", "")
	if code != 403 {
		t.Errorf("a dev viewer watching default: %d %s", code, body)
	}
	code, body = s.call(token, "GET", "/api/v1/watch?kind=Secret", "")
	if code != 400 || !json.Valid([]byte(body)) {
		t.Errorf("watching secrets: %d %s", code, body)
	}
}
