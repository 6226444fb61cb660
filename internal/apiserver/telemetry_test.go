package apiserver_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/logs"
	"berth.dev/berth/internal/telemetry/metrics"
)

func TestLogsOfFunctionsAndFilters(t *testing.T) {
	e := newEnv(t, options{})
	fn := &v1.Function{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "resize", Environment: "default"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "img"}},
	}
	e.apply("/api/v1/environments/default/functions/resize", fn, http.StatusCreated, "created")
	path := "/api/v1/environments/default/functions/resize/logs"

	// A function at zero that never ran has no lines; it is not a typo.
	if r := e.do(http.MethodGet, path, nil); r.status != 200 || len(r.body) != 0 {
		t.Errorf("function without logs: %d %q", r.status, r.body)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/functions/nope/logs", nil), http.StatusNotFound, v1.ErrNotFound, "")

	dir := logs.Dir(e.logDir, "default", "resize")
	writeLog(t, filepath.Join(dir, "resize-old.log"),
		"2026-11-28T08:00:00.000000000Z stdout F old revision: started",
		"2026-11-28T08:00:01.000000000Z stderr F old revision: error 42")
	if err := logs.WriteMeta(e.logDir, "default", "resize", "resize-old", logs.Meta{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	writeLog(t, filepath.Join(dir, "resize-new.log"),
		"2026-11-28T09:00:00.000000000Z stdout F new revision: started",
		"2026-11-28T09:00:01.000000000Z stderr F new revision: error 7")
	// (Where a live instance's revision comes from is the backend's
	// business: the local backend's tests cover it.)
	if err := logs.WriteMeta(e.logDir, "default", "resize", "resize-new", logs.Meta{Revision: 2}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ query, want string }{
		{"", "[resize-old] old revision: started\n[resize-old] old revision: error 42\n[resize-new] new revision: started\n[resize-new] new revision: error 7\n"},
		{"grep=" + url.QueryEscape(`error \d+$`), "[resize-old] old revision: error 42\n[resize-new] new revision: error 7\n"},
		{"revision=1", "[resize-old] old revision: started\n[resize-old] old revision: error 42\n"},
		{"revision=2&grep=error", "[resize-new] new revision: error 7\n"},
		{"since=2026-11-28T08:00:01Z&until=2026-11-28T09:00:00Z", "[resize-old] old revision: error 42\n[resize-new] new revision: started\n"},
		{"revision=3", ""},
	} {
		r := e.do(http.MethodGet, path+"?"+c.query, nil)
		if r.status != 200 || string(r.body) != c.want {
			t.Errorf("?%s: %d\n%s\nwant:\n%s", c.query, r.status, r.body, c.want)
		}
	}
	e.expect(e.do(http.MethodGet, path+"?until=tomorrow", nil), http.StatusBadRequest, v1.ErrInvalid, "until")
	e.expect(e.do(http.MethodGet, path+"?grep=(", nil), http.StatusBadRequest, v1.ErrInvalid, "grep")
	e.expect(e.do(http.MethodGet, path+"?revision=x", nil), http.StatusBadRequest, v1.ErrInvalid, "revision")
	e.expect(e.do(http.MethodGet, path+"?until=1m&follow=1", nil), http.StatusBadRequest, v1.ErrInvalid, "until")
}

func TestMetricsRoute(t *testing.T) {
	metrics := metricsFunc(func(w http.ResponseWriter, r *http.Request, visible func(string) bool) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "berth_up 1")
	})
	for _, public := range []bool{false, true} {
		t.Run(fmt.Sprint("public=", public), func(t *testing.T) {
			srv := apiserver.New(apiserver.Config{Store: openStore(t), Token: token, Logger: slog.New(slog.DiscardHandler)})
			ts := httptest.NewServer(srv.WithMetrics(metrics, public))
			t.Cleanup(ts.Close)
			get := func(path, tok string) (int, string) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+path, nil)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			if code, body := get("/metrics", token); code != 200 || body != "berth_up 1\n" {
				t.Errorf("with the token: %d %q", code, body)
			}
			code, _ := get("/metrics", "")
			if want := map[bool]int{false: 401, true: 200}[public]; code != want {
				t.Errorf("without a token: %d, want %d", code, want)
			}
			// The rest of the API keeps its token either way.
			if code, _ := get("/api/v1/environments", ""); code != 401 {
				t.Errorf("API without a token: %d, want 401", code)
			}
			if code, _ := get("/api/v1/environments", token); code != 200 {
				t.Errorf("API with the token: %d", code)
			}
		})
	}
}

