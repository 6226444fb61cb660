package local

import (
	"fmt"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// inst makes an instance of revision rev, e.g. inst("a", 1, true).
func inst(name string, rev int64, ready bool) *v1.Instance {
	return &v1.Instance{
		Metadata: v1.ObjectMeta{Name: name, CreationTimestamp: time.Unix(int64(len(name)), 0)},
		Spec:     v1.InstanceSpec{Revision: rev},
		Status:   v1.InstanceStatus{Ready: ready},
	}
}

func draining(i *v1.Instance) *v1.Instance { i.Spec.Draining = true; return i }

func names(l []*v1.Instance) string {
	s := ""
	for _, i := range l {
		s += i.Metadata.Name + " "
	}
	return s
}

func TestPlanRollout(t *testing.T) {
	cases := []struct {
		name   string
		limits rolloutLimits
		insts  []*v1.Instance
		create int
		drain  string
	}{
		{"new service creates all at once", rolloutLimits{3, 1, 0}, nil, 3, ""},
		{"steady state does nothing", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 2, true), inst("b", 2, true), inst("c", 2, true)}, 0, ""},
		{"rollout starts with one surge instance and drains nothing", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("b", 1, true), inst("c", 1, true)}, 1, ""},
		{"a new instance that is not ready yet blocks the next step", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("b", 1, true), inst("c", 1, true), inst("n1", 2, false)}, 0, ""},
		{"once it is ready one old instance goes", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("bb", 1, true), inst("ccc", 1, true), inst("n1", 2, true)}, 0, "ccc "},
		{"draining instances count for nothing", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("b", 1, true), draining(inst("c", 1, true)), inst("n1", 2, true)}, 1, ""},
		{"old instances that are not ready go at once", rolloutLimits{3, 1, 0},
			[]*v1.Instance{inst("a", 1, false), inst("b", 1, true), inst("c", 1, true)}, 2, "a "},
		{"maxUnavailable without surge replaces in place", rolloutLimits{3, 0, 1},
			[]*v1.Instance{inst("a", 1, true), inst("bb", 1, true), inst("ccc", 1, true)}, 0, "ccc "},
		{"after the in-place drain a replacement is made", rolloutLimits{3, 0, 1},
			[]*v1.Instance{inst("a", 1, true), inst("bb", 1, true)}, 1, ""},
		{"both zero is treated as surge 1", rolloutLimits{2, 0, 0},
			[]*v1.Instance{inst("a", 1, true), inst("b", 1, true)}, 1, ""},
		{"scale down drains not-ready first", rolloutLimits{1, 1, 0},
			[]*v1.Instance{inst("a", 2, true), inst("bb", 2, false), inst("ccc", 2, true)}, 0, "bb ccc "},
		{"scale to zero drains everything", rolloutLimits{0, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("b", 2, true)}, 0, "b a "},
		{"last old instance goes when all new are ready", rolloutLimits{2, 1, 0},
			[]*v1.Instance{inst("a", 1, true), inst("n1", 2, true), inst("n2", 2, true)}, 0, "a "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := planRollout(c.limits, 2, c.insts)
			if p.Create != c.create || names(p.Drain) != c.drain {
				t.Fatalf("create %d drain [%s], want create %d drain [%s]", p.Create, names(p.Drain), c.create, c.drain)
			}
		})
	}
}

// TestPlanRolloutConverges simulates a whole rollout step by step, with
// every created instance becoming ready and every drained one vanishing,
// and checks the limits hold at every step.
func TestPlanRolloutConverges(t *testing.T) {
	for _, l := range []rolloutLimits{{3, 1, 0}, {3, 0, 1}, {5, 2, 1}, {1, 1, 0}, {4, 4, 0}} {
		t.Run(fmt.Sprint(l), func(t *testing.T) {
			var insts []*v1.Instance
			for i := range l.Desired {
				insts = append(insts, inst(fmt.Sprintf("old%d", i), 1, true))
			}
			n := 0
			for step := 0; ; step++ {
				if step == 50 {
					t.Fatal("no convergence in 50 steps")
				}
				// What was created in the last step has become ready.
				for _, i := range insts {
					i.Status.Ready = true
				}
				p := planRollout(l, 2, insts)
				if p.Create == 0 && len(p.Drain) == 0 {
					break
				}
				drop := map[*v1.Instance]bool{}
				for _, d := range p.Drain {
					drop[d] = true
				}
				var next []*v1.Instance
				ready := 0
				for _, i := range insts {
					if !drop[i] {
						next = append(next, i)
						ready++
					}
				}
				for range p.Create {
					n++
					next = append(next, inst(fmt.Sprintf("new%d", n), 2, false))
				}
				if len(next) > l.Desired+max(l.MaxSurge, 1) {
					t.Fatalf("step %d: %d instances exceed desired+surge", step, len(next))
				}
				if ready < l.Desired-l.MaxUnavailable {
					t.Fatalf("step %d: %d ready is below desired-unavailable", step, ready)
				}
				insts = next
			}
			for _, i := range insts {
				i.Status.Ready = true
			}
			if len(insts) != l.Desired {
				t.Fatalf("ended with %d instances", len(insts))
			}
			for _, i := range insts {
				if i.Spec.Revision != 2 {
					t.Fatalf("old instance %s left", i.Metadata.Name)
				}
			}
		})
	}
}
