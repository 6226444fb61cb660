package cli

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

// clearScreen moves the cursor home and clears the terminal, as top does.
const clearScreen = "\x1b[H\x1b[2J"

func newTopCommand(o *options) *cobra.Command {
	var once bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show a live table of workloads: load, latency, errors, instances, CPU, memory",
		Long: "Show the Services and Functions of an environment with their instances\n" +
			"(ready/desired), requests per second, median and 99th percentile latency, 5xx\n" +
			"answers per second, CPU (in millicores) and memory, computed from two scrapes of\n" +
			"the server's /metrics an interval apart. While a workload runs more than one\n" +
			"revision (a traffic split, a canary), a line per revision follows its own: the\n" +
			"revision's ready instances, requests, latency and errors. On a terminal the table is redrawn\n" +
			"every interval until Ctrl-C; with --once, or when not on a terminal, one table\n" +
			"is printed.",
		Example: "  berth top\n  berth top -e staging --interval 5s\n  berth top --once",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval < 100*time.Millisecond {
				return v1.FieldError("interval", "--interval %v is too short: use 100ms or more", interval)
			}
			ctx := cmd.Context()
			c, err := o.client()
			if err != nil {
				return err
			}
			scrape := func() (*topScrape, error) {
				rc, err := c.Metrics(ctx)
				if err != nil {
					return nil, err
				}
				defer rc.Close()
				return parseTopScrape(rc, o.now())
			}
			live := !once && isTerminal(o.out)
			prev, err := scrape()
			if err != nil {
				return err
			}
			timer := time.NewTimer(interval)
			defer timer.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil // Ctrl-C ends a live table without an error
				case <-timer.C:
				}
				cur, err := scrape()
				if err != nil {
					if interrupted(ctx, err) {
						return nil
					}
					return err
				}
				rows := topRows(prev, cur, o.env, interval)
				if live {
					io.WriteString(o.out, clearScreen)
					fmt.Fprintf(o.out, "environment %s · every %v · %s\n\n", o.env, interval, cur.at.Local().Format("15:04:05"))
				}
				printTop(o.out, rows)
				if !live {
					return nil
				}
				prev = cur
				timer.Reset(interval)
			}
		},
	}
	f := cmd.Flags()
	f.BoolVar(&once, "once", false, "print one table and exit")
	f.DurationVar(&interval, "interval", 2*time.Second, "time between the scrapes rates are computed over")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// topScrape is one parsed /metrics answer.
type topScrape struct {
	at   time.Time
	fams map[string]*dto.MetricFamily
}

func parseTopScrape(r io.Reader, at time.Time) (*topScrape, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, v1.Errorf(v1.ErrInternal, "the server's /metrics did not parse: %v", err)
	}
	return &topScrape{at: at, fams: fams}, nil
}

// samples calls fn for every sample of family name in environment env.
func (s *topScrape) samples(name, env string, fn func(labels map[string]string, m *dto.Metric)) {
	f := s.fams[name]
	if f == nil {
		return
	}
	for _, m := range f.Metric {
		labels := make(map[string]string, len(m.Label))
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["environment"] == env {
			fn(labels, m)
		}
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// topRow is one workload's line, or one revision's under it.
type topRow struct {
	kind, name       string
	revision         int64 // > 0 on a revision's line
	ready, desired   int
	reqPerSec        float64
	p50, p99         float64 // seconds; NaN when no request was answered
	errPerSec        float64
	cpuMilli         float64 // NaN when unknown
	memBytes         float64
	hasCPU, hasMem   bool
	hasInstanceGauge bool
	// revisions are the workload's lines by revision, when more than one
	// revision runs or answered (a split, a canary); nil otherwise.
	revisions []topRow
}

// counterKey identifies one time series across scrapes.
func counterKey(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + labels[k] + ",")
	}
	return b.String()
}

// increase is a counter's growth between scrapes; a counter that went
// down was reset (the server restarted), so all of it is new.
func increase(prev map[string]float64, key string, cur float64) float64 {
	if p, ok := prev[key]; ok && cur >= p {
		return cur - p
	}
	return cur
}

