package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// TestAdvise: a server records a service's and a function's traffic
// minute by minute; berth advise replays it the other way and answers,
// says how much history it needs, refuses bad input, and the history
// survives a restart.
func TestAdvise(t *testing.T) {
	s := startServerArgs(t, "--advice-min-history", "1m")
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: svc}
spec:
  image: %[1]s
  replicas: 1
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn}
spec:
  image: %[1]s
  scale: {idleTimeout: 5s}
`, echoV1), "apply", "-f", "-")
	s.readyInstance("default", "svc")

	// Too little history: the answer says how much is needed.
	_, errOut, code := s.berth("", "advise", "svc")
	if code != 7 || !strings.Contains(errOut, "advice needs at least 1 minute") {
		t.Fatalf("advise with no history: exit %d: %s", code, errOut)
	}

	// A request every 4 s to each, until two whole minutes are recorded.
	sent := map[string]int{}
	start := time.Now()
	for time.Since(start) < 125*time.Second || time.Now().Second() < 2 {
		for _, name := range []string{"svc", "fn"} {
			code, _, err := s.gatewayGetWith(longClient, name+".default.berth.localhost", "/")
			if err != nil || code != 200 {
				t.Fatalf("%s: %d %v", name, code, err)
			}
			sent[name]++
		}
		time.Sleep(4 * time.Second)
	}

	var a v1.Advice
	out := s.mustBerth("", "advise", "svc", "--since", "10m", "-o", "json")
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("advise -o json: %v\n%s", err, out)
	}
	if a.RunsAs != v1.KindService || a.Current.Kind != v1.KindService || !a.Current.Measured || a.Other.Kind != v1.KindFunction || a.Other.Measured {
		t.Errorf("ways: runs as %s, current %+v, other %+v", a.RunsAs, a.Current, a.Other)
	}
	if a.Minutes < 2 || a.Traffic.Requests < 10 || a.Traffic.Requests > int64(sent["svc"]) {
		t.Errorf("%d minutes, %d requests recorded (%d sent)", a.Minutes, a.Traffic.Requests, sent["svc"])
	}
	// One replica all the time, measured to the sampling period.
	if got, want := a.Current.InstanceHoursPerDay, 24.0; got < want*0.97 || got > want*1.03 {
		t.Errorf("the service's measured instance-hours a day: %.2f, want about %v", got, want)
	}
	if a.Reason == "" || a.Recommend == "" || !strings.HasPrefix(a.Convert, "berth convert svc -e default --to function") {
		t.Errorf("recommendation %q, reason %q, convert %q", a.Recommend, a.Reason, a.Convert)
	}
	if len(a.Alternatives) == 0 || a.Prices.Date == "" {
		t.Errorf("alternatives %d, prices %+v", len(a.Alternatives), a.Prices)
	}

	var f v1.Advice
	out = s.mustBerth("", "advise", "fn", "--since", "10m", "-o", "json")
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatal(err)
	}
	if f.RunsAs != v1.KindFunction || f.Model == nil || f.Current.ColdStarts < 1 || !strings.Contains(f.ColdStart.Source, "measured") {
		t.Errorf("function advice: runs as %s, model %v, cold starts %v, cold start %+v", f.RunsAs, f.Model != nil, f.Current.ColdStarts, f.ColdStart)
	}

	// The table, the list and the chart.
	out = s.mustBerth("", "advise", "svc", "--since", "10m")
	t.Logf("berth advise svc --since 10m:\n%s", out)
	for _, want := range []string{"NOW: SERVICE (measured)", "AS A FUNCTION (replayed)", "cold starts a day", "Advice: ", "Prices: AWS list prices"} {
		if !strings.Contains(out, want) {
			t.Errorf("advise svc does not show %q:\n%s", want, out)
		}
	}
	out = s.mustBerth("", "advise", "--since", "10m")
	if !strings.Contains(out, "svc") || !strings.Contains(out, "fn") || !strings.Contains(out, "REQUESTS/DAY") {
		t.Errorf("advise (all):\n%s", out)
	}
	out = s.mustBerth("", "advise", "fn", "--since", "10m", "--chart")
	t.Logf("berth advise fn --since 10m --chart:\n%s", out)
	if !strings.Contains(out, "requests / ") || !strings.ContainsAny(out, "▁▂▃▄▅▆▇█") {
		t.Errorf("advise --chart:\n%s", out)
	}

	// Bad input.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"advise", "nope"}, 5, `no Service or Function "nope" in environment "default"`},
		{[]string{"advise", "svc", "--since", "0d"}, 2, "must be more than zero"},
		{[]string{"advise", "svc", "--since", "90d"}, 3, "more than the 30d of history kept"},
		{[]string{"advise", "svc", "-e", "nowhere"}, 5, `environment "nowhere" not found`},
		{[]string{"advise", "svc", "--prices", writeFile(t, t.TempDir(), "p.yaml", "function: {perRequest: -1}\n")}, 3, "function.perRequest is -1"},
	} {
		_, errOut, code := s.berth("", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("berth %s: exit %d (want %d): %s (want %q)", strings.Join(tc.args, " "), code, tc.code, errOut, tc.want)
		}
	}

	// Advice changed nothing.
	if svc := s.service("default", "svc"); svc.Metadata.Generation != 1 {
		t.Errorf("advice changed the service: generation %d", svc.Metadata.Generation)
	}

	// The history survives a restart.
	s.kill9()
	s.start()
	var again v1.Advice
	out = s.mustBerth("", "advise", "svc", "--since", "10m", "-o", "json")
	if err := json.Unmarshal([]byte(out), &again); err != nil {
		t.Fatal(err)
	}
	if again.Minutes < a.Minutes || again.Traffic.Requests < a.Traffic.Requests {
		t.Errorf("after a restart: %d minutes, %d requests; before: %d, %d", again.Minutes, again.Traffic.Requests, a.Minutes, a.Traffic.Requests)
	}
}

// load sends requests to host through the gateway from several clients
// until stop, counting answers that are not 200.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(s *server, host, path string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := s.gatewayGetWith(c, host, path)
				if err == nil && code == 200 {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, fmt.Sprintf("%d %v %.100s", code, err, body))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64, errs []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// TestConvertWithoutFailedRequests: under steady load, berth convert
// switches a service to a function and back without one failed request,
// keeping its env (a secret reference included), route and labels.
func TestConvertWithoutFailedRequests(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "secret", "set", "db", "password=s3cret")
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, labels: {team: shop}}
spec:
  image: %s
  replicas: 2
  readinessProbe: {httpGet: {path: /ready}, periodSeconds: 1}
  env:
    - {name: GREETING, value: hello}
    - {name: DB_PASSWORD, valueFrom: {secret: {name: db, key: password}}}
  route: {path: /web, stripPrefix: true}
`, echoV1), "apply", "-f", "-")
	testutil.WaitForState(t, 60*time.Second, "2 ready replicas", func() (bool, string) {
		svc := s.service("default", "web")
		return svc.Status.ReadyReplicas == 2, fmt.Sprint(svc.Status.ReadyReplicas)
	})

	byHost := startLoad(s, "web.default.berth.localhost", "/", 4)
	byRoute := startLoad(s, "localhost", "/web/", 2)
	time.Sleep(time.Second) // load before the switch: nothing to wait for, it just runs
	out := s.mustBerth("", "convert", "web", "--to", "function", "--concurrency", "4", "--idle-timeout", "30s")
	t.Logf("berth convert web --to function:\n%s", out)
	if !strings.Contains(out, "service/web converted to function/web") || !strings.Contains(out, "ready") {
		t.Errorf("convert output:\n%s", out)
	}
	time.Sleep(time.Second)
	ok1, failed1, errs1 := byHost.finish()
	ok2, failed2, errs2 := byRoute.finish()
	t.Logf("to a function: %d + %d requests answered, %d + %d failed", ok1, ok2, failed1, failed2)
	if failed1+failed2 > 0 || ok1 == 0 || ok2 == 0 {
		t.Fatalf("%d and %d failed requests during the conversion: %v %v", failed1, failed2, errs1, errs2)
	}
	if _, _, code := s.berth("", "get", "service", "web"); code != 5 {
		t.Errorf("the service is still there (get exit %d)", code)
	}
	fn := s.function("default", "web")
	if fn.Spec.Concurrency != 4 || *fn.Spec.Scale.Min != 0 || fn.Spec.Scale.IdleTimeout != "30s" || fn.Metadata.Labels["team"] != "shop" ||
		fn.Spec.Route == nil || fn.Spec.Route.Path != "/web" || len(fn.Spec.Env) != 2 || fn.Spec.Env[1].ValueFrom == nil {
		t.Errorf("function spec after the conversion: %+v labels %v", fn.Spec, fn.Metadata.Labels)
	}
	code, body, err := s.gatewayGet("web.default.berth.localhost", "/env")
	if err != nil || code != 200 || !strings.Contains(body, "GREETING=hello") || !strings.Contains(body, "DB_PASSWORD=s3cret") {
		t.Errorf("the function's env: %d %v %.300s", code, err, body)
	}

	// And back, while the function is still warm from the load.
	byHost = startLoad(s, "web.default.berth.localhost", "/", 4)
	time.Sleep(time.Second)
	out = s.mustBerth("", "convert", "web", "--to", "service", "--replicas", "2")
	if !strings.Contains(out, "function/web converted to service/web") {
		t.Errorf("convert output:\n%s", out)
	}
	time.Sleep(time.Second)
	ok1, failed1, errs1 = byHost.finish()
	t.Logf("back to a service: %d requests answered, %d failed", ok1, failed1)
	if failed1 > 0 || ok1 == 0 {
		t.Fatalf("%d failed requests converting back: %v", failed1, errs1)
	}
	if svc := s.service("default", "web"); *svc.Spec.Replicas != 2 || svc.Status.ReadyReplicas != 2 || svc.Spec.Route.Path != "/web" {
		t.Errorf("service after converting back: replicas %d ready %d route %+v", *svc.Spec.Replicas, svc.Status.ReadyReplicas, svc.Spec.Route)
	}
	testutil.WaitFor(t, 30*time.Second, "the function gone", func() bool {
		_, _, code := s.berth("", "get", "function", "web")
		return code == 5
	})

	// What cannot be converted, and how it says so.
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: db}
spec:
  image: %s
  volumes: [{name: data, mountPath: /data}]
`, echoV1), "apply", "-f", "-")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"convert", "db", "--to", "function"}, 3, "service db mounts volumes (data at /data): a Function is stateless"},
		{[]string{"convert", "nope", "--to", "function"}, 5, `no Service "nope" in environment "default"`},
		{[]string{"convert", "web", "--to", "service"}, 6, "web is already a Service"},
		{[]string{"convert", "web", "--to", "lambda"}, 2, "--to must be function or service"},
	} {
		_, errOut, code := s.berth("", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("berth %s: exit %d (want %d): %s (want %q)", strings.Join(tc.args, " "), code, tc.code, errOut, tc.want)
		}
	}
}
