package advisor

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/autoscaler"
	"berth.dev/berth/internal/history"
)

// Workload is what the advisor needs of one Service or Function: its
// spec, and the image its current revision runs.
type Workload struct {
	Kind        string // v1.KindService or v1.KindFunction
	Environment string
	Name        string
	Service     *v1.Service
	Function    *v1.Function
	ImageDigest string
}

func (w Workload) template() v1.Template {
	if w.Function != nil {
		return w.Function.Spec.Template
	}
	if w.Service != nil {
		return w.Service.Spec.Template
	}
	return v1.Template{}
}

// Settings change how the other way is replayed and what is asked for.
type Settings struct {
	// For the Function way: unset fields take the function's own settings
	// (a Function) or Berth's defaults (a Service).
	Concurrency, Min, Max *int32
	IdleTimeout           time.Duration
	// For the Service way: unset, it is sized for the peak.
	Replicas *int32
	// MaxAddedP99 is how much latency at p99 a Function may add before it
	// is ruled out (DefaultMaxAddedP99).
	MaxAddedP99 time.Duration
	// Points asks for a series of that many buckets (0: none).
	Points int
	// Alternatives asks for the Function way replayed with other
	// settings (a few more replays).
	Alternatives bool
}

// Defaults of the judgement.
const (
	// A container's cold start is tens to hundreds of milliseconds; a
	// second at p99 is where users of serverless platforms start to
	// notice.
	DefaultMaxAddedP99 = time.Second
	// DefaultColdStart is assumed when no start of the image was measured:
	// a prepared standby's start with a 250m CPU limit (bench/kubernetes).
	DefaultColdStart = 250 * time.Millisecond
	// margin is how much cheaper the other way must be to be worth a
	// switch.
	margin = 0.10
	// medianShare of the p99 allowance is what a Function may add to the
	// median request: half (500 ms by default).
	medianShare = 0.5
)

// Input is everything one piece of advice is computed from.
type Input struct {
	Workload Workload
	// Minutes are the recorded minutes of [From, To), oldest first.
	Minutes  []history.Minute
	From, To time.Time
	// Image is the startup figures measured for the workload's image.
	Image    history.ImageStats
	Prices   v1.PriceSheet
	Settings Settings
}

// size is one instance's limits.
type size struct {
	cpu, mem   string
	cores, gib float64
}

func sizeOf(t v1.Template) size {
	l, err := t.Resources.Limits()
	if err != nil {
		l, _ = v1.Resources{}.Limits()
	}
	return size{
		cpu: v1.FormatCPU(l.CPUMillis), mem: v1.FormatMemory(l.MemoryBytes),
		cores: float64(l.CPUMillis) / 1000, gib: float64(l.MemoryBytes) / (1 << 30),
	}
}

