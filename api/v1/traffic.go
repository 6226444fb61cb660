package v1

import (
	"fmt"
	"strconv"
	"time"
)

// TrafficTarget is one entry of a workload's spec.traffic: a revision, by
// number or as the latest, its share of requests, and optionally a tag
// that gives it a host of its own (TAG-NAME.ENV under the gateway's
// domain) whatever its share.
type TrafficTarget struct {
	Revision       int64  `json:"revision,omitempty"`
	LatestRevision bool   `json:"latestRevision,omitempty"`
	Percent        int32  `json:"percent"`
	Tag            string `json:"tag,omitempty"`
}

// TagHost is the name a tagged revision is served at, in place of the
// workload's own name: "TAG-NAME".
func TagHost(tag, name string) string { return tag + "-" + name }

// validateTraffic checks what can be checked without the store: the
// shares sum to 100, each entry names one revision, tags are DNS labels
// short enough to make a host with the workload's name and are unique.
// That the revisions exist, and that no tag host is another workload's
// name, is checked at apply against what is stored.
func validateTraffic(traffic []TrafficTarget, name string) error {
	if len(traffic) == 0 {
		return nil
	}
	var sum int32
	tags := map[string]int{}
	revs := map[int64]int{}
	latest := -1
	for i, t := range traffic {
		at := fmt.Sprintf("spec.traffic[%d]", i)
		switch {
		case t.LatestRevision && t.Revision != 0:
			return FieldError(at, "set one of revision or latestRevision, not both")
		case !t.LatestRevision && t.Revision == 0:
			return FieldError(at+".revision", "set a revision number (1 or more), or latestRevision: true")
		case t.Revision < 0:
			return FieldError(at+".revision", "%d is not a revision number", t.Revision)
		case t.Percent < 0 || t.Percent > 100:
			return FieldError(at+".percent", "%d is out of range: use 0 to 100", t.Percent)
		}
		if t.LatestRevision {
			if latest >= 0 {
				return FieldError(at+".latestRevision", "the latest revision is already listed (spec.traffic[%d])", latest)
			}
			latest = i
		} else {
			if j, ok := revs[t.Revision]; ok {
				return FieldError(at+".revision", "revision %d is already listed (spec.traffic[%d])", t.Revision, j)
			}
			revs[t.Revision] = i
		}
		if t.Tag != "" {
			if msg := nameProblem(t.Tag, MaxNameLength); msg != "" {
				return FieldError(at+".tag", "tag %s", msg)
			}
			if host := TagHost(t.Tag, name); len(host) > MaxNameLength {
				return FieldError(at+".tag", "tag %q makes the host name %q, %d characters long; at most %d are allowed", t.Tag, host, len(host), MaxNameLength)
			}
			if j, ok := tags[t.Tag]; ok {
				return FieldError(at+".tag", "tag %q is already used (spec.traffic[%d])", t.Tag, j)
			}
			tags[t.Tag] = i
		}
		sum += t.Percent
	}
	if sum != 100 {
		return FieldError("spec.traffic", "percentages sum to %d; they must sum to 100", sum)
	}
	return nil
}

// ResolveTraffic returns traffic with the latest revision named by number
// (latest), entries for the same revision merged; empty traffic is all of
// it to latest.
func ResolveTraffic(traffic []TrafficTarget, latest int64) []TrafficTarget {
	if len(traffic) == 0 {
		return []TrafficTarget{{Revision: latest, Percent: 100}}
	}
	out := make([]TrafficTarget, 0, len(traffic))
	at := map[int64]int{}
	for _, t := range traffic {
		rev := t.Revision
		if t.LatestRevision {
			rev = latest
		}
		if j, ok := at[rev]; ok {
			out[j].Percent += t.Percent
			if out[j].Tag == "" {
				out[j].Tag = t.Tag
			} else if t.Tag != "" {
				// A second tag for one revision is a second host of it.
				out = append(out, TrafficTarget{Revision: rev, Tag: t.Tag})
			}
			continue
		}
		at[rev] = len(out)
		out = append(out, TrafficTarget{Revision: rev, Percent: t.Percent, Tag: t.Tag})
	}
	return out
}

// String shows a traffic entry as `berth traffic` takes it: "2=90",
// "latest=10", with its tag after a colon.
func (t TrafficTarget) String() string {
	s := "latest"
	if !t.LatestRevision {
		s = strconv.FormatInt(t.Revision, 10)
	}
	s += "=" + strconv.Itoa(int(t.Percent))
	if t.Tag != "" {
		s += ":" + t.Tag
	}
	return s
}

// TrafficOf returns a Service's or Function's spec.traffic, nil for other
// kinds.
func TrafficOf(obj Object) []TrafficTarget {
	switch o := obj.(type) {
	case *Service:
		return o.Spec.Traffic
	case *Function:
		return o.Spec.Traffic
	}
	return nil
}

// Canary is spec.strategy.canary: a new revision takes a growing share of
// the traffic step by step, judged at each step against the stable
// revision on the gateway's own measurements, and is promoted after the
// last step or rolled back at the first breach (docs/delivery.md).
type Canary struct {
	Steps    []CanaryStep   `json:"steps"`
	Analysis CanaryAnalysis `json:"analysis,omitzero"`
}

