package advisor

import (
	"math"
	"sort"
	"time"

	"berth.dev/berth/internal/autoscaler"
)

// FunctionWay is how the replay runs a workload as a Function.
type FunctionWay struct {
	// Scale is the autoscaler's parameters (zero fields take its defaults).
	Scale autoscaler.Params
	// ColdStart is the time from a request arriving at zero to an instance
	// ready for it (a prepared standby's start); Start is a further
	// instance's start when the autoscaler scales out.
	ColdStart, Start time.Duration
	// Timeout is how long a request is held for a cold start before it is
	// answered 503 (the function's timeout); CapacityTimeout how long it
	// waits for a free instance (the gateway's timeout).
	Timeout, CapacityTimeout time.Duration
	// MaxHeld is the activator's bound on requests held at zero (1000).
	MaxHeld int
	// LearnIdle: no idle timeout is set (neither the spec nor the
	// question), so the autoscaler learns it from the idle gaps, as the
	// running one does; Scale.IdleTimeout is then ignored.
	LearnIdle bool
}

// Outcome is what a replay, or the history itself, says of one way of
// running a workload over the replayed seconds.
type Outcome struct {
	Seconds         float64 // recorded seconds replayed
	Requests        float64
	InstanceSeconds float64
	MaxInstances    int
	// ColdStarts are requests held while the function started from zero
	// (the activator's berth_cold_starts_total); Wakes the starts from
	// zero.
	ColdStarts float64
	Wakes      int
	// Waited are requests that waited a step or more for a free instance;
	// Shed those that waited past the timeout (or found the hold queue
	// full) and were refused.
	Waited, Shed float64
	// ServiceSeconds is the requests' time in an instance: what a per-
	// duration price bills.
	ServiceSeconds float64
	// Latency is the time requests waited, cold starts included.
	Latency Latencies
	// PerMinute is the instance-seconds of each replayed minute, aligned
	// with the minutes given.
	PerMinute []float64
	// KeepAlive is the autoscaler's keep-alive choice at the end.
	KeepAlive autoscaler.KeepAlive
	// FullStarts are wakes that found no prepared standby (given back
	// after a long silence): their first instance took a full start.
	FullStarts int
}

// cohort is requests that arrived in the same step and are alike: how
// many (fractional: the replay is a fluid model within a step), the
// service each still needs, and when they arrived. held marks requests
// that arrived at zero: their wait is a cold start's.
type cohort struct {
	n       float64
	rem     float64
	arrived float64 // seconds since the replay's start
	started bool
	held    bool
	// woke: the first of these arrivals found no instance at all and
	// woke the function.
	woke bool
}

// instances are the function's instances in the replay.
type instances struct {
	ready    int
	starting []float64 // when each becomes ready, seconds since the start
}

func (in *instances) total() int { return in.ready + len(in.starting) }