// Advise computes the advice. It is pure: the history, the spec and the
// prices in, the advice out.
func Advise(in Input) (v1.Advice, error) {
	w := in.Workload
	if err := in.Prices.Validate(); err != nil {
		return v1.Advice{}, err
	}
	if in.Settings.MaxAddedP99 <= 0 {
		in.Settings.MaxAddedP99 = DefaultMaxAddedP99
	}
	tr := trafficOf(in.Minutes)
	var seconds float64
	for _, m := range tr {
		seconds += float64(m.last - m.first)
	}
	if seconds <= 0 {
		return v1.Advice{}, v1.Unavailable("%s %s has no recorded history", strings.ToLower(w.Kind), w.Name)
	}
	days := seconds / 86400
	sz := sizeOf(w.template())
	cold := coldStartOf(in)

	a := v1.Advice{
		APIVersion: v1.APIVersion, Kind: "Advice",
		Environment: w.Environment, Name: w.Name, RunsAs: w.Kind,
		From: in.From.UTC(), To: in.To.UTC(), Minutes: len(in.Minutes),
		Traffic:   trafficSummary(in.Minutes, tr, seconds, days),
		ColdStart: cold.wire,
		Prices:    in.Prices,
	}

	fnWay := functionWayFor(w, in.Settings, cold)
	var svcReplicas int
	switch w.Kind {
	case v1.KindFunction:
		svcReplicas = replicasFor(in.Minutes, w, in.Settings)
	default:
		svcReplicas = int(ptrOr(w.Service.Spec.Replicas, 1))
	}

	measured := measuredWay(w.Kind, in.Minutes, seconds, days, sz, in.Prices, cold)
	var other v1.AdviceWay
	var otherMinutes []float64
	var fnOutcome Outcome
	switch w.Kind {
	case v1.KindFunction:
		measured.Settings, measured.Concurrency, measured.Min, measured.Max, measured.IdleTimeout = fnWay.describe()
		model := ReplayFunction(tr, fnWay)
		mw := modelWay(v1.KindFunction, model, days, sz, in.Prices, cold)
		mw.Settings, mw.Concurrency, mw.Min, mw.Max, mw.IdleTimeout = fnWay.describe()
		a.Model = &mw
		svc := ReplayService(tr, svcReplicas)
		other = modelWay(v1.KindService, svc, days, sz, in.Prices, cold)
		other.Replicas = int32(svcReplicas)
		other.Settings = replicasWords(svcReplicas)
		otherMinutes = svc.PerMinute
		fnOutcome = model
	default:
		measured.Replicas = int32(svcReplicas)
		measured.Settings = replicasWords(svcReplicas)
		fn := ReplayFunction(tr, fnWay)
		other = modelWay(v1.KindFunction, fn, days, sz, in.Prices, cold)
		other.Settings, other.Concurrency, other.Min, other.Max, other.IdleTimeout = fnWay.describe()
		otherMinutes = fn.PerMinute
		fnOutcome = fn
	}
	a.Current, a.Other = measured, other

	fnSide, svcSide := a.Current, a.Other
	if w.Kind == v1.KindService {
		fnSide, svcSide = a.Other, a.Current
	}
	j := judge(fnSide, svcSide, a.Traffic.Requests, w.Kind, in.Settings.MaxAddedP99)
	a.Recommend = j.recommend
	a.Switch = j.recommend != w.Kind
	a.Reason = reason(a, j, fnSide, svcSide, cold)

	if in.Settings.Alternatives {
		a.Alternatives = alternatives(tr, fnWay, peakInFlight(in.Minutes), days, sz, in.Prices, cold, svcSide, a.Traffic.Requests, w.Kind, in.Settings.MaxAddedP99)
	}
	a.WouldChange = wouldChange(a, j, fnSide, svcSide, fnOutcome)
	a.Convert = convertCommand(w, a.Other)
	if in.Settings.Points > 0 {
		a.Series = series(in, in.Settings.Points, otherMinutes)
	}
	return a, nil
}

// coldStart is the cold start the replay uses.
type coldStart struct {
	cold, start time.Duration
	wire        v1.AdviceColdStart
}

func coldStartOf(in Input) coldStart {
	var n int64
	var sum float64
	for _, m := range in.Minutes {
		n += m.ColdStarts
		sum += m.ColdStartSeconds
	}
	img := in.Image
	short := shortDigest(in.Workload.ImageDigest)
	var c coldStart
	switch {
	case img.ColdStarts > 0:
		c.cold = seconds(img.ColdStartSeconds / float64(img.ColdStarts))
		c.wire.Source = fmt.Sprintf("measured: the mean of %d cold starts of image %s", img.ColdStarts, short)
	case n > 0:
		c.cold = seconds(sum / float64(n))
		c.wire.Source = fmt.Sprintf("measured: the mean of %d cold starts of this workload", n)
	case img.Starts > 0:
		c.cold = seconds(img.StartSeconds / float64(img.Starts))
		c.wire.Source = fmt.Sprintf("measured: the mean of %d instance starts of image %s, sampled every 200 ms (a full start: a prepared standby is faster)", img.Starts, short)
	default:
		c.cold = DefaultColdStart
		c.wire.Source = "assumed: no start of this image has been measured"
	}
	c.start = c.cold
	if img.Starts > 0 {
		c.start = max(c.cold, seconds(img.StartSeconds/float64(img.Starts)))
	}
	c.wire.MS = ms(c.cold)
	c.wire.StartMS = ms(c.start)
	return c
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	if d == "" {
		return "(unknown)"
	}
	return d
}

