package v1

import (
	"fmt"
	"strconv"
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
