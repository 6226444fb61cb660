package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
)

// TestObservability: requests through the gateway are counted in
// /metrics, traced (a cold start is its own span), and what instances
// print can be filtered with --grep and --since.
func TestObservability(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec: {image: %[1]s, replicas: 1}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn}
spec: {image: %[1]s}
`, echoV1), "apply", "-f", "-", "--wait", "--timeout", "2m")

	for i := range 7 {
		if code, _, err := s.gatewayGet("web.default.berth.localhost", fmt.Sprintf("/log?msg=line-%d", i)); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	if code, _, err := s.gatewayGet("web.default.berth.localhost", "/status?code=503"); err != nil || code != 503 {
		t.Fatalf("error request: %d %v", code, err)
	}

	t.Run("metrics count the requests", func(t *testing.T) {
		rc, err := s.client.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(rc)
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		count := func(code string) float64 {
			var n float64
			for _, m := range fams["berth_requests_total"].GetMetric() {
				if label(m, "workload") == "web" && label(m, "code") == code {
					n += m.GetCounter().GetValue()
				}
			}
			return n
		}
		if count("200") != 7 || count("503") != 1 {
			t.Fatalf("berth_requests_total for web: 200=%v 503=%v, want 7 and 1", count("200"), count("503"))
		}
		if _, ok := fams["berth_request_duration_seconds"]; !ok {
			t.Fatal("no latency histogram")
		}
		// CPU and memory come from containerd's cgroup metrics of the real
		// instance.
		var mem float64
		for _, m := range fams["berth_instance_memory_bytes"].GetMetric() {
			if label(m, "workload") == "web" {
				mem += m.GetGauge().GetValue()
			}
		}
		if mem <= 0 {
			t.Fatalf("no memory reading for web's instance: %v", fams["berth_instance_memory_bytes"])
		}
	})

	t.Run("a cold start is a span of its own", func(t *testing.T) {
		if code, _, err := s.gatewayGet("fn.default.berth.localhost", "/"); err != nil || code != 200 {
			t.Fatalf("function: %d %v", code, err)
		}
		var trace *v1.Trace
		testutil.WaitForState(t, 10*time.Second, "the function's trace", func() (bool, string) {
			sums, err := s.client.Traces(ctx, client.TraceQuery{Workload: "fn", Environment: "default"})
			if err != nil || len(sums) == 0 {
				return false, fmt.Sprint(err)
			}
			trace, err = s.client.Trace(ctx, sums[len(sums)-1].TraceID)
			return err == nil, fmt.Sprint(err)
		})
		var names []string
		for _, sp := range trace.Spans {
			names = append(names, sp.Name)
		}
		if !strings.Contains(strings.Join(names, ","), "cold start") {
			t.Fatalf("spans %v have no cold start", names)
		}
		out := s.mustBerth("", "trace", trace.TraceID)
		if !strings.Contains(out, "cold start") {
			t.Fatalf("berth trace:\n%s", out)
		}
	})

	t.Run("logs filter by grep and since", func(t *testing.T) {
		testutil.WaitForState(t, 10*time.Second, "the lines", func() (bool, string) {
			out, _, _ := s.berth("", "logs", "web", "--grep", "line-[35]")
			return strings.Count(out, "line-") == 2 && strings.Contains(out, "line-3") && strings.Contains(out, "line-5"), out
		})
		// The start line is older than "now": --since in the future of it
		// leaves it out, while the whole log has it.
		if out := s.mustBerth("", "logs", "web"); !strings.Contains(out, "listening on") {
			t.Fatalf("the start line is missing:\n%s", out)
		}
		since := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
		if out := s.mustBerth("", "logs", "web", "--since", since); strings.Contains(out, "listening on") {
			t.Fatalf("--since %s still shows the start line:\n%s", since, out)
		}
		if _, _, code := s.berth("", "logs", "web", "--since", "yesterday"); code != 3 {
			t.Fatalf("a bad --since: exit %d, want 3", code)
		}
		if _, _, code := s.berth("", "logs", "nosuch"); code != 5 {
			t.Fatalf("logs of an unknown workload: exit %d, want 5", code)
		}
	})
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestTraceAcrossTwoHops: service A calls service B through the gateway,
// passing on the traceparent it was given; the two hops are one trace with
// the right parent links.
func TestTraceAcrossTwoHops(t *testing.T) {
	// The instances reach the gateway on their bridge's address, port 80
	// (the only host port besides DNS they may reach).
	s := startServer(t)
	ctx := context.Background()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: a}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: b}
spec: {image: %[1]s}
`, echoV1), "apply", "-f", "-", "--wait", "--timeout", "2m")
	ip := s.service("default", "a").Status.Instances[0].IP
	bridge := ip[:strings.LastIndexByte(ip, '.')] + ".1"
	url := fmt.Sprintf("http://%s/", bridge)
	code, body, err := s.gatewayGet("a.default.berth.localhost", "/call?host=b.default.berth.localhost&url="+url)
	if err != nil || code != 200 || !strings.Contains(body, `"hostname":"b-`) {
		t.Fatalf("a → b: %d %v %s", code, err, body)
	}
	var trace *v1.Trace
	testutil.WaitForState(t, 10*time.Second, "a trace through a and b", func() (bool, string) {
		sums, err := s.client.Traces(ctx, client.TraceQuery{Workload: "a", Environment: "default"})
		if err != nil || len(sums) == 0 {
			return false, fmt.Sprint(err)
		}
		trace, err = s.client.Trace(ctx, sums[len(sums)-1].TraceID)
		return err == nil && len(trace.Spans) >= 4, fmt.Sprint(err)
	})
	byID := map[string]v1.Span{}
	for _, sp := range trace.Spans {
		byID[sp.SpanID] = sp
	}
	// gateway a.default → upstream a.default → gateway b.default → upstream b.default
	var gwB v1.Span
	for _, sp := range trace.Spans {
		if sp.Name == "gateway b.default" {
			gwB = sp
		}
	}
	if gwB.SpanID == "" {
		t.Fatalf("no span for the second hop: %+v", trace.Spans)
	}
	parent := byID[gwB.ParentID]
	if parent.Name != "upstream a.default" {
		t.Fatalf("the second hop's parent is %q, want the first hop's upstream call", parent.Name)
	}
	if root := byID[parent.ParentID]; root.Name != "gateway a.default" {
		t.Fatalf("the first upstream's parent is %q, want the first hop's gateway span", root.Name)
	}
}
