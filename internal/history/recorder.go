package history

import (
	"context"
	"log/slog"
	"math/bits"
	"sort"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Defaults of the recorder's periods.
const (
	// DefaultTick is the sample period of in-flight counts and instances:
	// the autoscaler's, so the recorder sees what it sees.
	DefaultTick = 200 * time.Millisecond
	// DefaultUsageEvery is how often CPU and memory are read (each read
	// asks the runtime about every instance).
	DefaultUsageEvery = 10 * time.Second
	// maxGap is the longest tick interval counted: a longer one (the
	// process stopped, the clock jumped) is a gap in the history rather
	// than instance-seconds nobody saw.
	maxGap = 5 * time.Second
)

// Target is one Service or Function to record.
type Target struct {
	Kind, Environment, Name string
	// ImageDigest is the image its current revision runs.
	ImageDigest string
}

// Source is what the recorder samples every tick: the workloads (from the
// caches), the gateway's load, and the backend's instances.
type Source interface {
	Targets() []Target
	// Load is the requests in the gateway for env/name now and the count
	// arrived so far (*gateway.Gateway has this method).
	Load(env, name string) (inFlight int, arrivals int64)
	// Instances is what the backend sees of a workload's instances.
	Instances(kind, env, name string) []v1.InstanceStatus
}

// Usage is one instance's resource usage.
type Usage struct {
	// CPUNanos is the CPU time used since the instance started.
	CPUNanos uint64
	// MemoryBytes is the working set now.
	MemoryBytes uint64
}

// UsageSource reads a workload's instances' usage, by instance name (the
// backend's Stats).
type UsageSource interface {
	Usage(ctx context.Context, kind, env, name string) (map[string]Usage, error)
}

// Histogram is a cumulative Prometheus histogram: Counts[i] observations
// at or below Bounds[i].
type Histogram struct {
	Count  uint64
	Sum    float64
	Bounds []float64
	Counts []uint64
}

// Totals are a workload's cumulative counters, read once a minute.
type Totals struct {
	// Answered and Errors (5xx) count answers sent.
	Answered, Errors int64
	// Duration is the requests' durations; ColdStart the cold-start waits.
	Duration, ColdStart Histogram
}

// TotalsSource reads every workload's totals at once.
type TotalsSource interface {
	Totals() (map[Workload]Totals, error)
}

// Config builds a Recorder.
type Config struct {
	DB     *DB
	Source Source
	// Usage and Totals are optional: without them the minutes have no CPU
	// and memory, or no answers, durations and cold starts.
	Usage  UsageSource
	Totals TotalsSource
	// Clock is time.Now unless a test injects one.
	Clock func() time.Time
	// Tick is the sample period (DefaultTick); UsageEvery the usage period
	// (DefaultUsageEvery).
	Tick       time.Duration
	UsageEvery time.Duration
	// Ticks, when set, replaces the Tick timer: Run samples once per value
	// received, at Clock's time. Tests drive the loop with it.
	Ticks  <-chan time.Time
	Logger *slog.Logger
}

// Recorder samples the data plane and writes a Minute per workload per
// minute.
type Recorder struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	minute    time.Time // the minute being filled
	lastTick  time.Time
	lastUsage time.Time
	work      map[Workload]*workload
	totals    map[Workload]Totals // at the start of the minute
}

// workload is one workload's minute in progress, and what carries over.
type workload struct {
	Minute
	digest string
	listed bool // listed by the source in this tick
	// coveredBits has bit s set for each second of the minute sampled.
	coveredBits uint64
	// running and mem add up the kinds' instances within one tick or one
	// usage reading (both kinds run during a conversion).
	running, readyNow int
	mem               float64
	memRead           bool

	arrivals     int64 // last cumulative count read
	haveArrivals bool
	memN         int
	// Per instance: when it was first seen starting (not yet ready), those
	// already counted ready, and the CPU already counted.
	pending map[string]time.Time
	ready   map[string]bool
	cpu     map[string]uint64
}