// functionWayFor is the Function way: the function's own settings, or
// Berth's defaults for a Service, with the overrides asked for.
func functionWayFor(w Workload, s Settings, c coldStart) FunctionWay {
	var p autoscaler.Params
	timeout := 30 * time.Second
	if w.Function != nil {
		p, _ = autoscaler.ParamsFor(w.Function.Spec)
		if d, err := time.ParseDuration(w.Function.Spec.Timeout); err == nil && d > 0 {
			timeout = d
		}
	}
	if s.Concurrency != nil {
		p.Concurrency = int(*s.Concurrency)
	}
	if s.Min != nil {
		p.Min = int(*s.Min)
	}
	if s.Max != nil {
		p.Max = int(*s.Max)
	}
	if s.IdleTimeout > 0 {
		p.IdleTimeout = s.IdleTimeout
	}
	// Neither the spec nor the question sets one: the autoscaler learns
	// it from the function's idle gaps, and so does the replay.
	learn := p.IdleTimeout <= 0
	return FunctionWay{Scale: p.Normalized(), ColdStart: c.cold, Start: c.start, Timeout: timeout, LearnIdle: learn}
}

func (f FunctionWay) describe() (words string, conc int32, min *int32, max int32, idle string) {
	p := f.Scale.Normalized()
	m := int32(p.Min)
	if f.LearnIdle {
		return fmt.Sprintf("concurrency %d, min %d, max %d, idle timeout learned", p.Concurrency, p.Min, p.Max),
			int32(p.Concurrency), &m, int32(p.Max), ""
	}
	return fmt.Sprintf("concurrency %d, min %d, max %d, idle timeout %v", p.Concurrency, p.Min, p.Max, p.IdleTimeout),
		int32(p.Concurrency), &m, int32(p.Max), p.IdleTimeout.String()
}

