package cli

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func cannedScrape(t *testing.T, name string, at time.Time) *topScrape {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "top", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := parseTopScrape(f, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTopTableGolden computes the table from two canned scrapes 2 s apart.
// In between, web answered 390 200s, 4 500s and 6 503s (5 req/s of
// errors), its latency histogram gained 200 requests under 10ms, 200
// more under 50ms, 10 under 1s; two instances used 0.75 CPU seconds and a
// third appeared (no rate yet); resize answered nothing.
func TestTopTableGolden(t *testing.T) {
	a := cannedScrape(t, "scrape1.prom", testNow)
	b := cannedScrape(t, "scrape2.prom", testNow.Add(2*time.Second))
	var out strings.Builder
	printTop(&out, topRows(a, b, "default", time.Second))
	checkGolden(t, "top", out.String())
}

// TestTopSplitsRevisionsGolden: during a canary of web (revision 5 next to
// 4), web's line is followed by one line per revision. Over the 2 s between
// the scrapes revision 4 answered 360 200s (300 under 10ms, 60 under 50ms)
// on 3 instances; revision 5 answered 36 200s and 4 500s (10 under 50ms, 20
// under 100ms, 10 under 1s) on 1; 2 503s were answered by no revision and
// count for web only. resize runs one revision: one line, as without a
// split.
func TestTopSplitsRevisionsGolden(t *testing.T) {
	a := cannedScrape(t, "canary1.prom", testNow)
	b := cannedScrape(t, "canary2.prom", testNow.Add(2*time.Second))
	rows := topRows(a, b, "default", time.Second)
	var out strings.Builder
	printTop(&out, rows)
	checkGolden(t, "top_canary", out.String())
	for _, r := range rows {
		if r.name == "resize" && r.revisions != nil {
			t.Errorf("resize runs one revision but has revision lines %+v", r.revisions)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := func(counts ...uint64) *dto.Histogram {
		bounds := []float64{0.1, 0.2, 0.4, math.Inf(1)}
		out := &dto.Histogram{}
		for i, c := range counts {
			ub, cc := bounds[i], c
			out.Bucket = append(out.Bucket, &dto.Bucket{UpperBound: &ub, CumulativeCount: &cc})
		}
		n := counts[len(counts)-1]
		out.SampleCount = &n
		return out
	}
	for _, c := range []struct {
		q             float64
		before, after *dto.Histogram
		want          float64
	}{
		{0.5, nil, h(0, 10, 10, 10), 0.15},             // all in (0.1, 0.2]: midway
		{0.5, h(0, 10, 10, 10), h(0, 10, 20, 20), 0.3}, // only the new ones count
		{0.99, nil, h(0, 0, 0, 5), 0.4},                // above the last bound: that bound
		{0.5, h(1, 1, 1, 1), h(1, 1, 1, 1), math.NaN()},
	} {
		got := histogramQuantile(c.q, c.before, c.after)
		if !(math.Abs(got-c.want) < 1e-9 || (math.IsNaN(got) && math.IsNaN(c.want))) {
			t.Errorf("quantile %v = %v, want %v", c.q, got, c.want)
		}
	}
}

// TestTopOnce runs the command against a server whose counters move
// between two scrapes, and checks it prints one table, without ANSI codes
// when its output is not a terminal.
func TestTopOnce(t *testing.T) {
	isolateConfig(t)
	var scrapes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"error":{"kind":"NotFound","message":"no"}}`, http.StatusNotFound)
			return
		}
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# TYPE berth_requests_total counter\n"+
			"berth_requests_total{code=\"200\",environment=\"default\",kind=\"Service\",revision=\"1\",workload=\"web\"} %d\n"+
			"# TYPE berth_instances_desired gauge\n"+
			"berth_instances_desired{environment=\"default\",kind=\"Service\",workload=\"web\"} 2\n", n*10)
	}))
	t.Cleanup(srv.Close)

	r := runCtx(context.Background(), t, srv.URL, "", newSyncBuffer(), "top", "--once", "--interval", "100ms")
	mustSucceed(t, r)
	if scrapes.Load() != 2 {
		t.Errorf("%d scrapes, want 2", scrapes.Load())
	}
	// The test clock is frozen, so the rate is over --interval: 10 / 0.1 s.
	want := "KIND      NAME   INSTANCES   REQ/S   P50   P99   ERRORS/S   CPU   MEMORY\n" +
		"Service   web    0/2         100     -     -     0          -     -\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Error("ANSI codes written to something that is not a terminal")
	}

	r = runCtx(context.Background(), t, srv.URL, "", newSyncBuffer(), "top", "--interval", "1ms")
	if r.code != 3 || !strings.Contains(r.stderr, "interval") {
		t.Errorf("--interval 1ms: exit %d, stderr %q; want 3 naming the flag", r.code, r.stderr)
	}
}

// TestLogsFallsBackToFunctions asks for NAME as a service, then as a
// function; unknown names exit 5, bad times exit 3 naming the flag.
func TestLogsFallsBackToFunctions(t *testing.T) {
	isolateConfig(t)
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path+"?"+r.URL.RawQuery)
		if r.URL.Path == "/api/v1/environments/dev/functions/resize/logs" {
			fmt.Fprintln(w, "[resize-a] resized")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintln(w, `{"error":{"kind":"NotFound","message":"not found"}}`)
	}))
	t.Cleanup(srv.Close)
	logs := func(args ...string) result {
		return runCtx(context.Background(), t, srv.URL, "", newSyncBuffer(), append([]string{"logs", "-e", "dev"}, args...)...)
	}

	r := logs("resize", "--grep", "resiz(e|ing)", "--revision", "2", "--until", "1h", "--since", "2026-11-28T08:00:00Z")
	mustSucceed(t, r)
	if r.stdout != "[resize-a] resized\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if len(paths) != 2 || !strings.Contains(paths[0], "/services/resize/logs") || !strings.Contains(paths[1], "/functions/resize/logs") {
		t.Fatalf("requests %v: want the service route, then the function route", paths)
	}
	for _, want := range []string{"grep=resiz%28e%7Cing%29", "revision=2", "until=1h", "since=2026-11-28T08%3A00%3A00Z"} {
		if !strings.Contains(paths[1], want) {
			t.Errorf("request %s lacks %s", paths[1], want)
		}
	}

	paths = nil
	r = logs("resize", "--kind", "function")
	mustSucceed(t, r)
	if len(paths) != 1 {
		t.Errorf("--kind function made %d requests, want 1", len(paths))
	}

	r = logs("nope")
	if r.code != 5 || !strings.Contains(r.stderr, `no service or function "nope"`) {
		t.Errorf("unknown workload: exit %d, stderr %q; want 5", r.code, r.stderr)
	}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"web", "--since", "yesterday"}, "--since"},
		{[]string{"web", "--until", "tomorrow"}, "--until"},
		{[]string{"web", "--grep", "("}, "--grep"},
		{[]string{"web", "-f", "--until", "5m"}, "--until"},
	} {
		paths = nil
		r = logs(c.args...)
		if r.code != 3 || !strings.Contains(r.stderr, c.flag) || len(paths) != 0 {
			t.Errorf("%v: exit %d, stderr %q, %d requests; want exit 3 naming %s before any request", c.args, r.code, r.stderr, len(paths), c.flag)
		}
	}
}

// A Wasm function's memory is the Wasm host's count of its running
// instances' memory (it has no container), shown like a container's.
func TestTopWasmMemory(t *testing.T) {
	scrape := func(n int, at time.Time) *topScrape {
		s, err := parseTopScrape(strings.NewReader(fmt.Sprintf("# TYPE berth_requests_total counter\n"+
			"berth_requests_total{code=\"200\",environment=\"default\",kind=\"Function\",revision=\"1\",workload=\"hello\"} %d\n"+
			"# TYPE berth_wasm_memory_bytes gauge\n"+
			"berth_wasm_memory_bytes{environment=\"default\",workload=\"hello\"} %d\n"+
			"berth_wasm_memory_bytes{environment=\"other\",workload=\"hello\"} 999\n", n, 3<<20)), at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rows := topRows(scrape(10, testNow), scrape(30, testNow.Add(2*time.Second)), "default", time.Second)
	if len(rows) != 1 || rows[0].name != "hello" || !rows[0].hasMem || rows[0].memBytes != 3<<20 || rows[0].reqPerSec != 10 {
		t.Fatalf("rows %+v, want hello with 3 MiB and 10 req/s", rows)
	}
}
