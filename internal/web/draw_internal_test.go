package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

func TestQuantileInterpolatesWithinTheBucket(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1, math.Inf(1)}
	prev := hist{bounds: bounds, cum: []float64{10, 10, 10, 10}, count: 10}
	// 100 new observations: 50 under 10ms, 40 in (10ms, 100ms], 10 in (100ms, 1s].
	cur := hist{bounds: bounds, cum: []float64{60, 100, 110, 110}, count: 110}
	if got := quantile(0.5, prev, cur); math.Abs(got-0.01) > 1e-9 {
		t.Errorf("p50 = %v, want 0.01", got)
	}
	if got := quantile(0.99, prev, cur); math.Abs(got-(0.1+0.9*0.9)) > 1e-9 {
		t.Errorf("p99 = %v, want 0.91", got)
	}
	if got := quantile(0.5, cur, cur); !math.IsNaN(got) {
		t.Errorf("no new observations: %v, want NaN", got)
	}
	// A counter that went down is a restart: all of it is new.
	if got := quantile(0.5, cur, prev); math.Abs(got-0.005) > 1e-9 {
		t.Errorf("after a reset: %v, want 0.005", got)
	}
}

const scrapeA = `# TYPE berth_requests_total counter
berth_requests_total{environment="default",workload="web",kind="Service",revision="1",code="200"} 10
berth_requests_total{environment="default",workload="web",kind="Service",revision="1",code="503"} 1
# TYPE berth_instances_ready gauge
berth_instances_ready{environment="default",workload="web",kind="Service"} 2
# TYPE berth_instance_cpu_seconds_total counter
berth_instance_cpu_seconds_total{environment="default",workload="web",instance="web-a"} 1
# TYPE berth_instance_memory_bytes gauge
berth_instance_memory_bytes{environment="default",workload="web",instance="web-a"} 1048576
`

const scrapeB = `# TYPE berth_requests_total counter
berth_requests_total{environment="default",workload="web",kind="Service",revision="1",code="200"} 40
berth_requests_total{environment="default",workload="web",kind="Service",revision="1",code="503"} 11
# TYPE berth_instances_ready gauge
berth_instances_ready{environment="default",workload="web",kind="Service"} 3
# TYPE berth_instance_cpu_seconds_total counter
berth_instance_cpu_seconds_total{environment="default",workload="web",instance="web-a"} 1.5
# TYPE berth_instance_memory_bytes gauge
berth_instance_memory_bytes{environment="default",workload="web",instance="web-a"} 2097152
`