// CanaryStep gives the canary Percent of the requests for Pause (a Go
// duration), or until `berth rollout promote` when Pause is "manual".
type CanaryStep struct {
	Percent int32  `json:"percent"`
	Pause   string `json:"pause,omitempty"`
}

// PauseManual is a step's pause that lasts until a promote by hand.
const PauseManual = "manual"

// CanaryAnalysis bounds what the canary may do worse than allowed, or
// than the stable revision. A threshold left out is not checked.
type CanaryAnalysis struct {
	// MaxErrorRate is the largest share (0 to 1) of the canary's requests
	// that may fail (5xx).
	MaxErrorRate *float64 `json:"maxErrorRate,omitempty"`
	// MaxErrorRateIncrease is how much higher (0 to 1, absolute) the
	// canary's error rate may be than the stable revision's.
	MaxErrorRateIncrease *float64 `json:"maxErrorRateIncrease,omitempty"`
	// MaxP99Latency is the canary's largest p99 latency, a Go duration.
	MaxP99Latency string `json:"maxP99Latency,omitempty"`
	// MaxP99LatencyRatio is how many times the stable revision's p99 the
	// canary's may be (at least 1).
	MaxP99LatencyRatio *float64 `json:"maxP99LatencyRatio,omitempty"`
	// MinRequests is how many requests the canary must have served in a
	// step before the step may pass (default 20); thresholds are judged
	// from then on.
	MinRequests int32 `json:"minRequests,omitempty"`
	// Interval is how often the canary is judged (default "1s").
	Interval string `json:"interval,omitempty"`
}

// Canary phases.
const (
	CanaryProgressing = "Progressing"
	CanaryPromoted    = "Promoted"
	CanaryRolledBack  = "RolledBack"
	CanaryAborted     = "Aborted"
)

// CanaryStatus is a canary's progress, in a workload's status.
type CanaryStatus struct {
	// Revision is the canary, Stable the revision it is judged against.
	Revision int64 `json:"revision"`
	Stable   int64 `json:"stable"`
	// Step indexes spec.strategy.canary.steps; Percent is the canary's
	// share now.
	Step        int32     `json:"step"`
	Percent     int32     `json:"percent"`
	Phase       string    `json:"phase"`
	StepStarted time.Time `json:"stepStarted,omitzero"`
	// Message says why the canary is where it is (the breach, for a
	// rollback).
	Message string `json:"message,omitempty"`
	// What the gateway measured of the step so far.
	CanaryMeasure *RevisionMeasure `json:"canaryMeasure,omitempty"`
	StableMeasure *RevisionMeasure `json:"stableMeasure,omitempty"`
}

// RevisionMeasure is what the gateway measured of one revision.
type RevisionMeasure struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"errorRate"`
	P99MS     float64 `json:"p99Ms"`
}

// Active reports a canary still stepping.
func (c *CanaryStatus) Active() bool { return c != nil && c.Phase == CanaryProgressing }

func validateCanary(c *Canary, at string) error {
	if c == nil {
		return nil
	}
	if len(c.Steps) == 0 {
		return FieldError(at+".steps", "a canary needs at least one step")
	}
	prev := int32(-1)
	for i, s := range c.Steps {
		f := fmt.Sprintf("%s.steps[%d]", at, i)
		if s.Percent < 0 || s.Percent > 100 {
			return FieldError(f+".percent", "%d is out of range: use 0 to 100", s.Percent)
		}
		if s.Percent < prev {
			return FieldError(f+".percent", "%d is below the step before (%d): steps only grow", s.Percent, prev)
		}
		prev = s.Percent
		if s.Pause != "" && s.Pause != PauseManual {
			if err := checkDuration(s.Pause, f+".pause", 0, 24*time.Hour); err != nil {
				return err
			}
		}
	}
	a := &c.Analysis
	rate := func(p *float64, f string) error {
		if p != nil && (*p < 0 || *p > 1) {
			return FieldError(at+".analysis."+f, "%g is out of range: a share from 0 to 1", *p)
		}
		return nil
	}
	if err := rate(a.MaxErrorRate, "maxErrorRate"); err != nil {
		return err
	}
	if err := rate(a.MaxErrorRateIncrease, "maxErrorRateIncrease"); err != nil {
		return err
	}
	if a.MaxP99Latency != "" {
		if err := checkDuration(a.MaxP99Latency, at+".analysis.maxP99Latency", time.Millisecond, time.Hour); err != nil {
			return err
		}
	}
	if r := a.MaxP99LatencyRatio; r != nil && (*r < 1 || *r > 1000) {
		return FieldError(at+".analysis.maxP99LatencyRatio", "%g is out of range: at least 1 (as slow as stable), at most 1000", *r)
	}
	if a.MinRequests < 0 || a.MinRequests > 1000000 {
		return FieldError(at+".analysis.minRequests", "%d is out of range: use 0 to 1000000", a.MinRequests)
	}
	if a.Interval != "" {
		if err := checkDuration(a.Interval, at+".analysis.interval", 10*time.Millisecond, time.Hour); err != nil {
			return err
		}
	}
	return nil
}
