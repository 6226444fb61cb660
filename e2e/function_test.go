package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

func (s *server) function(env, name string) *v1.Function {
	s.t.Helper()
	var fn v1.Function
	if err := s.client.Get(context.Background(), v1.KindFunction, env, name, &fn); err != nil {
		s.t.Fatalf("get function %s: %v", name, err)
	}
	return &fn
}

func fnState(fn *v1.Function) string {
	var b strings.Builder
	for _, i := range fn.Status.Instances {
		fmt.Fprintf(&b, "[%s %s ready=%v restarts=%d exit=%+v] ", i.Name, i.Phase, i.Ready, i.Restarts, i.LastExit)
	}
	return fmt.Sprintf("desired=%d ready=%d cold=%d %s", fn.Status.Desired, fn.Status.ReadyInstances, fn.Status.ColdStarts, b.String())
}

// started counts the function's instances that are started (not standby,
// not draining).
func started(fn *v1.Function) int {
	n := 0
	for _, i := range fn.Status.Instances {
		if i.Phase != v1.PhaseStandby && i.Phase != v1.PhaseTerminating && i.Phase != v1.PhasePending {
			n++
		}
	}
	return n
}

// TestFunctionScalesFromAndToZero: a function at zero answers its first
// request, scales out under concurrent load without exceeding max, and
// goes back to zero when idle.
func TestFunctionScalesFromAndToZero(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn}
spec:
  image: %s
  scale: {max: 3, idleTimeout: 3s}
  timeout: 30s
  route: {path: /fn, stripPrefix: true}
`, echoV1), "apply", "-f", "-")

	testutil.WaitForState(t, 60*time.Second, "the function at zero with a prepared standby", func() (bool, string) {
		fn := s.function("default", "fn")
		for _, i := range fn.Status.Instances {
			if i.Phase == v1.PhaseStandby {
				return fn.Status.ReadyInstances == 0, fnState(fn)
			}
		}
		return false, fnState(fn)
	})

	code, body, err := s.gatewayGet("fn.default.berth.localhost", "/")
	if err != nil || code != 200 || !strings.Contains(body, `"version":"v1"`) {
		t.Fatalf("request at zero: %d %v %s", code, err, body)
	}
	testutil.WaitForState(t, 10*time.Second, "the cold start to be counted", func() (bool, string) {
		fn := s.function("default", "fn")
		return fn.Status.ColdStarts >= 1 && fn.Status.LastColdStart != nil, fnState(fn)
	})

	t.Run("the cold start explains itself", func(t *testing.T) {
		// From the standby: no sandbox; the phases tell where the wait went.
		out := s.mustBerth("", "describe", "function", "fn")
		if !regexp.MustCompile(`Last Cold Start: +schedule [0-9.]+ms, sandbox 0.0ms, start [0-9.]+ms, init [0-9.]+ms, route [0-9.]+ms`).MatchString(out) {
			t.Errorf("describe function fn: want the last cold start's phases, from a standby:\n%s", out)
		}
		rc, err := s.client.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(rc)
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		seen := map[string]bool{}
		for _, m := range fams["berth_cold_start_phase_seconds"].GetMetric() {
			if label(m, "function") == "fn" && m.GetHistogram().GetSampleCount() >= 1 {
				seen[label(m, "phase")] = true
			}
		}
		for _, phase := range v1.ColdStartPhases {
			if !seen[phase] {
				t.Errorf("berth_cold_start_phase_seconds has no observation of fn's phase %s", phase)
			}
		}
	})

	t.Run("scale to zero after idle", func(t *testing.T) {
		testutil.WaitForState(t, 90*time.Second, "zero ready instances", func() (bool, string) {
			fn := s.function("default", "fn")
			return fn.Status.ReadyInstances == 0 && fn.Status.Desired == 0 && started(fn) == 0, fnState(fn)
		})
		out := s.mustBerth("", "get", "functions")
		if !strings.Contains(out, "fn") {
			t.Fatalf("get functions:\n%s", out)
		}
	})

	t.Run("50 concurrent requests at zero all succeed within max", func(t *testing.T) {
		s.burstWithinMax(t, "fn", 50, "/sleep?ms=300", 3, httpClient)
	})
}

// burstWithinMax sends n concurrent requests to function name at zero and
// checks that all succeed, that it scaled out, and that no more than max
// instances were ever started (sampled from its status meanwhile).
func (s *server) burstWithinMax(t *testing.T, name string, n int, path string, max int64, c *http.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var maxStarted atomic.Int64
	go func() {
		for ctx.Err() == nil {
			var fn v1.Function
			if s.client.Get(ctx, v1.KindFunction, "default", name, &fn) == nil {
				if k := int64(started(&fn)); k > maxStarted.Load() {
					maxStarted.Store(k)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := s.gatewayGetWith(c, name+".default.berth.localhost", path)
			if err != nil || code != 200 {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprint(code, err, body))
			}
		}()
	}
	wg.Wait()
	// Let the sampler see the final state.
	testutil.WaitForState(t, 10*time.Second, "the scale-out to be visible", func() (bool, string) {
		return maxStarted.Load() > 1, fmt.Sprint(maxStarted.Load())
	})
	cancel()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", failed.Load(), n, firstErr.Load())
	}
	if maxStarted.Load() > max {
		t.Fatalf("%d instances started, max is %d", maxStarted.Load(), max)
	}
}

// TestFunctionCrashGives502: a function whose process exits before it is
// ready answers the held request with 502 and the reason, and backs off.
func TestFunctionCrashGives502(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: crash}
spec:
  image: %s
  args: ["-exit", "3"]
  timeout: 20s
`, echoV1), "apply", "-f", "-")
	testutil.WaitForState(t, 60*time.Second, "a standby", func() (bool, string) {
		fn := s.function("default", "crash")
		return fn.Status.ObservedGeneration == fn.Metadata.Generation && len(fn.Status.Instances) > 0, fnState(fn)
	})
	code, body, err := s.gatewayGet("crash.default.berth.localhost", "/")
	if err != nil || code != http.StatusBadGateway || !strings.Contains(body, "code 3") {
		t.Fatalf("want 502 naming exit code 3, got %d %v %s", code, err, body)
	}
	// It backs off: restarts grow slowly, not hundreds of times.
	fn := s.function("default", "crash")
	for _, i := range fn.Status.Instances {
		if i.Restarts > 20 {
			t.Fatalf("hot loop: %s", fnState(fn))
		}
	}
}