// ReplayFunction runs recorded traffic through Berth's autoscaler
// (autoscaler.Decide and Wake, the functions the real one calls) as the
// function would have run it: instances started when the autoscaler
// asks, ready a cold start later, requests held at zero or waiting for a
// free slot, instances stopped after the idle timeout.
//
// Time moves in 200 ms steps. In each step the arrivals join a FIFO queue
// and the ready instances' slots (concurrency each) serve it: a slot
// serves several short requests one after another within a step, and a
// request longer than a step holds its slot across steps. The autoscaler
// gets a sample a second (the mean in flight over it, held and waiting
// requests included, as the gateway counts them) and decides; the
// desired count is applied at once, as the function controller does.
func ReplayFunction(ms []minuteTraffic, w FunctionWay) Outcome {
	p := w.Scale
	norm := p.Normalized()
	coldStart := max(w.ColdStart.Seconds(), 0)
	start := w.Start.Seconds()
	if start <= 0 {
		start = coldStart
	}
	timeout := w.Timeout.Seconds()
	if timeout <= 0 {
		timeout = 30
	}
	capTimeout := w.CapacityTimeout.Seconds()
	if capTimeout <= 0 {
		capTimeout = 60
	}
	maxHeld := w.MaxHeld
	if maxHeld <= 0 {
		maxHeld = 1000
	}
	conc := float64(norm.Concurrency)

	var (
		out      = Outcome{PerMinute: make([]float64, len(ms))}
		state    autoscaler.State
		inst     instances
		queue    []cohort
		samples  []autoscaler.Sample
		requests int64
		origin   time.Time
		// The keep-alive as the autoscaler learns it: gaps seen, its
		// choice, and the parameters with the idle timeout it chose.
		gaps     autoscaler.Gaps
		userIdle time.Duration
		eff      = norm
		// since is when the function was (re)registered; noStandby that
		// the next instance started has no prepared standby to take.
		since     float64
		noStandby bool
	)
	if !w.LearnIdle {
		userIdle = norm.IdleTimeout
	}
	learn := func() {
		out.KeepAlive = gaps.KeepAlive(userIdle)
		eff.IdleTimeout = out.KeepAlive.IdleTimeout
	}
	learn()
	if len(ms) > 0 {
		origin = ms[0].at
	}
	// The replay's clock, in seconds since origin; the autoscaler's in
	// time.Time.
	clock := func(sec float64) time.Time { return origin.Add(time.Duration(sec * float64(time.Second))) }
	// decide is the autoscaler's tick, learning from the gap that ends
	// when it first sees activity again.
	decide := func(samples []autoscaler.Sample, at time.Time) {
		last := state.LastActive
		_, state = autoscaler.Decide(eff, samples, state, state.Desired, at)
		// Samples come a second apart: activity in the next sample is no
		// pause (the real autoscaler, sampling every 200 ms, sees none).
		if state.LastActive.Sub(last) > time.Second && gaps.Saw(last, state.LastActive) {
			learn()
		}
	}

	// setDesired applies a decision: start or stop instances.
	setDesired := func(desired int, now float64) {
		desired = min(max(desired, norm.Min), norm.Max)
		for n := inst.total(); n < desired; n++ {
			d := start
			if n == inst.ready && len(inst.starting) == 0 && !noStandby {
				// The first of a scale-out is the prepared standby.
				d = coldStart
			}
			noStandby = false
			inst.starting = append(inst.starting, now+d)
		}
		for inst.total() > desired {
			if k := len(inst.starting); k > 0 {
				inst.starting = inst.starting[:k-1]
			} else {
				inst.ready--
			}
		}
		out.MaxInstances = max(out.MaxInstances, inst.total())
	}
	setDesired(norm.Min, 0)
	state.Desired = inst.total()

	for mi, m := range ms {
		base := m.at.Sub(origin).Seconds()
		if m.gapBefore {
			// The server was down: nothing is known of that time. Start
			// the function over, as a server start would find it.
			queue = queue[:0]
			samples = samples[:0]
			state = autoscaler.State{}
			inst = instances{}
			gaps = autoscaler.Gaps{}
			learn()
			since = base
			setDesired(norm.Min, base)
			state.Desired = inst.total()
		}
		if idleMinute(m) && settled(norm, state, inst, queue) {
			// Nothing arrives and nothing would change: a minute of
			// zeros for the autoscaler, min instances for the bill.
			secs := float64(m.last - m.first)
			is := float64(inst.total()) * secs
			out.InstanceSeconds += is
			out.PerMinute[mi] = is
			out.Seconds += secs
			samples = samples[:0]
			for s := max(m.first, m.last-int(norm.StableWindow/time.Second)); s < m.last; s++ {
				samples = append(samples, autoscaler.Sample{At: clock(base + float64(s+1)), Requests: requests})
			}
			continue
		}
		for s := m.first; s < m.last; s++ {
			var area float64
			for k := range stepsPerSecond {
				now := base + float64(s) + float64(k)*stepSeconds
				a := m.arrivals[s*stepsPerSecond+k]
				held, woke := false, false
				if a > 0 {
					requests += int64(a)
					out.Requests += float64(a)
					if inst.ready == 0 {
						held = true
						// The activator asks the autoscaler for an instance:
						// Wake, and the controller applies it at once.
						if inst.total() == 0 {
							out.Wakes++
							woke = true
							// The standby was given back after
							// StandbyIdle without activity.
							if now-max(since, state.LastActive.Sub(origin).Seconds()) >= out.KeepAlive.StandbyIdle.Seconds() {
								noStandby = true
								out.FullStarts++
							}
						}
						if gaps.Saw(state.LastActive, clock(now)) {
							learn()
						}
						state = autoscaler.Wake(eff, state, clock(now))
						setDesired(state.Desired, now)
					}
				}
				area += stepOnce(&out, &inst, &queue, cohortArrival(a, m.service, now, held, woke), now, conc, timeout, capTimeout, maxHeld)
				out.InstanceSeconds += float64(inst.total()) * stepSeconds
				out.PerMinute[mi] += float64(inst.total()) * stepSeconds
				if k < stepsPerSecond-1 && waiting(queue) {
					// Requests are waiting: the real autoscaler would look
					// again within 200 ms, so decide now on the second so
					// far (a provisional sample, replaced at the second's
					// end) rather than a second late.
					at := clock(now + stepSeconds)
					prov := append(samples, autoscaler.Sample{At: at, InFlight: area / (float64(k+1) * stepSeconds), Requests: requests})
					decide(prov, at)
					setDesired(state.Desired, now+stepSeconds)
				}
			}
			out.Seconds++
			at := clock(base + float64(s+1))
			samples = append(trimSamples(samples, at.Add(-norm.StableWindow)), autoscaler.Sample{At: at, InFlight: area, Requests: requests})
			// The real loop passes its own last decision as the ready count
			// (the gateway is not a ReadySource).
			decide(samples, at)
			setDesired(state.Desired, base+float64(s+1))
		}
	}
	return out
}

