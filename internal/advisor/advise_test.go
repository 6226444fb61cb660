package advisor

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/history"
)

func service(name string, replicas int32) Workload {
	return Workload{Kind: v1.KindService, Environment: "prod", Name: name, ImageDigest: "sha256:abc",
		Service: &v1.Service{Metadata: v1.ObjectMeta{Name: name, Environment: "prod"},
			Spec: v1.ServiceSpec{Replicas: &replicas, Template: v1.Template{Resources: v1.Resources{CPU: "500m", Memory: "256Mi"}}}}}
}

func function(name string, conc int32) Workload {
	return Workload{Kind: v1.KindFunction, Environment: "prod", Name: name, ImageDigest: "sha256:abc",
		Function: &v1.Function{Metadata: v1.ObjectMeta{Name: name, Environment: "prod"},
			Spec: v1.FunctionSpec{Concurrency: conc, Template: v1.Template{Resources: v1.Resources{CPU: "500m", Memory: "256Mi"}}}}}
}

// asRan fills in what a workload's own way measured: a service's replicas
// all the time, or a function's instances from a replay of it.
func asRan(ms []history.Minute, w Workload) []history.Minute {
	switch w.Kind {
	case v1.KindService:
		for i := range ms {
			ms[i].Kinds = history.RanAsService
			ms[i].InstanceSeconds = float64(*w.Service.Spec.Replicas) * 60
			ms[i].InstancesMax = int(*w.Service.Spec.Replicas)
		}
	default:
		o := ReplayFunction(trafficOf(ms), functionWayFor(w, Settings{}, coldStart{cold: 20 * time.Millisecond}))
		for i := range ms {
			ms[i].Kinds = history.RanAsFunction
			ms[i].InstanceSeconds = o.PerMinute[i]
		}
	}
	return ms
}

// day is a day of minutes, with traffic put in by f.
func day(f func(ms []history.Minute)) []history.Minute {
	ms := minutes(24 * 60)
	f(ms)
	for i := range ms {
		if ms[i].Requests > 0 {
			ms[i].InFlightMax = max(ms[i].InFlightMax, 1)
		}
	}
	return ms
}

func rare(ms []history.Minute) {
	for m := 0; m < len(ms); m += 20 { // a request every 20 minutes
		at(ms, m, 17, 1, 0.03)
	}
}

func steadyBusy(ms []history.Minute) {
	steadyLoad(ms, 0, len(ms), 10, 0.35) // 3.5 in flight all day
	for i := range ms {
		ms[i].InFlightMax = 6
	}
}

// bursts is ten minutes of 40 requests a second of 1 s each.
func bursts(ms []history.Minute) {
	steadyLoad(ms, 600, 610, 40, 1)
	for m := 600; m < 610; m++ {
		ms[m].InFlightMax = 40
	}
}

