package web

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
)

// point is one interval of a workload's traffic, between two scrapes.
type point struct {
	At         time.Time
	RPS, ErrPS float64 // requests and 5xx answers per second
	P50, P99   float64 // seconds; NaN when no request ended in the interval
	Ready      float64
	Desired    float64
	ColdStarts float64 // cold starts in the interval
	ColdWait   float64 // their mean wait in seconds; NaN when none
}

// usage is an instance's CPU (millicores over the last interval) and
// memory (bytes now).
type usage struct {
	CPUMilli, Memory float64
	HasCPU, HasMem   bool
}

type workloadKey struct{ env, name string }
type instanceKey struct{ env, instance string }

// history is a session's memory of traffic: it scrapes /metrics through
// the API with the session's token (so it holds only what that token may
// read), every interval while someone looks — a page rendered or a live
// stream open within idleStop — and keeps each workload's last keep
// points. It is the dashboard's stand-in for a traffic history the API
// does not have yet; charts read series(), whatever fills it.
type history struct {
	every, idleStop time.Duration
	keep            int
	scrape          func(ctx context.Context) (io.ReadCloser, error)
	now             func() time.Time
	log             *slog.Logger

	mu      sync.Mutex
	ctx     context.Context // the dashboard's: samplers end with it
	running bool
	closed  bool
	wanted  time.Time
	streams int
	prev    *scrapeData
	points  map[workloadKey][]point
	usage   map[instanceKey]usage
	err     string
	subs    map[chan struct{}]struct{}
}

func newHistory(ctx context.Context, every time.Duration, keep int, scrape func(context.Context) (io.ReadCloser, error), now func() time.Time, log *slog.Logger) *history {
	return &history{
		ctx: ctx, every: every, idleStop: 2 * time.Minute, keep: keep, scrape: scrape, now: now, log: log,
		points: map[workloadKey][]point{}, usage: map[instanceKey]usage{}, subs: map[chan struct{}]struct{}{},
	}
}

// want says someone looks: sampling starts, or goes on for idleStop more.
func (h *history) want() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wanted = h.now()
	if h.running || h.closed || h.ctx.Err() != nil {
		return
	}
	h.running = true
	go h.run()
}

// subscribe is a live stream's: a tick after each sample, until cancel.
func (h *history) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.streams++
	h.mu.Unlock()
	h.want()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.streams--
		h.wanted = h.now()
		h.mu.Unlock()
	}
}

func (h *history) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

func (h *history) run() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			h.mu.Lock()
			h.running = false
			h.mu.Unlock()
			return
		case <-t.C:
		}
		h.sample()
		h.mu.Lock()
		if h.closed || (h.streams == 0 && h.now().Sub(h.wanted) > h.idleStop) {
			h.running = false
			h.mu.Unlock()
			return
		}
		for ch := range h.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
		t.Reset(h.every)
	}
}

func (h *history) sample() {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	at := h.now()
	cur, err := h.read(ctx, at)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.err = asAPIError(err).Message
		if v1.IsNotFound(err) {
			h.err = "this server serves no /metrics"
		}
		h.log.Debug("dashboard metrics scrape", "err", err)
		return
	}
	h.err = ""
	if h.prev != nil {
		h.addInterval(h.prev, cur)
	}
	h.prev = cur
}

func (h *history) read(ctx context.Context, at time.Time) (*scrapeData, error) {
	rc, err := h.scrape(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rc)
	if err != nil {
		return nil, err
	}
	return parseScrape(fams, at), nil
}

// series answers a workload's points, oldest first, and the last scrape's
// error ("" when it went well).
func (h *history) series(env, name string) ([]point, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]point(nil), h.points[workloadKey{env, name}]...), h.err
}

func (h *history) instanceUsage(env, instance string) (usage, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.usage[instanceKey{env, instance}]
	return u, ok
}

// hist is one histogram series: cumulative counts per upper bound, the
// last bound +Inf.
type hist struct {
	count, sum float64
	bounds     []float64
	cum        []float64
}

// scrapeData is what the charts need of one scrape.
type scrapeData struct {
	at             time.Time
	reqs, errs     map[workloadKey]float64
	latency, cold  map[workloadKey]hist
	ready, desired map[workloadKey]float64
	cpu, mem       map[instanceKey]float64
}