// cohortArrival is a step's arrivals as a cohort (nil when none).
func cohortArrival(a int, service, now float64, held, woke bool) *cohort {
	if a <= 0 {
		return nil
	}
	return &cohort{n: float64(a), rem: service, arrived: now, held: held, woke: woke}
}

// stepOnce moves one step: instances that become ready in it, the
// arrivals, service FIFO within the ready slots, waits and sheds. It
// returns the step's in-flight area divided by a second (its share of the
// second's mean in flight).
func stepOnce(out *Outcome, inst *instances, queue *[]cohort, arrival *cohort, now, conc, timeout, capTimeout float64, maxHeld int) float64 {
	end := now + stepSeconds
	// Slot-time available in the step: the ready instances for all of
	// it, those becoming ready from their moment on.
	slotTime := float64(inst.ready) * conc * stepSeconds
	firstReady := math.Inf(1)
	if len(inst.starting) > 0 {
		sort.Float64s(inst.starting)
		k := 0
		for _, at := range inst.starting {
			if at < end {
				from := max(at, now)
				slotTime += (end - from) * conc
				firstReady = min(firstReady, from)
				inst.ready++
			} else {
				inst.starting[k] = at
				k++
			}
		}
		inst.starting = inst.starting[:k]
	}
	if arrival != nil {
		if arrival.held {
			// Held at zero until the instance is ready; arrivals after that
			// moment are not held. The step's arrivals come at n a step:
			// those within the start are held, plus, when the first of
			// them woke the function, that first one (a wake's held
			// requests are 1 + rate × cold start, as with Poisson
			// arrivals).
			heldN := arrival.n
			if firstReady < end {
				f := min(1, (firstReady-now)/stepSeconds)
				heldN = arrival.n * f
				if arrival.woke {
					heldN = min(arrival.n, 1+arrival.n*f)
				}
			}
			out.ColdStarts += heldN
			if heldN <= 1e-9 {
				arrival.held = false
				*queue = append(*queue, *arrival)
			} else if heldN < arrival.n {
				rest := *arrival
				rest.n, rest.held, rest.arrived = arrival.n-heldN, false, firstReady
				arrival.n = heldN
				*queue = append(*queue, *arrival, rest)
			} else {
				*queue = append(*queue, *arrival)
			}
		} else {
			*queue = append(*queue, *arrival)
		}
		if held := heldCount(*queue); held > float64(maxHeld) {
			// The activator refuses requests past its bound (429).
			shedNewest(out, queue, held-float64(maxHeld))
		}
	}

	// Serve FIFO. Each request can use at most a step of slot-time in the
	// step; a slot freed within the step serves the next request.
	var area float64
	served := 0.0
	q := *queue
	keep := q[:0]
	for i := range q {
		c := q[i]
		avail := slotTime - served
		if avail <= 1e-12 {
			// Nothing left for it this step: it waits the whole step (or
			// from when it arrived), unless it has waited too long.
			area += c.n * stepSeconds
			if waited := end - c.arrived; !c.started && waited > limitFor(c, timeout, capTimeout) {
				out.Shed += c.n
				out.Latency.add(waited, c.n)
				continue
			}
			keep = append(keep, c)
			continue
		}
		use := min(c.rem, stepSeconds)
		// How many of the cohort get their share this step.
		k := min(c.n, avail/use)
		if !c.started {
			wait := max(0, now-c.arrived)
			if c.held || c.arrived < now {
				// Held at zero: from arrival to the first ready instance;
				// waiting for a slot: the steps already waited.
				if c.held && firstReady < end {
					wait = max(wait, firstReady-c.arrived)
				}
			}
			if wait > 0 && !c.held {
				out.Waited += k
			}
			out.Latency.add(wait, k)
		}
		served += k * use
		out.ServiceSeconds += k * use
		area += k*use + (c.n-k)*stepSeconds
		if rest := c.n - k; rest > 1e-9 {
			// The part not served this step waits on, still unstarted.
			w := c
			w.n = rest
			keep = append(keep, w)
		}
		if c.rem > stepSeconds {
			// Those served continue next step, started.
			s := c
			s.n, s.rem, s.started = k, c.rem-stepSeconds, true
			keep = append(keep, s)
		}
	}
	// Order matters (FIFO): started cohorts, then waiting ones by arrival.
	sort.SliceStable(keep, func(i, j int) bool {
		if keep[i].started != keep[j].started {
			return keep[i].started
		}
		return keep[i].arrived < keep[j].arrived
	})
	*queue = keep
	return area
}