// TestFunctionAsync: an async invocation is accepted at once, retried after
// failures, and its result is queryable; one that always fails ends in the
// dead-letter topic. Accepted invocations survive a kill -9.
func TestFunctionAsync(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Topic
metadata: {name: dead}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: worker}
spec:
  image: %[1]s
  # One instance: the flaky handler counts calls in its memory.
  scale: {max: 1}
  async: {maxRetries: 2, backoff: 100ms, deadLetterTopic: dead}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: sink}
spec:
  image: %[1]s
  triggers:
    - topic: dead
`, echoV1), "apply", "-f", "-")
	ctx := context.Background()

	waitInvocation := func(id, want string) v1.Invocation {
		t.Helper()
		var inv v1.Invocation
		testutil.WaitForState(t, 90*time.Second, "invocation "+id+" to be "+want, func() (bool, string) {
			var err error
			inv, err = s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == want, fmt.Sprintf("%+v %v", inv, err)
		})
		return inv
	}

	t.Run("retries then succeeds", func(t *testing.T) {
		out := strings.TrimSpace(s.mustBerth("", "invoke", "worker", "--async", "-d", "flaky k1 2"))
		inv := waitInvocation(out, v1.InvocationSucceeded)
		if inv.Attempts != 3 {
			t.Fatalf("attempts = %d, want 3: %+v", inv.Attempts, inv)
		}
	})

	t.Run("dead letter after the retries", func(t *testing.T) {
		id, err := s.client.InvokeAsync(ctx, "default", "worker", []byte("fail"), "")
		if err != nil {
			t.Fatal(err)
		}
		inv := waitInvocation(id, v1.InvocationFailed)
		if inv.Attempts != 3 {
			t.Fatalf("attempts = %d, want 3", inv.Attempts)
		}
		testutil.WaitForState(t, 60*time.Second, "the dead letter to reach the sink", func() (bool, string) {
			out, _, _ := s.berth("", "logs", "sink")
			return strings.Contains(out, `body "fail"`), out
		})
	})

	t.Run("accepted invocations survive kill -9", func(t *testing.T) {
		var ids []string
		for i := range 5 {
			// Slow enough that they are queued or in flight at the kill.
			id, err := s.client.InvokeAsync(ctx, "default", "worker", []byte(fmt.Sprintf("sleep %d", 1500+i)), "")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		s.kill9()
		s.start()
		for _, id := range ids {
			if inv := waitInvocation(id, v1.InvocationSucceeded); inv.Attempts < 1 {
				t.Fatalf("%s: %+v", id, inv)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, errOut, code := s.berth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: bad}
spec: {image: x, concurrency: 0}
`, "apply", "-f", "-")
		if code != 3 || !strings.Contains(errOut, "spec.concurrency") {
			t.Fatalf("concurrency 0: exit %d %s", code, errOut)
		}
		_, errOut, code = s.berth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: bad}
spec: {image: x, triggers: [{topic: nowhere}]}
`, "apply", "-f", "-")
		if code == 0 || !strings.Contains(errOut, "nowhere") {
			t.Fatalf("missing topic: exit %d %s", code, errOut)
		}
		_, errOut, code = s.berth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: bad}
spec: {image: x, triggers: [{cron: "61 * * * *"}]}
`, "apply", "-f", "-")
		if code != 3 || !strings.Contains(errOut, "cron") {
			t.Fatalf("bad cron: exit %d %s", code, errOut)
		}
		if _, _, code := s.berth("", "get", "function", "bad"); code != 5 {
			t.Fatalf("a bad function was stored (get exit %d)", code)
		}
	})
}

// TestFunctionCron: a cron trigger fires on its schedule, and keeps firing
// after a kill -9 of the server.
func TestFunctionCron(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: ticker}
spec:
  image: %s
  triggers:
    - cron: "@every 2s"
      data: tick
`, echoV1), "apply", "-f", "-")
	count := func() int {
		out, _, _ := s.berth("", "logs", "ticker")
		return strings.Count(out, `body "tick"`)
	}
	testutil.WaitForState(t, 60*time.Second, "two cron ticks", func() (bool, string) { n := count(); return n >= 2, fmt.Sprint(n) })
	s.kill9()
	s.start()
	before := count()
	testutil.WaitForState(t, 60*time.Second, "ticks after the restart", func() (bool, string) { n := count(); return n >= before+2, fmt.Sprint(n) })
}