// NewRecorder returns a Recorder; Run starts it.
func NewRecorder(cfg Config) *Recorder {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.UsageEvery <= 0 {
		cfg.UsageEvery = DefaultUsageEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{cfg: cfg, log: log, work: map[Workload]*workload{}}
}

// Run samples every tick until ctx ends, then writes the minute in
// progress (a partial one: its Covered says how much).
func (r *Recorder) Run(ctx context.Context) error {
	ticks := r.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(r.cfg.Tick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			r.flush()
			return nil
		case <-ticks:
			r.Sample(ctx)
		}
	}
}

// Sample takes one sample at the clock's time, and writes the minute
// that ended, if one did.
func (r *Recorder) Sample(ctx context.Context) {
	now := r.cfg.Clock()
	minute := now.Truncate(time.Minute)
	if r.started.IsZero() {
		r.started = now
		r.minute = minute
		r.lastTick = now
		r.lastUsage = now
		r.totals = r.readTotals()
	}
	if minute.After(r.minute) {
		r.flush()
		r.minute = minute
	}
	dt := now.Sub(r.lastTick)
	r.lastTick = now
	if dt > maxGap || dt < 0 {
		dt = 0
	}
	sec := int(now.Sub(minute) / time.Second)

	targets := r.cfg.Source.Targets()
	for _, t := range targets {
		k := Workload{t.Environment, t.Name}
		w := r.work[k]
		if w == nil {
			w = &workload{pending: map[string]time.Time{}, ready: map[string]bool{}, cpu: map[string]uint64{}}
			r.work[k] = w
		}
		if !w.listed {
			w.listed = true
			// Once per workload per tick: both kinds of a conversion share
			// the gateway's counts.
			r.sampleLoad(w, k, sec)
		}
		switch t.Kind {
		case v1.KindService:
			w.Kinds |= RanAsService
		case v1.KindFunction:
			w.Kinds |= RanAsFunction
		}
		w.digest = t.ImageDigest
		r.sampleInstances(w, t, now, dt)
	}
	for _, w := range r.work {
		w.listed = false
		w.InstancesMax = max(w.InstancesMax, w.running)
		w.running = 0
	}
	if now.Sub(r.lastUsage) >= r.cfg.UsageEvery && r.cfg.Usage != nil {
		r.lastUsage = now
		for _, t := range targets {
			r.sampleUsage(ctx, r.work[Workload{t.Environment, t.Name}], t)
		}
		// One reading per workload, both kinds of a conversion added up.
		for _, w := range r.work {
			if w.memRead {
				w.MemoryBytes += w.mem
				w.MemoryMaxBytes = max(w.MemoryMaxBytes, w.mem)
				w.memN++
			}
			w.mem, w.memRead = 0, false
		}
	}
}

func (r *Recorder) sampleLoad(w *workload, k Workload, sec int) {
	inFlight, arrivals := r.cfg.Source.Load(k.Environment, k.Name)
	if sec >= 0 && sec < 60 {
		w.coveredBits |= 1 << sec
	}
	moved := false
	if w.haveArrivals {
		d := arrivals - w.arrivals
		if d < 0 { // the counter was reset
			d = arrivals
		}
		w.Requests += d
		moved = d > 0
	}
	w.arrivals, w.haveArrivals = arrivals, true
	if (inFlight > 0 || moved) && sec >= 0 && sec < 60 {
		w.Active |= 1 << sec
	}
	w.InFlightMax = max(w.InFlightMax, inFlight)
}

func (r *Recorder) sampleInstances(w *workload, t Target, now time.Time, dt time.Duration) {
	running, ready := 0, 0
	for _, i := range r.cfg.Source.Instances(t.Kind, t.Environment, t.Name) {
		if i.Phase == v1.PhaseStandby {
			continue
		}
		switch i.Phase {
		case v1.PhaseStarting, v1.PhaseRunning, v1.PhaseTerminating:
			running++
		default:
			continue
		}
		isReady := i.Ready && i.Phase != v1.PhaseTerminating
		if isReady {
			ready++
		}
		switch {
		case isReady && !w.ready[i.Name]:
			w.ready[i.Name] = true
			from, ok := w.pending[i.Name]
			if !i.StartedAt.IsZero() && i.StartedAt.After(r.started) && (!ok || i.StartedAt.Before(from)) {
				from, ok = i.StartedAt, true
			}
			if ok && !from.After(now) {
				w.Starts++
				w.StartSeconds += now.Sub(from).Seconds()
			}
			delete(w.pending, i.Name)
		case !isReady && i.Phase != v1.PhaseTerminating && !w.ready[i.Name]:
			if _, ok := w.pending[i.Name]; !ok {
				w.pending[i.Name] = now
			}
		}
	}
	w.InstanceSeconds += float64(running) * dt.Seconds()
	w.ReadySeconds += float64(ready) * dt.Seconds()
	w.running += running
}