// The sampler turns two scrapes 10 s apart into a point: rates, the
// instance count, and the instance's CPU and memory.
func TestHistoryPointsFromTwoScrapes(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	scrapes := []string{scrapeA, scrapeB}
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	scrape := func(context.Context) (io.ReadCloser, error) {
		mu.Lock()
		defer mu.Unlock()
		s := scrapes[0]
		if len(scrapes) > 1 {
			scrapes = scrapes[1:]
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
	h := newHistory(t.Context(), time.Hour, 10, scrape, clock, slog.New(slog.DiscardHandler))
	h.sample()
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	h.sample()
	pts, errText := h.series("default", "web")
	if errText != "" || len(pts) != 1 {
		t.Fatalf("points %+v, error %q", pts, errText)
	}
	p := pts[0]
	if p.RPS != 4 || p.ErrPS != 1 || p.Ready != 3 {
		t.Errorf("point %+v: want 4 req/s, 1 error/s, 3 ready", p)
	}
	u, ok := h.instanceUsage("default", "web-a")
	if !ok || !u.HasCPU || u.CPUMilli != 50 || u.Memory != 2<<20 {
		t.Errorf("usage %+v %v: want 50 millicores and 2 MiB", u, ok)
	}
}

func TestChartDrawsSeriesWithGaps(t *testing.T) {
	t0 := time.Unix(0, 0)
	c := chart{Title: "Latency", Unit: "s", Times: []time.Time{t0, t0.Add(5 * time.Second), t0.Add(10 * time.Second), t0.Add(15 * time.Second)},
		Series: []chartSeries{{"p50", []float64{0.01, math.NaN(), 0.02, 0.03}}}}
	svg := string(c.SVG())
	if strings.Count(svg, "<polyline") != 1 || strings.Count(svg, "<circle") != 1 {
		t.Errorf("a gap should split the line into a dot and a line: %s", svg)
	}
	if !strings.Contains(svg, "p50 30ms") || !strings.Contains(svg, `aria-label="Latency over the last 15s: p50 now 30ms, highest 30ms"`) {
		t.Errorf("legend or summary: %s", svg)
	}
	if empty := string(chart{Title: "Requests"}.SVG()); !strings.Contains(empty, "collecting data") {
		t.Errorf("an empty chart: %s", empty)
	}
	for v, want := range map[float64]float64{0: 1, 0.7: 1, 3: 5, 12: 20, 0.031: 0.05} {
		if got := niceMax(v); math.Abs(got-want) > 1e-12 {
			t.Errorf("niceMax(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestWaterfallNestsAndPlacesSpans(t *testing.T) {
	t0 := time.Unix(100, 0)
	spans := []v1.Span{
		{SpanID: "c", ParentID: "a", Name: "upstream", Start: t0.Add(60 * time.Millisecond), End: t0.Add(100 * time.Millisecond)},
		{SpanID: "a", ParentID: "caller-outside", Name: "gateway fn.default", Start: t0, End: t0.Add(100 * time.Millisecond)},
		{SpanID: "b", ParentID: "a", Name: "cold start", Start: t0.Add(10 * time.Millisecond), End: t0.Add(60 * time.Millisecond), Status: "error"},
	}
	rows, total := waterfall(spans)
	if total != 100*time.Millisecond || len(rows) != 3 {
		t.Fatalf("rows %+v total %v", rows, total)
	}
	want := []struct {
		name  string
		depth int
		x, w  float64
	}{{"gateway fn.default", 0, 0, 1000}, {"cold start", 1, 100, 500}, {"upstream", 1, 600, 400}}
	for i, w := range want {
		r := rows[i]
		if r.Name != w.name || r.Depth != w.depth || math.Abs(r.X-w.x) > 1e-9 || math.Abs(r.W-w.w) > 1e-9 {
			t.Errorf("row %d: %+v, want %+v", i, r, w)
		}
	}
	if !rows[1].Error || !strings.Contains(string(rows[1].Bar()), `class="err"`) {
		t.Errorf("the failed span is not drawn as one: %+v", rows[1])
	}
}

const loopDef = `{"StartAt":"Poll","States":{
 "Poll":{"Type":"Task","Resource":"function:check","Next":"Ready?","Catch":[{"ErrorEquals":["States.ALL"],"Next":"Failed"}]},
 "Ready?":{"Type":"Choice","Choices":[{"Variable":"$.ready","BooleanEquals":true,"Next":"Done"}],"Default":"Wait"},
 "Wait":{"Type":"Wait","Seconds":5,"Next":"Poll"},
 "Done":{"Type":"Succeed"},
 "Failed":{"Type":"Fail"}}}`

// A loop is laid out top to bottom with its return drawn aside; the
// states keep the order they were written in.
func TestGraphLayoutAndPath(t *testing.T) {
	start, states, err := parseDefinition(json.RawMessage(loopDef))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range states {
		names = append(names, s.Name)
	}
	if start != "Poll" || strings.Join(names, ",") != "Poll,Ready?,Wait,Done,Failed" {
		t.Fatalf("start %q, states %v", start, names)
	}
	_, byName := layout(start, states)
	layer := func(n string) int { return byName[n].layer }
	if layer("Poll") != 0 || layer("Ready?") != 1 || layer("Wait") != 2 || layer("Done") != 2 || layer("Failed") != 1 {
		t.Errorf("layers: Poll %d Ready? %d Wait %d Done %d Failed %d", layer("Poll"), layer("Ready?"), layer("Wait"), layer("Done"), layer("Failed"))
	}
	exec := &v1.Execution{Status: v1.ExecutionFailed}
	hist := []v1.HistoryEvent{
		{Type: "ExecutionStarted"},
		{Type: "TaskStateEntered", StateName: "Poll"}, {Type: "TaskStateExited", StateName: "Poll"},
		{Type: "ChoiceStateEntered", StateName: "Ready?"}, {Type: "ChoiceStateExited", StateName: "Ready?"},
		{Type: "WaitStateEntered", StateName: "Wait"}, {Type: "WaitStateExited", StateName: "Wait"},
		{Type: "TaskStateEntered", StateName: "Poll"},
		{Type: "ExecutionFailed"},
	}
	status, taken := executionPath(states, exec, hist)
	if status["Poll"] != nodeFailed || status["Wait"] != nodeVisited || status["Done"] != "" {
		t.Errorf("status %v", status)
	}
	if !taken[[2]string{"Wait", "Poll"}] || taken[[2]string{"Ready?", "Done"}] {
		t.Errorf("taken %v", taken)
	}
	svg, err := workflowGraph(json.RawMessage(loopDef), status, taken)
	if err != nil {
		t.Fatal(err)
	}
	s := string(svg)
	if !strings.Contains(s, `<g class="node failed start" data-state="Poll">`) || !strings.Contains(s, `class="edge taken"`) || !strings.Contains(s, `class="edge catch"`) {
		t.Errorf("graph: %s", s)
	}
	if _, err := workflowGraph(json.RawMessage(`{"StartAt": 1}`), nil, nil); err == nil {
		t.Error("a definition that does not read drew a graph")
	}
}

func TestSafeNextStaysOnTheDashboard(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/env/default?x=1": "/ui/env/default?x=1",
		"//evil.example/ui/":  "/ui/environments",
		"https://evil/ui/":    "/ui/environments",
		"/ui/../api/v1/":      "/ui/environments",
		"/api/v1/tokens":      "/ui/environments",
		"":                    "/ui/environments",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
