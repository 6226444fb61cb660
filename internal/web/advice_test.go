package web_test

import (
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/advisor"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/history"
)

var adviceNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// adviceHistory is a day of service thumbs called every 20 minutes (one
// replica all day, 30 ms requests) and ten minutes of service fresh, as
// the history recorded them.
type adviceHistory struct{ minutes map[string][]history.Minute }

func newAdviceHistory(end time.Time) *adviceHistory {
	h := &adviceHistory{minutes: map[string][]history.Minute{}}
	start := end.Add(-24 * time.Hour)
	for i := range 24 * 60 {
		m := history.Minute{At: start.Add(time.Duration(i) * time.Minute), Kinds: history.RanAsService, Covered: 60,
			InstanceSeconds: 60, ReadySeconds: 60, InstancesMax: 1, CPUSeconds: 0.06, MemoryBytes: 8 << 20, MemoryMaxBytes: 8 << 20}
		if i%20 == 0 {
			m.Requests, m.Answered, m.BusySeconds, m.Active, m.InFlightMax = 1, 1, 0.03, 1<<17, 1
			m.P50, m.P90, m.P99 = 0.03, 0.03, 0.03
		}
		h.minutes["thumbs"] = append(h.minutes["thumbs"], m)
		if i >= 24*60-10 {
			h.minutes["fresh"] = append(h.minutes["fresh"], m)
		}
	}
	return h
}

func (h *adviceHistory) Range(env, name string, from, to time.Time) ([]history.Minute, error) {
	var out []history.Minute
	for _, m := range h.minutes[name] {
		if env == "default" && !m.At.Before(from) && m.At.Before(to) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (h *adviceHistory) Image(string) (history.ImageStats, error) {
	return history.ImageStats{ColdStarts: 40, ColdStartSeconds: 0.8}, nil
}

type adviceWorkloads struct{}

func (w adviceWorkloads) Workload(env, name string) (advisor.Workload, bool) {
	for _, x := range w.Workloads(env) {
		if x.Name == name {
			return x, true
		}
	}
	return advisor.Workload{}, false
}

func (adviceWorkloads) Workloads(env string) []advisor.Workload {
	if env != "default" {
		return nil
	}
	one := int32(1)
	svc := func(name string) advisor.Workload {
		return advisor.Workload{Kind: v1.KindService, Environment: "default", Name: name, ImageDigest: "sha256:0123456789abcdef",
			Service: &v1.Service{Metadata: v1.ObjectMeta{Name: name, Environment: "default"},
				Spec: v1.ServiceSpec{Replicas: &one, Template: v1.Template{Resources: v1.Resources{CPU: "500m", Memory: "256Mi"}}}}}
	}
	return []advisor.Workload{svc("thumbs"), svc("fresh")}
}

func adviceStack(t *testing.T) *stack {
	adv, err := advisor.New(advisor.Config{History: newAdviceHistory(adviceNow), Workloads: adviceWorkloads{},
		Clock: func() time.Time { return adviceNow }})
	if err != nil {
		t.Fatal(err)
	}
	return newStackWith(t, func(c *apiserver.Config) { c.Advisor = adv })
}

var tagRE = regexp.MustCompile(`<[^>]+>`)

// text is a page's body without its tags, spaces folded, as a reader sees
// it.
func text(body string) string {
	return html.UnescapeString(strings.Join(strings.Fields(tagRE.ReplaceAllString(body, " ")), " "))
}

// A viewer sees the advisor's comparison: both ways, money both ways, the
// advice and its reason, what would change it, and the chart of traffic
// and instances both ways, all as the API answered it for the token.
func TestAdvicePage(t *testing.T) {
	s := adviceStack(t)
	s.apply(service("default", "thumbs", 1))
	b := s.browser()
	b.login(s.token("watcher", v1.RoleViewer, "default"))

	want, err := s.admin.Advice(t.Context(), "default", "thumbs", v1.AdviceQuery{Since: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p := b.get("/ui/env/default/services/thumbs/advice?since=1d")
	if p.status != http.StatusOK {
		t.Fatalf("advice page: %d %s", p.status, p.body)
	}
	// Small: the HTML with both charts drawn in it, nothing else to load
	// but the cached stylesheet and script.
	t.Logf("the advice page's HTML: %d bytes", len(p.body))
	if len(p.body) > 30<<10 {
		t.Errorf("the advice page weighs %d bytes of HTML; it should stay under 30 KiB", len(p.body))
	}
	got := text(p.body)
	for _, w := range []string{
		"Advice: run as a Function", want.Reason, "What would change it: " + want.WouldChange,
		"Now: Service (measured)", "As a Function (replayed)",
		"instance-hours a day 24.0 (mean 1, max 1) 0.4",
		"cold starts a day 0 72",
		"added latency p50 / p99 0 ms / 0 ms 20 ms / 20 ms",
		"cost a day $0.51 $0.000029",
		"To switch: " + want.Convert,
		"The Function way with one setting changed", "min 1 24.0 0 0 / 0 $0.000023 Function",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("the advice page does not say %q:\n%s", w, got)
		}
	}
	// The chart: requests, and the instances of both ways, from the
	// API's series (asked for by the page, not by this test's query).
	for _, w := range []string{`aria-label="Requests over the last `, `: Service (now) now 1, highest 1; as a Function now 0, highest 0.07"`, "02-28 12:00", "03-01 12:00 UTC"} {
		if !strings.Contains(p.body, w) {
			t.Errorf("the advice chart lacks %q: %s", w, regexp.MustCompile(`aria-label="[^"]*"`).FindAllString(p.body, -1))
		}
	}
	if n := strings.Count(p.body, `<polyline class="cs s1"`); n == 0 {
		t.Errorf("the other way's instances are not drawn")
	}

	// Linked from the workload's page and the environment's.
	for _, from := range []string{"/ui/env/default/services/thumbs", "/ui/env/default"} {
		if p := b.get(from); !strings.Contains(p.body, `href="/ui/env/default/services/thumbs/advice"`) {
			t.Errorf("%s does not link to the advice page: %d", from, p.status)
		}
	}
}

// Too little history is the API's error, in its words, on the page, with
// the API's status; so is a bad query.
func TestAdvicePageTooLittleHistory(t *testing.T) {
	s := adviceStack(t)
	b := s.browser()
	b.login(adminToken)
	p := b.get("/ui/env/default/services/fresh/advice")
	got := text(p.body)
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, `id="advice-error"`) ||
		!strings.Contains(got, "service fresh has 10 minutes of recorded traffic history in the last 7d; advice needs at least 60 minutes") ||
		!strings.Contains(got, "ask again after 2025-03-01T12:50:00Z") {
		t.Errorf("too little history: %d\n%s", p.status, got)
	}
	if strings.Contains(got, "Both ways") {
		t.Errorf("a page without advice shows a comparison:\n%s", got)
	}
	p = b.get("/ui/env/default/services/thumbs/advice?since=soon")
	if got := text(p.body); p.status != http.StatusBadRequest || !strings.Contains(got, "field since") || !strings.Contains(got, `"soon" is not a duration`) {
		t.Errorf("a bad since: %d\n%s", p.status, got)
	}
}
