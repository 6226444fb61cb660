package controller

import (
	"fmt"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func TestPlanRevisions(t *testing.T) {
	rev := func(n int64) *v1.Revision { return &v1.Revision{Spec: v1.RevisionSpec{Number: n}} }
	revs := []*v1.Revision{rev(1), rev(2), rev(3)}
	cur := revs[2]
	tr := func(n int64, p int32, tag string) v1.TrafficTarget {
		if n == 0 {
			return v1.TrafficTarget{LatestRevision: true, Percent: p, Tag: tag}
		}
		return v1.TrafficTarget{Revision: n, Percent: p, Tag: tag}
	}
	show := func(p revisionPlan) string {
		s := fmt.Sprintf("cur=%d", p.current)
		for _, r := range p.pinned {
			s += fmt.Sprintf(" %d=%d", r.Revision.Spec.Number, r.Replicas)
		}
		if len(p.missing) > 0 {
			s += fmt.Sprintf(" missing=%v", p.missing)
		}
		return s
	}
	cases := []struct {
		name    string
		traffic []v1.TrafficTarget
		total   int
		want    string
	}{
		{"no split: all to the latest", nil, 3, "cur=3"},
		{"a canary of 5 % still gets one", []v1.TrafficTarget{tr(2, 95, ""), tr(0, 5, "")}, 3, "cur=1 2=3"},
		{"shares rounded up", []v1.TrafficTarget{tr(1, 50, ""), tr(2, 50, "")}, 3, "cur=0 1=2 2=2"},
		{"a tag without a share gets one", []v1.TrafficTarget{tr(2, 100, ""), tr(0, 0, "next")}, 4, "cur=1 2=4"},
		{"at zero everything is at zero", []v1.TrafficTarget{tr(2, 90, ""), tr(0, 10, "x")}, 0, "cur=0 2=0"},
		{"the latest named by number", []v1.TrafficTarget{tr(3, 60, ""), tr(1, 40, "")}, 5, "cur=3 1=2"},
		{"a missing revision is reported", []v1.TrafficTarget{tr(7, 50, ""), tr(0, 50, "")}, 2, "cur=1 missing=[7]"},
	}
	for _, tc := range cases {
		minTagged := min(tc.total, 1)
		if got := show(planRevisions(tc.traffic, revs, cur, tc.total, minTagged)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