type metricsFunc func(w http.ResponseWriter, r *http.Request, visible func(string) bool)

func (f metricsFunc) ServeMetrics(w http.ResponseWriter, r *http.Request, visible func(string) bool) {
	f(w, r, visible)
}

// perEnvironment is a collector with a series in each of dev and staging
// and one of the platform's own.
type perEnvironment struct{}

var (
	descServed   = prometheus.NewDesc("berth_requests_total", "x", []string{"environment", "workload"}, nil)
	descPlatform = prometheus.NewDesc("berth_unrouted_requests_total", "x", nil, nil)
)

func (perEnvironment) Describe(ch chan<- *prometheus.Desc) { ch <- descServed; ch <- descPlatform }
func (perEnvironment) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, 1, "dev", "web")
	ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, 2, "staging", "web")
	ch <- prometheus.MustNewConstMetric(descPlatform, prometheus.CounterValue, 3)
}

// TestMetricsScopedToTheTokensEnvironments: a token scoped to dev scrapes
// dev's series only; tokens of every environment see everything.
func TestMetricsScopedToTheTokensEnvironments(t *testing.T) {
	st := openStore(t)
	if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Config{})
	if err := m.Register(perEnvironment{}); err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(apiserver.Config{Store: st, Authorizer: apiserver.NewRoleAuthorizer(token, st), Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv.WithMetrics(m, false))
	t.Cleanup(ts.Close)
	call := func(tok, method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	mint := func(name, envs, role string) string {
		code, out := call(token, http.MethodPost, "/api/v1/tokens", `{"name":"`+name+`","environments":`+envs+`,"role":"`+role+`"}`)
		if code != http.StatusCreated {
			t.Fatalf("create token %s: %d %s", name, code, out)
		}
		var tok v1.Token
		json.Unmarshal([]byte(out), &tok)
		return tok.Secret
	}
	for _, env := range []string{"dev", "staging"} {
		if code, out := call(token, http.MethodPut, "/api/v1/environments/"+env, `{"apiVersion":"berth.dev/v1","kind":"Environment"}`); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", env, code, out)
		}
	}
	series := func(tok string) []string {
		code, out := call(tok, http.MethodGet, "/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", code, out)
		}
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "berth_") {
				got = append(got, line)
			}
		}
		return got
	}
	all := []string{`berth_requests_total{environment="dev",workload="web"} 1`,
		`berth_requests_total{environment="staging",workload="web"} 2`, `berth_unrouted_requests_total 3`}
	for _, c := range []struct {
		who, tok string
		want     []string
	}{
		{"admin", token, all},
		{"viewer of every environment", mint("everywhere", `["*"]`, v1.RoleViewer), all},
		{"viewer of dev", mint("dev-only", `["dev"]`, v1.RoleViewer), all[:1]},
		{"deployer of dev and default", mint("dev-ci", `["dev","default"]`, v1.RoleDeployer), all[:1]},
	} {
		if got := series(c.tok); !slices.Equal(got, c.want) {
			t.Errorf("%s scrapes %q, want %q", c.who, got, c.want)
		}
	}
	if code, _ := call("wrong", http.MethodGet, "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("an unknown token scrapes: %d, want 401", code)
	}
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