func (r *Recorder) sampleUsage(ctx context.Context, w *workload, t Target) {
	if w == nil {
		return
	}
	usage, err := r.cfg.Usage.Usage(ctx, t.Kind, t.Environment, t.Name)
	if err != nil {
		r.log.Debug("usage", "environment", t.Environment, "name", t.Name, "err", err)
		return
	}
	var mem float64
	for name, u := range usage {
		last, ok := w.cpu[name]
		switch {
		case ok && u.CPUNanos >= last:
			w.CPUSeconds += float64(u.CPUNanos-last) / 1e9
		case !ok && r.startedAfterRecorder(t, name):
			w.CPUSeconds += float64(u.CPUNanos) / 1e9
		}
		w.cpu[name] = u.CPUNanos
		mem += float64(u.MemoryBytes)
	}
	w.mem += mem
	w.memRead = true
}

// startedAfterRecorder reports whether an instance started after the
// recorder did: all its CPU time is then in the history's window. One
// found running at the recorder's start (after a restart) is a baseline.
func (r *Recorder) startedAfterRecorder(t Target, name string) bool {
	for _, i := range r.cfg.Source.Instances(t.Kind, t.Environment, t.Name) {
		if i.Name == name {
			return !i.StartedAt.IsZero() && i.StartedAt.After(r.started)
		}
	}
	return false
}

// flush writes the minute in progress of every workload and starts the
// next one.
func (r *Recorder) flush() {
	if r.started.IsZero() {
		return
	}
	totals := r.readTotals()
	keys := make([]Workload, 0, len(r.work))
	for k := range r.work {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Environment != keys[j].Environment {
			return keys[i].Environment < keys[j].Environment
		}
		return keys[i].Name < keys[j].Name
	})
	entries := make([]Entry, 0, len(keys))
	for _, k := range keys {
		w := r.work[k]
		if w.coveredBits == 0 && w.Kinds == 0 {
			// Not listed this minute: gone. Its instances may still be
			// draining, but its history ends here.
			delete(r.work, k)
			continue
		}
		m := w.Minute
		m.At = r.minute.UTC()
		m.Covered = bits.OnesCount64(w.coveredBits)
		if t, ok := totals[k]; ok {
			prev := r.totals[k]
			m.Answered = counterDelta(t.Answered, prev.Answered)
			m.Errors = counterDelta(t.Errors, prev.Errors)
			d := t.Duration.sub(prev.Duration)
			m.BusySeconds = d.Sum
			m.P50, m.P90, m.P99 = d.Quantile(0.5), d.Quantile(0.9), d.Quantile(0.99)
			cs := t.ColdStart.sub(prev.ColdStart)
			m.ColdStarts = int64(cs.Count)
			m.ColdStartSeconds = cs.Sum
		}
		if w.memN > 0 {
			m.MemoryBytes /= float64(w.memN)
		}
		entries = append(entries, Entry{Environment: k.Environment, Name: k.Name, ImageDigest: w.digest, Minute: m})
		w.Minute, w.coveredBits, w.memN = Minute{}, 0, 0
	}
	if totals != nil {
		r.totals = totals
	}
	if err := r.cfg.DB.Append(entries); err != nil {
		r.log.Warn("write history", "minutes", len(entries), "err", err)
	}
}

func (r *Recorder) readTotals() map[Workload]Totals {
	if r.cfg.Totals == nil {
		return nil
	}
	t, err := r.cfg.Totals.Totals()
	if err != nil {
		r.log.Warn("read request totals", "err", err)
		return nil
	}
	return t
}

func counterDelta(cur, prev int64) int64 {
	if cur < prev { // reset
		return cur
	}
	return cur - prev
}