func replicasWords(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// peakInFlight is the 99th percentile of the busy minutes' in-flight
// peaks: the peak to size for, without the one odd minute.
func peakInFlight(ms []history.Minute) int {
	var peaks []int
	for _, m := range ms {
		if m.Requests > 0 {
			peaks = append(peaks, m.InFlightMax)
		}
	}
	if len(peaks) == 0 {
		return 0
	}
	sort.Ints(peaks)
	return peaks[min(len(peaks)-1, int(math.Ceil(0.99*float64(len(peaks))))-1)]
}

// replicasFor sizes a Service for a Function's traffic: enough replicas
// for the peak in flight at the function's concurrency per instance, at
// least 1.
func replicasFor(ms []history.Minute, w Workload, s Settings) int {
	if s.Replicas != nil {
		return max(int(*s.Replicas), 1)
	}
	conc := 1
	if w.Function != nil && w.Function.Spec.Concurrency > 0 {
		conc = int(w.Function.Spec.Concurrency)
	}
	if s.Concurrency != nil && *s.Concurrency > 0 {
		conc = int(*s.Concurrency)
	}
	return max(1, (peakInFlight(ms)+conc-1)/conc)
}

func trafficSummary(ms []history.Minute, tr []minuteTraffic, seconds, days float64) v1.AdviceTraffic {
	var t v1.AdviceTraffic
	var busy, answered, activeSecs, instSecs, cpu, memByteSecs float64
	type q struct{ v, w float64 }
	var p50s, p99s []q
	for i, m := range ms {
		t.Requests += m.Requests
		t.Errors += m.Errors
		t.PeakInFlight = max(t.PeakInFlight, m.InFlightMax)
		busy += m.BusySeconds
		answered += float64(m.Answered)
		var mask uint64
		for s := tr[i].first; s < tr[i].last; s++ {
			mask |= 1 << s
		}
		activeSecs += float64(bits.OnesCount64(m.Active & mask))
		instSecs += m.InstanceSeconds
		cpu += m.CPUSeconds
		memByteSecs += m.MemoryBytes * float64(tr[i].last-tr[i].first)
		if m.Answered > 0 {
			p50s = append(p50s, q{m.P50, float64(m.Answered)})
			p99s = append(p99s, q{m.P99, float64(m.Answered)})
		}
	}
	weighted := func(qs []q, p float64) float64 {
		if len(qs) == 0 {
			return 0
		}
		sort.Slice(qs, func(i, j int) bool { return qs[i].v < qs[j].v })
		var total float64
		for _, x := range qs {
			total += x.w
		}
		var cum float64
		for _, x := range qs {
			cum += x.w
			if cum >= p*total {
				return x.v
			}
		}
		return qs[len(qs)-1].v
	}
	t.RequestsPerDay = float64(t.Requests) / days
	t.IdleShare = 1 - activeSecs/seconds
	t.MeanInFlight = busy / seconds
	if answered > 0 {
		t.MeanDurationMS = busy / answered * 1000
	}
	// The minutes' medians and 99th percentiles, weighted by their
	// answers: the history keeps no finer distribution.
	t.DurationP50MS = weighted(p50s, 0.5) * 1000
	t.DurationP99MS = weighted(p99s, 0.99) * 1000
	if instSecs > 0 {
		t.CPUMillicores = cpu / instSecs * 1000
		t.MemoryMiB = memByteSecs / instSecs / (1 << 20)
	}
	return t
}

// measuredWay is how the workload ran, from the history.
func measuredWay(kind string, ms []history.Minute, seconds, days float64, sz size, prices v1.PriceSheet, c coldStart) v1.AdviceWay {
	w := v1.AdviceWay{Kind: kind, Measured: true, CPU: sz.cpu, Memory: sz.mem}
	var requests, billed, coldN, coldSum float64
	for _, m := range ms {
		w.InstanceSeconds += m.InstanceSeconds
		w.MaxInstances = max(w.MaxInstances, m.InstancesMax)
		requests += float64(m.Requests)
		billed += m.BusySeconds
		coldN += float64(m.ColdStarts)
		coldSum += m.ColdStartSeconds
	}
	var lat Latencies
	if coldN > 0 {
		// The history keeps the waits' sum, not each: each cold start
		// counts as the mean wait.
		lat.add(coldSum/coldN, coldN)
	}
	lat.add(0, max(0, requests-coldN))
	w.ColdStarts = coldN
	fill(&w, seconds, days, sz, lat)
	if kind == v1.KindFunction {
		w.Cost = functionCost(prices.Function, requests, billed, w.InstanceSeconds, sz)
	} else {
		w.Cost = serviceCost(prices.Service, requests, billed, w.InstanceSeconds, sz)
	}
	w.CostPerDay = w.Cost / days
	return w
}

// modelWay is a replay's outcome as a way.
func modelWay(kind string, o Outcome, days float64, sz size, prices v1.PriceSheet, c coldStart) v1.AdviceWay {
	w := v1.AdviceWay{Kind: kind, CPU: sz.cpu, Memory: sz.mem}
	w.InstanceSeconds = o.InstanceSeconds
	w.MaxInstances = o.MaxInstances
	w.ColdStarts = o.ColdStarts
	w.Waited, w.Shed = o.Waited, o.Shed
	lat := o.Latency
	fill(&w, o.Seconds, days, sz, lat)
	if kind == v1.KindFunction {
		// A per-duration price bills the requests' time in an instance and
		// each start's initialisation (Lambda bills INIT too).
		billed := o.ServiceSeconds + float64(o.Wakes)*c.cold.Seconds()
		w.Cost = functionCost(prices.Function, o.Requests, billed, o.InstanceSeconds, sz)
	} else {
		w.Cost = serviceCost(prices.Service, o.Requests, o.ServiceSeconds, o.InstanceSeconds, sz)
	}
	w.CostPerDay = w.Cost / days
	return w
}

func fill(w *v1.AdviceWay, seconds, days float64, sz size, lat Latencies) {
	w.InstanceHoursPerDay = w.InstanceSeconds / 3600 / days
	if seconds > 0 {
		w.MeanInstances = w.InstanceSeconds / seconds
	}
	w.MemoryGBSeconds = w.InstanceSeconds * sz.gib
	w.ColdStartsPerDay = w.ColdStarts / days
	w.AddedLatencyP50MS = lat.Quantile(0.5) * 1000
	w.AddedLatencyP99MS = lat.Quantile(0.99) * 1000
}

func price(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func functionCost(p v1.Prices, requests, billedSeconds, instanceSeconds float64, sz size) float64 {
	return requests*price(p.PerRequest) + billedSeconds*sz.gib*price(p.PerGBSecond) +
		instanceSeconds/3600*(sz.cores*price(p.PerVCPUHour)+sz.gib*price(p.PerGBHour))
}

func serviceCost(p v1.Prices, requests, billedSeconds, instanceSeconds float64, sz size) float64 {
	return functionCost(p, requests, billedSeconds, instanceSeconds, sz)
}

// judgement is the verdict and what decided it.
type judgement struct {
	recommend string
	// problem rules the Function way out ("" when it is fit).
	problem string
	// byCost: the cheaper way won by more than the margin; else it was a
	// tie and the current way stays.
	byCost bool
}

func judge(fn, svc v1.AdviceWay, requests int64, current string, maxP99 time.Duration) judgement {
	if p := unfit(fn, requests, maxP99); p != "" {
		return judgement{recommend: v1.KindService, problem: p}
	}
	switch {
	case fn.Cost < svc.Cost*(1-margin):
		return judgement{recommend: v1.KindFunction, byCost: true}
	case svc.Cost < fn.Cost*(1-margin):
		return judgement{recommend: v1.KindService, byCost: true}
	}
	return judgement{recommend: current}
}

// unfit says why a Function way would serve the traffic badly.
func unfit(fn v1.AdviceWay, requests int64, maxP99 time.Duration) string {
	switch {
	case fn.Shed >= 0.5:
		return fmt.Sprintf("%s requests would be refused after waiting too long", count(fn.Shed))
	case fn.AddedLatencyP99MS > ms(maxP99):
		return fmt.Sprintf("cold starts and waits for an instance would add %s at p99 (more than the %s allowed)%s", msWords(fn.AddedLatencyP99MS), msWords(ms(maxP99)), waitedWords(fn, requests))
	case fn.AddedLatencyP50MS > medianShare*ms(maxP99):
		return fmt.Sprintf("cold starts and waits for an instance would add %s to the median request (more than the %s allowed)%s", msWords(fn.AddedLatencyP50MS), msWords(medianShare*ms(maxP99)), waitedWords(fn, requests))
	}
	return ""
}

func waitedWords(fn v1.AdviceWay, requests int64) string {
	if requests == 0 || fn.Waited < 0.5 {
		return ""
	}
	return fmt.Sprintf("; %s of the requests would wait for a free instance", pct(fn.Waited/float64(requests)))
}

func reason(a v1.Advice, j judgement, fn, svc v1.AdviceWay, c coldStart) string {
	t := a.Traffic
	idle := fmt.Sprintf("idle %s of the time", pct(t.IdleShare))
	busy := fmt.Sprintf("busy %s of the time", pct(1-t.IdleShare))
	colds := func(w v1.AdviceWay) string {
		if w.ColdStartsPerDay < 0.5 {
			return "no cold starts"
		}
		return fmt.Sprintf("%s cold starts a day at +%s", count(w.ColdStartsPerDay), msWords(c.wire.MS))
	}
	money := func(d float64) string { return moneyWords(d, a.Prices.Currency) }
	switch {
	case j.problem != "" && a.RunsAs == v1.KindService:
		return fmt.Sprintf("keep it a Service: as a Function (%s) %s", fn.Settings, j.problem)
	case j.problem != "":
		return fmt.Sprintf("run as a Service (%s): as a Function %s", svc.Settings, j.problem)
	case !j.byCost:
		return fmt.Sprintf("either way: the costs are within %s (%s and %s a day); keep it a %s",
			pct(margin), money(fn.CostPerDay), money(svc.CostPerDay), a.RunsAs)
	case j.recommend == v1.KindFunction && a.RunsAs == v1.KindService:
		saved := svc.InstanceHoursPerDay - fn.InstanceHoursPerDay
		save := fmt.Sprintf("saves %s a day", money(svc.CostPerDay-fn.CostPerDay))
		if saved >= 0.05 {
			save = fmt.Sprintf("saves %.1f instance-hours and %s a day", saved, money(svc.CostPerDay-fn.CostPerDay))
		}
		return fmt.Sprintf("run as a Function: %s, %s, adds %s", idle, save, colds(fn))
	case j.recommend == v1.KindFunction:
		s := fmt.Sprintf("keep it a Function: %s; as a Service (%s) it would cost %s a day more", idle, svc.Settings, money(svc.CostPerDay-fn.CostPerDay))
		if fn.ColdStartsPerDay >= 0.5 {
			s += " to save " + colds(fn)
		}
		return s
	case a.RunsAs == v1.KindFunction:
		s := fmt.Sprintf("run as a Service (%s): %s; it saves %s a day", svc.Settings, busy, money(fn.CostPerDay-svc.CostPerDay))
		if fn.ColdStartsPerDay >= 0.5 {
			s += " and " + colds(fn)
		}
		return s
	default:
		return fmt.Sprintf("keep it a Service: %s; as a Function it would cost %s a day more and add %s",
			busy, money(fn.CostPerDay-svc.CostPerDay), colds(fn))
	}
}

// alternatives replays the Function way with one setting changed each.
func alternatives(tr []minuteTraffic, base FunctionWay, peak int, days float64, sz size, prices v1.PriceSheet, c coldStart, svc v1.AdviceWay, requests int64, current string, maxP99 time.Duration) []v1.AdviceAlternative {
	p := base.Scale.Normalized()
	// The concurrency, or the max, that would carry the peak in flight
	// at the target utilization; at least 4× and 2× what is set.
	conc := max(p.Concurrency*4, int(math.Ceil(float64(peak)/(float64(p.Max)*p.TargetUtilization))))
	maxN := max(p.Max*2, int(math.Ceil(float64(peak)/(float64(p.Concurrency)*p.TargetUtilization))))
	type alt struct {
		setting string
		way     FunctionWay
	}
	var alts []alt
	with := func(setting string, f func(*autoscaler.Params)) {
		w := base
		f(&w.Scale)
		alts = append(alts, alt{setting, w})
	}
	if p.Min == 0 {
		with("min 1", func(q *autoscaler.Params) { q.Min = 1 })
	}
	if p.IdleTimeout < 5*time.Minute {
		with("idle timeout 5m0s", func(q *autoscaler.Params) { q.IdleTimeout = 5 * time.Minute })
		alts[len(alts)-1].way.LearnIdle = false
	}
	with(fmt.Sprintf("concurrency %d", conc), func(q *autoscaler.Params) { q.Concurrency = conc })
	with(fmt.Sprintf("max %d", maxN), func(q *autoscaler.Params) { q.Max = maxN })
	out := make([]v1.AdviceAlternative, len(alts))
	parallel(len(alts), func(i int) {
		o := ReplayFunction(tr, alts[i].way)
		w := modelWay(v1.KindFunction, o, days, sz, prices, c)
		w.Settings, w.Concurrency, w.Min, w.Max, w.IdleTimeout = alts[i].way.describe()
		out[i] = v1.AdviceAlternative{Setting: alts[i].setting, Way: w, Recommend: judge(w, svc, requests, current, maxP99).recommend}
	})
	return out
}

func wouldChange(a v1.Advice, j judgement, fn, svc v1.AdviceWay, fnOutcome Outcome) string {
	perDay := a.Traffic.RequestsPerDay
	var parts []string
	// The Function's price grows with traffic, the Service's stays (at
	// its replicas): where the two cross.
	crossing := func() (float64, bool) {
		if fn.CostPerDay <= 0 || perDay <= 0 {
			return 0, false
		}
		return perDay * svc.CostPerDay / fn.CostPerDay, true
	}
	switch {
	case j.problem != "":
		for _, alt := range a.Alternatives {
			if alt.Recommend == v1.KindFunction {
				s := fmt.Sprintf("with %s a Function would fit and cost %s a day", alt.Setting, moneyWords(alt.Way.CostPerDay, a.Prices.Currency))
				if strings.HasPrefix(alt.Setting, "concurrency ") {
					s += fmt.Sprintf(" (if one instance serves %d requests at once as well as the Service's do)", alt.Way.Concurrency)
				}
				parts = append(parts, s)
				break
			}
		}
		if len(parts) == 0 {
			parts = append(parts, "no single setting tried (min 1, a 5m idle timeout, a concurrency or a max for the peak) makes the Function fit")
		}
	case j.recommend == v1.KindFunction:
		if x, ok := crossing(); ok {
			parts = append(parts, fmt.Sprintf("a Service would be cheaper above about %s requests a day (now %s)", count(x), count(perDay)))
		}
		for _, alt := range a.Alternatives {
			if alt.Setting == "min 1" && fn.ColdStartsPerDay >= 0.5 {
				// Instance time, not money: what a kept-warm instance costs
				// depends on the platform (Lambda bills provisioned
				// concurrency apart; on Berth it is a node's share).
				parts = append(parts, fmt.Sprintf("min 1 would avoid %s of the cold starts and keep %.1f instance-hours a day running",
					pct(1-alt.Way.ColdStartsPerDay/fn.ColdStartsPerDay), alt.Way.InstanceHoursPerDay))
			}
		}
	default:
		if x, ok := crossing(); ok {
			parts = append(parts, fmt.Sprintf("a Function would be cheaper below about %s requests a day (now %s)", count(x), count(perDay)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// convertCommand is the berth convert command for the Other way.
func convertCommand(w Workload, other v1.AdviceWay) string {
	cmd := fmt.Sprintf("berth convert %s -e %s --to %s", w.Name, w.Environment, strings.ToLower(other.Kind))
	if other.Kind == v1.KindService {
		return cmd + fmt.Sprintf(" --replicas %d", other.Replicas)
	}
	cmd += fmt.Sprintf(" --concurrency %d --max %d", other.Concurrency, other.Max)
	if other.Min != nil && *other.Min > 0 {
		cmd += fmt.Sprintf(" --min %d", *other.Min)
	}
	if other.IdleTimeout != "" && other.IdleTimeout != autoscaler.DefaultIdleTimeout.String() {
		cmd += " --idle-timeout " + other.IdleTimeout
	}
	return cmd
}

// series buckets the history and the Other way's instances for a chart.
func series(in Input, points int, otherPerMinute []float64) *v1.AdviceSeries {
	span := in.To.Sub(in.From)
	stepMin := max(1, int(math.Ceil(span.Minutes()/float64(points))))
	stp := time.Duration(stepMin) * time.Minute
	n := int(math.Ceil(float64(span) / float64(stp)))
	s := &v1.AdviceSeries{Start: in.From.UTC(), Step: stp,
		Requests: make([]float64, n), Current: make([]float64, n), Other: make([]float64, n), Recorded: make([]float64, n)}
	tr := trafficOf(in.Minutes)
	for i, m := range in.Minutes {
		b := int(m.At.Sub(in.From) / stp)
		if b < 0 || b >= n {
			continue
		}
		secs := float64(tr[i].last - tr[i].first)
		s.Requests[b] += float64(m.Requests)
		s.Current[b] += m.InstanceSeconds
		if i < len(otherPerMinute) {
			s.Other[b] += otherPerMinute[i]
		}
		s.Recorded[b] += secs
	}
	for b := range n {
		if s.Recorded[b] > 0 {
			s.Current[b] /= s.Recorded[b]
			s.Other[b] /= s.Recorded[b]
		}
		s.Recorded[b] /= stp.Seconds()
	}
	return s
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct writes a share as "93 %".
func pct(x float64) string {
	switch {
	case x > 0 && x < 0.01:
		return "<1 %"
	case x < 1 && x > 0.99:
		return ">99 %"
	}
	return fmt.Sprintf("%.0f %%", x*100)
}

// count writes a count a person reads at a glance: 40, 1.2 k, 3.4 M.
func count(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.1f M", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.0f k", x/1e3)
	case x >= 1e3:
		return fmt.Sprintf("%.1f k", x/1e3)
	case x >= 10:
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.1f", x)
}

func msWords(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func moneyWords(x float64, currency string) string {
	sym := currency + " "
	if currency == "USD" || currency == "" {
		sym = "$"
	}
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	switch {
	case x >= 100:
		return fmt.Sprintf("%s%s%.0f", sign, sym, x)
	case x >= 0.01:
		return fmt.Sprintf("%s%s%.2f", sign, sym, x)
	case x == 0:
		return sym + "0"
	}
	// Two significant digits of a small amount: $0.000029, not $0.0000.
	return fmt.Sprintf("%s%s%.*f", sign, sym, int(math.Ceil(-math.Log10(x)))+1, x)
}
