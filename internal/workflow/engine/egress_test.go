package engine_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/egress"
)

type subnets map[string]netip.Prefix

func (s subnets) Subnets() map[string]netip.Prefix { return s }

type doors map[string]string

func (d doors) Addr(env string) string { return d[env] }

// TestHTTPTasksKeepTheEnvironmentsSeal: with the real egress policy, an
// http task of an execution in shop cannot reach the host (the API, the
// user's gateway listener, anything on loopback) nor another environment's
// instance, and the server there sees nothing; a task naming shop's own
// service (http://orders/...) goes to shop's gateway listener with that
// Host, as a call from one of shop's containers would.
func TestHTTPTasksKeepTheEnvironmentsSeal(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(who string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			mu.Lock()
			seen = append(seen, who+" "+r.Host+r.URL.Path)
			mu.Unlock()
			io.WriteString(w, `{"from": "`+who+`"}`)
		}
	}
	host := httptest.NewServer(record("host"))
	defer host.Close()
	door := httptest.NewServer(record("door"))
	defer door.Close()
	eg, err := egress.New(egress.Config{
		Networks: subnets{"shop": netip.MustParsePrefix("10.89.0.0/24"), "bank": netip.MustParsePrefix("10.89.1.0/24")},
		Doors:    doors{"shop": door.Listener.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
	task := func(res string) string {
		return `{"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "` + res + `", "TimeoutSeconds": 5, "End": true}}}`
	}
	putWorkflow(t, st, "shop", "host", task(host.URL+"/api/v1/environments"))
	putWorkflow(t, st, "shop", "bank", task("http://10.89.1.7:8080/env"))
	putWorkflow(t, st, "shop", "metadata", task("http://169.254.169.254/latest/meta-data/"))
	putWorkflow(t, st, "shop", "own", task("http://orders/ship"))
	h := start(t, st, &fakeWorkloads{}, newSkipClock(time.Now()), eg)

	for _, wf := range []string{"host", "bank", "metadata"} {
		exec, err := h.eng.Start(t.Context(), "shop", wf, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		done := waitDone(t, h.eng, "shop", exec.ID)
		if done.Status != v1.ExecutionFailed || done.Error != "States.TaskFailed" || !strings.Contains(done.Cause, "egress") {
			t.Errorf("%s: %s %s %q; want FAILED States.TaskFailed by the egress policy", wf, done.Status, done.Error, done.Cause)
		}
	}
	exec, err := h.eng.Start(t.Context(), "shop", "own", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if done := waitDone(t, h.eng, "shop", exec.ID); done.Status != v1.ExecutionSucceeded || !sameJSON(t, done.Output, `{"from": "door"}`) {
		t.Errorf("own service: %s %s %q output %s; want it answered by shop's door", done.Status, done.Error, done.Cause, done.Output)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"door orders/ship"}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("requests seen %q; want only %q", seen, want)
	}
}
