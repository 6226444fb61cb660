package controller

import (
	"fmt"
	"slices"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/gateway"
)

// revisionPlan is how many instances each revision of a workload should
// run: the current (latest) one, and older ones kept by spec.traffic.
type revisionPlan struct {
	traffic []v1.TrafficTarget // resolved; nil without spec.traffic
	current int
	pinned  []backend.PinnedRevision
	// missing are revisions spec.traffic names that are not stored (the
	// API refuses them; one pruned or deleted later ends up here).
	missing []int64
	// canary is the canary in progress, or the last one's outcome.
	canary *v1.CanaryStatus
}

// revisionExists reports whether revs holds revision n.
func revisionExists(revs []*v1.Revision) func(int64) bool {
	return func(n int64) bool {
		return slices.ContainsFunc(revs, func(r *v1.Revision) bool { return r.Spec.Number == n })
	}
}

// total is the instances of every revision together.
func (p revisionPlan) total() int {
	n := p.current
	for _, r := range p.pinned {
		n += r.Replicas
	}
	return n
}

// want is how many instances revision n should run.
func (p revisionPlan) want(cur, n int64) int {
	if n == cur {
		return p.current
	}
	for _, r := range p.pinned {
		if r.Revision.Spec.Number == n {
			return r.Replicas
		}
	}
	return 0
}

// planRevisions shares total instances between the revisions of a traffic
// split, each in proportion to its percent, rounded up, so that a 5 %
// canary of 3 instances still has one. A revision reached only by its tag
// gets minTagged (1 while the workload runs at all: a preview must
// answer). Pure:
// (spec, revisions, demand) → plan.
func planRevisions(traffic []v1.TrafficTarget, revs []*v1.Revision, cur *v1.Revision, total int, minTagged int) revisionPlan {
	if len(traffic) == 0 {
		return revisionPlan{current: total}
	}
	p := revisionPlan{traffic: v1.ResolveTraffic(traffic, cur.Spec.Number)}
	want := map[int64]int{}
	var order []int64
	for _, t := range p.traffic {
		n := 0
		if t.Percent > 0 {
			n = (total*int(t.Percent) + 99) / 100
		} else if t.Tag != "" {
			n = minTagged
		}
		if _, seen := want[t.Revision]; !seen {
			order = append(order, t.Revision)
		}
		want[t.Revision] = max(want[t.Revision], n)
	}
	for _, n := range order {
		if n == cur.Spec.Number {
			p.current = want[n]
			continue
		}
		i := slices.IndexFunc(revs, func(r *v1.Revision) bool { return r.Spec.Number == n })
		if i < 0 {
			p.missing = append(p.missing, n)
			continue
		}
		p.pinned = append(p.pinned, backend.PinnedRevision{Revision: revs[i], Replicas: want[n]})
	}
	return p
}

// gatewaySplit is a resolved traffic list as the gateway takes it.
func gatewaySplit(traffic []v1.TrafficTarget) (split []gateway.RevisionShare, tags []gateway.Tag) {
	for _, t := range traffic {
		split = append(split, gateway.RevisionShare{Revision: t.Revision, Percent: int(t.Percent)})
		if t.Tag != "" {
			tags = append(tags, gateway.Tag{Name: t.Tag, Revision: t.Revision})
		}
	}
	return split, tags
}

// trafficRevisions are the revisions spec.traffic keeps (pruning spares
// them).
func trafficRevisions(traffic []v1.TrafficTarget) []int64 {
	var out []int64
	for _, t := range traffic {
		if !t.LatestRevision {
			out = append(out, t.Revision)
		}
	}
	return out
}

func missingMessage(missing []int64) string {
	return fmt.Sprintf("spec.traffic names revisions %v, which no longer exist; they get no instances", missing)
}