func limitFor(c cohort, timeout, capTimeout float64) float64 {
	if c.held {
		return timeout
	}
	return capTimeout
}

func heldCount(q []cohort) float64 {
	var n float64
	for _, c := range q {
		if c.held && !c.started {
			n += c.n
		}
	}
	return n
}

// shedNewest refuses n held requests, the newest first.
func shedNewest(out *Outcome, queue *[]cohort, n float64) {
	q := *queue
	for i := len(q) - 1; i >= 0 && n > 1e-9; i-- {
		if !q[i].held || q[i].started {
			continue
		}
		d := min(q[i].n, n)
		q[i].n -= d
		n -= d
		out.Shed += d
		out.ColdStarts -= d // refused at once: not held
	}
	keep := q[:0]
	for _, c := range q {
		if c.n > 1e-9 {
			keep = append(keep, c)
		}
	}
	*queue = keep
}

// idleMinute: nothing arrives in it.
func idleMinute(m minuteTraffic) bool {
	for _, a := range m.arrivals {
		if a != 0 {
			return false
		}
	}
	return true
}

// settled: the function is at its floor with nothing queued, starting or
// pending in the autoscaler, so a minute without arrivals changes nothing.
func settled(p autoscaler.Params, s autoscaler.State, in instances, q []cohort) bool {
	if len(q) > 0 || len(in.starting) > 0 || s.Panicking() || in.ready != p.Min || s.Desired != p.Min {
		return false
	}
	// At zero with Desired 0 the idle timeout has passed; at a min above
	// zero, Decide's floor of one while active is covered by the min.
	return true
}

// trimSamples drops samples at or before from.
func trimSamples(s []autoscaler.Sample, from time.Time) []autoscaler.Sample {
	i := 0
	for i < len(s) && !s[i].At.After(from) {
		i++
	}
	if i == 0 {
		return s
	}
	return append(s[:0], s[i:]...)
}

// ReplayService is the same traffic as a Service of fixed replicas: they
// run through every recorded second; requests never wait for an instance
// (the gateway caps only Functions' concurrency) and none starts cold.
func ReplayService(ms []minuteTraffic, replicas int) Outcome {
	out := Outcome{PerMinute: make([]float64, len(ms)), MaxInstances: replicas}
	for i, m := range ms {
		secs := float64(m.last - m.first)
		out.Seconds += secs
		out.InstanceSeconds += float64(replicas) * secs
		out.PerMinute[i] = float64(replicas) * secs
		for _, a := range m.arrivals {
			out.Requests += float64(a)
			out.ServiceSeconds += float64(a) * m.service
		}
	}
	out.Latency.add(0, out.Requests)
	return out
}

// waiting reports requests queued and not yet served.
func waiting(q []cohort) bool {
	for _, c := range q {
		if !c.started {
			return true
		}
	}
	return false
}