func labelsOf(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.Label))
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func parseScrape(fams map[string]*dto.MetricFamily, at time.Time) *scrapeData {
	d := &scrapeData{
		at:   at,
		reqs: map[workloadKey]float64{}, errs: map[workloadKey]float64{},
		latency: map[workloadKey]hist{}, cold: map[workloadKey]hist{},
		ready: map[workloadKey]float64{}, desired: map[workloadKey]float64{},
		cpu: map[instanceKey]float64{}, mem: map[instanceKey]float64{},
	}
	each := func(name string, fn func(l map[string]string, m *dto.Metric)) {
		if f := fams[name]; f != nil {
			for _, m := range f.Metric {
				fn(labelsOf(m), m)
			}
		}
	}
	each("berth_requests_total", func(l map[string]string, m *dto.Metric) {
		k := workloadKey{l["environment"], l["workload"]}
		v := m.GetCounter().GetValue()
		d.reqs[k] += v
		if strings.HasPrefix(l["code"], "5") {
			d.errs[k] += v
		}
	})
	histOf := func(m *dto.Metric) hist {
		hm := m.GetHistogram()
		h := hist{count: float64(hm.GetSampleCount()), sum: hm.GetSampleSum()}
		for _, b := range hm.GetBucket() {
			if math.IsInf(b.GetUpperBound(), +1) {
				continue
			}
			h.bounds = append(h.bounds, b.GetUpperBound())
			h.cum = append(h.cum, float64(b.GetCumulativeCount()))
		}
		h.bounds = append(h.bounds, math.Inf(+1))
		h.cum = append(h.cum, h.count)
		return h
	}
	each("berth_request_duration_seconds", func(l map[string]string, m *dto.Metric) {
		// One series per revision: the workload's latency is their sum.
		k := workloadKey{l["environment"], l["workload"]}
		h := histOf(m)
		if prev, ok := d.latency[k]; ok && len(prev.cum) == len(h.cum) {
			for i := range h.cum {
				h.cum[i] += prev.cum[i]
			}
			h.count += prev.count
			h.sum += prev.sum
		}
		d.latency[k] = h
	})
	each("berth_cold_start_duration_seconds", func(l map[string]string, m *dto.Metric) {
		d.cold[workloadKey{l["environment"], l["function"]}] = histOf(m)
	})
	each("berth_instances_ready", func(l map[string]string, m *dto.Metric) {
		d.ready[workloadKey{l["environment"], l["workload"]}] = m.GetGauge().GetValue()
	})
	each("berth_instances_desired", func(l map[string]string, m *dto.Metric) {
		d.desired[workloadKey{l["environment"], l["workload"]}] = m.GetGauge().GetValue()
	})
	each("berth_instance_cpu_seconds_total", func(l map[string]string, m *dto.Metric) {
		d.cpu[instanceKey{l["environment"], l["instance"]}] = m.GetCounter().GetValue()
	})
	each("berth_instance_memory_bytes", func(l map[string]string, m *dto.Metric) {
		d.mem[instanceKey{l["environment"], l["instance"]}] = m.GetGauge().GetValue()
	})
	return d
}

// increase is a counter's growth; one that went down was reset (the
// server restarted), so all of it is new.
func increase(prev, cur float64) float64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

// quantile estimates the q-quantile of the observations between two
// histograms as Prometheus's histogram_quantile does: linear within the
// bucket the rank falls in; the lower bound when it falls in +Inf.
func quantile(q float64, prev, cur hist) float64 {
	if len(cur.cum) == 0 {
		return math.NaN()
	}
	delta := make([]float64, len(cur.cum))
	for i := range cur.cum {
		p := 0.0
		if len(prev.cum) == len(cur.cum) {
			p = prev.cum[i]
		}
		delta[i] = increase(p, cur.cum[i])
	}
	total := delta[len(delta)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(delta), func(i int) bool { return delta[i] >= rank })
	if i >= len(delta) {
		i = len(delta) - 1
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = cur.bounds[i-1], delta[i-1]
	}
	hi := cur.bounds[i]
	if math.IsInf(hi, +1) {
		return lo
	}
	if delta[i] == below {
		return hi
	}
	return lo + (hi-lo)*(rank-below)/(delta[i]-below)
}

// addInterval turns two scrapes into a point per workload and the
// instances' usage.
func (h *history) addInterval(prev, cur *scrapeData) {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return
	}
	seen := map[workloadKey]bool{}
	for _, m := range []map[workloadKey]float64{cur.reqs, cur.ready, cur.desired} {
		for k := range m {
			seen[k] = true
		}
	}
	for k := range cur.cold {
		seen[k] = true
	}
	for k := range seen {
		p := point{At: cur.at, P50: math.NaN(), P99: math.NaN(), ColdWait: math.NaN(),
			Ready: cur.ready[k], Desired: cur.desired[k]}
		p.RPS = increase(prev.reqs[k], cur.reqs[k]) / dt
		p.ErrPS = increase(prev.errs[k], cur.errs[k]) / dt
		if lat, ok := cur.latency[k]; ok {
			p.P50 = quantile(0.5, prev.latency[k], lat)
			p.P99 = quantile(0.99, prev.latency[k], lat)
		}
		if c, ok := cur.cold[k]; ok {
			pc := prev.cold[k]
			p.ColdStarts = increase(pc.count, c.count)
			if p.ColdStarts > 0 {
				p.ColdWait = increase(pc.sum, c.sum) / p.ColdStarts
			}
		}
		pts := append(h.points[k], p)
		if len(pts) > h.keep {
			pts = pts[len(pts)-h.keep:]
		}
		h.points[k] = pts
	}
	// Usage is now's: instances that are gone go with the scrape.
	h.usage = map[instanceKey]usage{}
	for k, mem := range cur.mem {
		u := h.usage[k]
		u.Memory, u.HasMem = mem, true
		h.usage[k] = u
	}
	for k, c := range cur.cpu {
		if p, ok := prev.cpu[k]; ok {
			u := h.usage[k]
			u.CPUMilli, u.HasCPU = increase(p, c)/dt*1000, true
			h.usage[k] = u
		}
	}
}