func advise(t *testing.T, w Workload, ms []history.Minute, s Settings) v1.Advice {
	t.Helper()
	ms = asRan(ms, w)
	s.Alternatives = true
	a, err := Advise(Input{Workload: w, Minutes: ms, From: ms[0].At, To: ms[len(ms)-1].At.Add(time.Minute),
		Image: history.ImageStats{ColdStarts: 10, ColdStartSeconds: 0.2}, Prices: DefaultPrices(), Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s %s", w.Name, a.Reason, a.WouldChange)
	return a
}

func TestAdvise(t *testing.T) {
	t.Run("a rarely called service should be a function", func(t *testing.T) {
		a := advise(t, service("rare", 1), day(rare), Settings{})
		if a.Recommend != v1.KindFunction || !a.Switch {
			t.Fatalf("recommend %s (switch %v): %s", a.Recommend, a.Switch, a.Reason)
		}
		if !strings.HasPrefix(a.Reason, "run as a Function: idle") || !strings.Contains(a.Reason, "cold starts a day at +20 ms") {
			t.Errorf("reason: %q", a.Reason)
		}
		// 72 requests, each a cold start of its own (20 minutes apart).
		want(t, "cold starts a day", a.Other.ColdStartsPerDay, 72, 0)
		// The first ten keep their instance the default 60 s; after ten
		// 20-minute gaps the autoscaler learns to keep it 10 s.
		want(t, "function instance-hours a day", a.Other.InstanceHoursPerDay, (10*60.6+62*10.6)/3600, 0.01)
		want(t, "service instance-hours a day", a.Current.InstanceHoursPerDay, 24, 0)
		if a.Other.Cost >= a.Current.Cost {
			t.Errorf("function $%v, service $%v", a.Other.Cost, a.Current.Cost)
		}
		if a.Convert != "berth convert rare -e prod --to function --concurrency 1 --max 10" {
			t.Errorf("convert: %q", a.Convert)
		}
		if !strings.Contains(a.WouldChange, "min 1 would avoid 100 % of the cold starts and keep 24.0 instance-hours a day running") || !strings.Contains(a.WouldChange, "A Service would be cheaper above") {
			t.Errorf("would change: %q", a.WouldChange)
		}
		if a.Traffic.IdleShare < 0.99 || a.Traffic.Requests != 72 {
			t.Errorf("traffic: %+v", a.Traffic)
		}
	})
	t.Run("a busy service stays a service", func(t *testing.T) {
		a := advise(t, service("busy", 1), day(steadyBusy), Settings{})
		if a.Recommend != v1.KindService || a.Switch || !strings.HasPrefix(a.Reason, "keep it a Service: busy 100 % of the time; as a Function it would cost") {
			t.Fatalf("recommend %s: %s", a.Recommend, a.Reason)
		}
		if !strings.HasPrefix(a.WouldChange, "A Function would be cheaper below about") {
			t.Errorf("would change: %q", a.WouldChange)
		}
	})
	t.Run("a service whose bursts a default function cannot carry", func(t *testing.T) {
		// 40 requests/s of 1 s for ten minutes: 40 in flight, 58 instances
		// at concurrency 1 where the default max is 10.
		a := advise(t, service("bursts", 4), day(bursts), Settings{})
		if a.Recommend != v1.KindService || !strings.Contains(a.Reason, "requests would be refused after waiting too long") {
			t.Fatalf("recommend %s: %s", a.Recommend, a.Reason)
		}
		if len(a.Alternatives) != 4 || a.Alternatives[3].Setting != "max 58" || a.Alternatives[2].Setting != "concurrency 6" {
			t.Errorf("alternatives: %+v", a.Alternatives)
		}
		if a.Recommend != v1.KindService {
			t.Fatalf("recommend %s: %s", a.Recommend, a.Reason)
		}
		if !strings.Contains(a.WouldChange, "a Function would fit") {
			t.Errorf("would change: %q", a.WouldChange)
		}
	})
	t.Run("a function busy all day should be a service", func(t *testing.T) {
		// At concurrency 10 one replica carries the 6 in flight at the peak.
		a := advise(t, function("hot", 10), day(steadyBusy), Settings{})
		if a.Recommend != v1.KindService || !a.Switch || !strings.HasPrefix(a.Reason, "run as a Service (1 replica): busy 100 % of the time; it saves") {
			t.Fatalf("recommend %s: %s", a.Recommend, a.Reason)
		}
		if a.Convert != "berth convert hot -e prod --to service --replicas 1" {
			t.Errorf("convert: %q", a.Convert)
		}
		if a.Model == nil || math.Abs(a.Model.InstanceSeconds-a.Current.InstanceSeconds) > 1e-3 {
			t.Errorf("the model of a function's own history should match what it ran (here the same replay): %+v", a.Model)
		}
	})
	t.Run("asked settings are the ones replayed", func(t *testing.T) {
		four := int32(4)
		a := advise(t, service("bursts", 4), day(bursts),
			Settings{Concurrency: &four, IdleTimeout: 5 * time.Minute, Points: 48})
		if a.Other.Concurrency != 4 || a.Other.IdleTimeout != "5m0s" || !strings.Contains(a.Convert, "--concurrency 4") || !strings.Contains(a.Convert, "--idle-timeout 5m0s") {
			t.Errorf("other %+v, convert %q", a.Other, a.Convert)
		}
		if a.Series == nil || len(a.Series.Requests) != 48 || a.Series.Step != 30*time.Minute {
			t.Fatalf("series: %+v", a.Series)
		}
		var req float64
		for _, r := range a.Series.Requests {
			req += r
		}
		if req != float64(a.Traffic.Requests) || a.Series.Current[0] != 4 {
			t.Errorf("series requests %v (want %d), current %v", req, a.Traffic.Requests, a.Series.Current[0])
		}
	})
}

func TestPriceSheets(t *testing.T) {
	if _, err := v1.ParsePriceSheet([]byte("name: mine\nfunction: {perRequest: 0.0000002, perGBSecond: -1}\nservice: {perVCPUHour: 0.04}\n")); err == nil {
		t.Fatal("a sheet with missing and negative prices was accepted")
	} else {
		for _, s := range []string{"function.perGBSecond is -1", "function.perVCPUHour is missing", "service.perGBHour is missing", "service.perRequest is missing"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		if !v1.IsInvalid(err) {
			t.Errorf("kind %s, want Invalid", v1.KindOf(err))
		}
	}
	if _, err := v1.ParsePriceSheet([]byte("function: {perRequest: 1, perGBSecnd: 2}\n")); err == nil || !strings.Contains(err.Error(), "perGBSecnd") {
		t.Errorf("an unknown field: %v", err)
	}
	if _, err := v1.ParsePriceSheet(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty sheet: %v", err)
	}
	ok := "date: 2026-01-01\nfunction: {perRequest: 0, perGBSecond: 0.00001, perVCPUHour: 0, perGBHour: 0}\nservice: {perRequest: 0, perGBSecond: 0, perVCPUHour: 0.03, perGBHour: 0.003}\n"
	s, err := v1.ParsePriceSheet([]byte(ok))
	if err != nil || s.Currency != "USD" || *s.Service.PerVCPUHour != 0.03 {
		t.Fatalf("%+v %v", s, err)
	}
	// Through the query and back.
	q, err := v1.ParseAdviceQuery(v1.AdviceQuery{Prices: &s, Since: 36 * time.Hour}.Values())
	if err != nil || q.Prices == nil || *q.Prices.Function.PerGBSecond != 0.00001 || q.Since != 36*time.Hour {
		t.Fatalf("round trip: %+v %v", q, err)
	}
	if err := DefaultPrices().Validate(); err != nil {
		t.Errorf("the default sheet: %v", err)
	}
}

func TestAdviceQueryErrors(t *testing.T) {
	for _, raw := range []string{"since=0d", "since=-1h", "since=7days", "concurrency=0", "max=x", "idleTimeout=0s", "points=0", "price.function.perRequest=1"} {
		v, _ := parseQuery(raw)
		if _, err := v1.ParseAdviceQuery(v); err == nil || !v1.IsInvalid(err) {
			t.Errorf("%s: %v", raw, err)
		}
	}
	for raw, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if d, err := v1.ParseSince(raw); err != nil || d != want {
			t.Errorf("%s = %v %v", raw, d, err)
		}
	}
}

// fakeWorkloads and fakeHistory stand in for the caches and the file.
type fakeWorkloads map[string]Workload

func (f fakeWorkloads) Workload(env, name string) (Workload, bool) {
	w, ok := f[name]
	return w, ok && w.Environment == env
}

func (f fakeWorkloads) Workloads(env string) []Workload {
	var out []Workload
	for _, w := range f {
		if w.Environment == env {
			out = append(out, w)
		}
	}
	return out
}

type fakeHistory map[string][]history.Minute

func (f fakeHistory) Range(env, name string, from, to time.Time) ([]history.Minute, error) {
	var out []history.Minute
	for _, m := range f[name] {
		if !m.At.Before(from) && m.At.Before(to) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f fakeHistory) Image(string) (history.ImageStats, error) { return history.ImageStats{}, nil }

func TestAdvisorErrors(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	ws := fakeWorkloads{"rare": service("rare", 1), "new": service("new", 1)}
	hist := fakeHistory{"rare": asRan(day(rare), ws["rare"]), "new": asRan(minutes(12), ws["new"])}
	a, err := New(Config{History: hist, Workloads: ws, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = a.Advice(ctx, "prod", "nope", v1.AdviceQuery{})
	if !v1.IsNotFound(err) || !strings.Contains(err.Error(), `no Service or Function "nope" in environment "prod"`) {
		t.Errorf("unknown name: %v", err)
	}
	_, err = a.Advice(ctx, "prod", "new", v1.AdviceQuery{})
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "has 12 minutes of recorded traffic history in the last 7d; advice needs at least 60 minutes (recorded since 2026-12-01T00:00:00Z; ask again after 2026-12-02T00:48:00Z)") {
		t.Errorf("too little history: %v", err)
	}
	_, err = a.Advice(ctx, "prod", "rare", v1.AdviceQuery{Since: 40 * 24 * time.Hour})
	if !v1.IsInvalid(err) {
		t.Errorf("more than the retention: %v", err)
	}
	adv, err := a.Advice(ctx, "prod", "rare", v1.AdviceQuery{})
	if err != nil || adv.Recommend != v1.KindFunction || len(adv.Alternatives) == 0 {
		t.Fatalf("%+v %v", adv.Reason, err)
	}
	list, err := a.List(ctx, "prod", v1.AdviceQuery{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "rare" || len(list.Skipped) != 1 || list.Skipped[0].Name != "new" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if len(list.Items[0].Alternatives) != 0 {
		t.Errorf("a list computes no alternatives")
	}
}

func parseQuery(raw string) (map[string][]string, error) {
	k, v, _ := strings.Cut(raw, "=")
	return map[string][]string{k: {v}}, nil
}

// TestAdviceAfterAConversion: the minutes a workload ran the other way are
// not "how it ran".
func TestAdviceAfterAConversion(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	w := function("conv", 1)
	ms := asRan(day(rare), w)
	for i := range 12 * 60 { // the first half of the day it was a service
		ms[i].Kinds = history.RanAsService
		ms[i].InstanceSeconds = 60
	}
	ms[12*60].Kinds = history.RanAsService | history.RanAsFunction // the conversion's minute
	a, err := New(Config{History: fakeHistory{"conv": ms}, Workloads: fakeWorkloads{"conv": w}, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	adv, err := a.Advice(context.Background(), "prod", "conv", v1.AdviceQuery{Since: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !adv.From.Equal(t0.Add(12*time.Hour)) || adv.Minutes != 12*60 {
		t.Errorf("from %v, %d minutes: want the 12 hours since the conversion", adv.From, adv.Minutes)
	}
	if adv.Current.InstanceHoursPerDay > 2 {
		t.Errorf("the function's measured instance-hours a day, %.1f, count the service's", adv.Current.InstanceHoursPerDay)
	}
}