// topRows computes the table from two scrapes of env. The rate's time base
// is the scrapes' timestamps, or fallback when they are not apart (a
// frozen clock).
func topRows(prev, cur *topScrape, env string, fallback time.Duration) []topRow {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = fallback.Seconds()
	}
	rows := map[string]*topRow{}
	get := func(name string) *topRow {
		r := rows[name]
		if r == nil {
			r = &topRow{name: name, p50: math.NaN(), p99: math.NaN()}
			rows[name] = r
		}
		return r
	}
	// A workload's revisions, by number; what answered with no revision
	// (a 503 at zero) counts for the workload only.
	revRows := map[string]map[int64]*topRow{}
	getRev := func(name, rev string) *topRow {
		n, err := strconv.ParseInt(rev, 10, 64)
		if err != nil || n <= 0 {
			return nil
		}
		if revRows[name] == nil {
			revRows[name] = map[int64]*topRow{}
		}
		r := revRows[name][n]
		if r == nil {
			r = &topRow{name: name, revision: n, p50: math.NaN(), p99: math.NaN()}
			revRows[name][n] = r
		}
		return r
	}
	cur.samples("berth_revision_instances_ready", env, func(l map[string]string, m *dto.Metric) {
		if r := getRev(l["workload"], l["revision"]); r != nil {
			r.ready = int(metricValue(m))
		}
	})
	gauge := func(family string, set func(r *topRow, v float64)) {
		cur.samples(family, env, func(l map[string]string, m *dto.Metric) {
			r := get(l["workload"])
			r.kind = cmp.Or(r.kind, l["kind"])
			r.hasInstanceGauge = true
			set(r, metricValue(m))
		})
	}
	gauge("berth_instances_desired", func(r *topRow, v float64) { r.desired = int(v) })
	gauge("berth_instances_ready", func(r *topRow, v float64) { r.ready = int(v) })

	// Counters: the previous scrape's values by series.
	before := func(family string) map[string]float64 {
		out := map[string]float64{}
		prev.samples(family, env, func(l map[string]string, m *dto.Metric) { out[counterKey(l)] = metricValue(m) })
		return out
	}
	reqBefore := before("berth_requests_total")
	cur.samples("berth_requests_total", env, func(l map[string]string, m *dto.Metric) {
		r := get(l["workload"])
		r.kind = cmp.Or(r.kind, l["kind"])
		n := increase(reqBefore, counterKey(l), metricValue(m)) / dt
		rr := getRev(l["workload"], l["revision"])
		if rr == nil {
			rr = &topRow{}
		}
		r.reqPerSec += n
		rr.reqPerSec += n
		if code, err := strconv.Atoi(l["code"]); err == nil && code >= 500 && code < 600 {
			r.errPerSec += n
			rr.errPerSec += n
		}
	})
	cpuBefore := before("berth_instance_cpu_seconds_total")
	cur.samples("berth_instance_cpu_seconds_total", env, func(l map[string]string, m *dto.Metric) {
		key := counterKey(l)
		if _, ok := cpuBefore[key]; !ok {
			return // a new instance: no rate yet
		}
		r := get(l["workload"])
		r.cpuMilli += increase(cpuBefore, key, metricValue(m)) / dt * 1000
		r.hasCPU = true
	})
	cur.samples("berth_instance_memory_bytes", env, func(l map[string]string, m *dto.Metric) {
		r := get(l["workload"])
		r.memBytes += metricValue(m)
		r.hasMem = true
	})
	// A Wasm function's instances live in the server's process: their
	// memory is the Wasm host's count (CPU is not told apart per instance).
	cur.samples("berth_wasm_memory_bytes", env, func(l map[string]string, m *dto.Metric) {
		r := get(l["workload"])
		r.memBytes += metricValue(m)
		r.hasMem = true
	})

	// Latency: the histogram of the requests answered between the scrapes,
	// one series per revision; the workload's is their sum.
	histBefore, wlBefore := map[string]*dto.Histogram{}, map[string]*dto.Histogram{}
	prev.samples("berth_request_duration_seconds", env, func(l map[string]string, m *dto.Metric) {
		histBefore[counterKey(l)] = m.Histogram
		wlBefore[l["workload"]] = addHistogram(wlBefore[l["workload"]], m.Histogram)
	})
	wlAfter := map[string]*dto.Histogram{}
	cur.samples("berth_request_duration_seconds", env, func(l map[string]string, m *dto.Metric) {
		if m.Histogram == nil {
			return
		}
		wlAfter[l["workload"]] = addHistogram(wlAfter[l["workload"]], m.Histogram)
		if r := getRev(l["workload"], l["revision"]); r != nil {
			before := histBefore[counterKey(l)]
			r.p50 = histogramQuantile(0.5, before, m.Histogram)
			r.p99 = histogramQuantile(0.99, before, m.Histogram)
		}
	})
	for name, h := range wlAfter {
		r := get(name)
		r.p50 = histogramQuantile(0.5, wlBefore[name], h)
		r.p99 = histogramQuantile(0.99, wlBefore[name], h)
	}

	out := make([]topRow, 0, len(rows))
	for _, r := range rows {
		if !r.hasInstanceGauge && r.reqPerSec == 0 {
			continue // a deleted workload whose counters linger
		}
		// A revision runs when it has a ready instance or answered
		// between the scrapes; more than one is a split or a canary.
		var revs []topRow
		for _, rr := range revRows[r.name] {
			if rr.ready > 0 || rr.reqPerSec > 0 {
				rr.kind = r.kind
				revs = append(revs, *rr)
			}
		}
		if len(revs) > 1 {
			slices.SortFunc(revs, func(a, b topRow) int { return cmp.Compare(a.revision, b.revision) })
			r.revisions = revs
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b topRow) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
	})
	return out
}

// addHistogram sums two snapshots of histograms of the same buckets (the
// series of one workload's revisions); a nil a is none yet.
func addHistogram(a, b *dto.Histogram) *dto.Histogram {
	if b == nil {
		return a
	}
	if a == nil {
		return b
	}
	count, sum := a.GetSampleCount()+b.GetSampleCount(), a.GetSampleSum()+b.GetSampleSum()
	out := &dto.Histogram{SampleCount: &count, SampleSum: &sum}
	at := map[float64]uint64{}
	for _, bk := range a.Bucket {
		at[bk.GetUpperBound()] = bk.GetCumulativeCount()
	}
	for _, bk := range b.Bucket {
		ub, c := bk.GetUpperBound(), bk.GetCumulativeCount()+at[bk.GetUpperBound()]
		out.Bucket = append(out.Bucket, &dto.Bucket{UpperBound: &ub, CumulativeCount: &c})
	}
	return out
}

// histogramQuantile estimates quantile q of the observations between two
// snapshots of a cumulative histogram, interpolating linearly inside the
// bucket it falls in, as Prometheus' histogram_quantile does. It is NaN
// when nothing was observed; past the last finite bound it is that bound.
func histogramQuantile(q float64, before, after *dto.Histogram) float64 {
	prev := map[float64]uint64{}
	var prevCount uint64
	if before != nil {
		for _, b := range before.Bucket {
			prev[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		prevCount = before.GetSampleCount()
	}
	total := float64(after.GetSampleCount())
	if after.GetSampleCount() >= prevCount {
		total -= float64(prevCount)
	} else {
		prev = map[float64]uint64{} // reset: count from zero
	}
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, lowerCount := 0.0, 0.0
	for _, b := range after.Bucket {
		ub := b.GetUpperBound()
		count := float64(b.GetCumulativeCount() - min(prev[ub], b.GetCumulativeCount()))
		if count >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			if count == lowerCount {
				return ub
			}
			return lower + (ub-lower)*(rank-lowerCount)/(count-lowerCount)
		}
		lower, lowerCount = ub, count
	}
	// The rest are above the last bucket (+Inf is implicit in the text
	// format when absent).
	return lower
}

func printTop(w io.Writer, rows []topRow) {
	tw := newTable(w)
	row(tw, "KIND", "NAME", "INSTANCES", "REQ/S", "P50", "P99", "ERRORS/S", "CPU", "MEMORY")
	for _, r := range rows {
		cpu, mem := "-", "-"
		if r.hasCPU {
			cpu = fmt.Sprintf("%.0fm", r.cpuMilli)
		}
		if r.hasMem {
			mem = humanBytesIEC(r.memBytes)
		}
		row(tw, orNone(r.kind), r.name, fmt.Sprintf("%d/%d", r.ready, r.desired),
			rate(r.reqPerSec), latency(r.p50), latency(r.p99), rate(r.errPerSec), cpu, mem)
		// During a split or a canary, each revision's line under the
		// workload's: its ready instances and what it answered (CPU and
		// memory are the workload's).
		for _, rr := range r.revisions {
			row(tw, "", "  revision "+strconv.FormatInt(rr.revision, 10), strconv.Itoa(rr.ready),
				rate(rr.reqPerSec), latency(rr.p50), latency(rr.p99), rate(rr.errPerSec), "", "")
		}
	}
	tw.Flush()
}

func rate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// latency renders seconds as a duration a person reads at a glance.
func latency(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	d := time.Duration(math.Round(s*1e6)) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// humanBytesIEC renders memory the way kubectl top does (Mi, Gi).
func humanBytesIEC(b float64) string {
	const k = 1024
	switch {
	case b < k*k:
		return fmt.Sprintf("%.0fKi", b/k)
	case b < k*k*k:
		return fmt.Sprintf("%.1fMi", b/(k*k))
	}
	return fmt.Sprintf("%.2fGi", b/(k*k*k))
}
