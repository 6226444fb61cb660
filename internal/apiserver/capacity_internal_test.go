package apiserver

import (
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func TestMemTotal(t *testing.T) {
	got, err := memTotal(strings.NewReader("MemFree:  1000 kB\nMemTotal:       24683792 kB\nBuffers: 1 kB\n"))
	if err != nil || got != 24683792<<10 {
		t.Fatalf("memTotal = %d, %v", got, err)
	}
	for _, in := range []string{"MemFree: 1 kB\n", "MemTotal: 12 MB\n", "MemTotal: x kB\n"} {
		if _, err := memTotal(strings.NewReader(in)); err == nil {
			t.Errorf("memTotal(%q) accepted", in)
		}
	}
	c, err := HostCapacity()
	if err != nil || c.CPUMillis < 1000 || c.MemoryBytes < 64<<20 {
		t.Fatalf("HostCapacity = %+v, %v", c, err)
	}
}

func TestNodeCheck(t *testing.T) {
	node := NodeCapacity{CPUMillis: 2000, MemoryBytes: 1 << 30}
	svc := func(replicas int32, r v1.Resources) *v1.Service {
		s := &v1.Service{Spec: v1.ServiceSpec{Replicas: &replicas}}
		s.Spec.Resources = r
		return s
	}
	fn := func(max int32, r v1.Resources) *v1.Function {
		f := &v1.Function{Spec: v1.FunctionSpec{Scale: v1.FunctionScale{Max: &max}}}
		f.Spec.Resources = r
		return f
	}
	for _, tc := range []struct {
		name  string
		node  NodeCapacity
		obj   v1.Object
		field string // "" when accepted
	}{
		{"fits", node, svc(4, v1.Resources{CPU: "2", Memory: "256Mi"}), ""},
		{"cpu per instance", node, svc(1, v1.Resources{CPU: "2001m"}), "spec.resources.cpu"},
		{"memory per instance", node, svc(0, v1.Resources{Memory: "1025Mi"}), "spec.resources.memory"},
		{"replicas × memory", node, svc(5, v1.Resources{Memory: "256Mi"}), "spec.replicas"},
		{"no limits count as the built-in defaults", node, svc(5, v1.Resources{}), "spec.replicas"},
		{"function at max", node, fn(3, v1.Resources{Memory: "512Mi"}), "spec.scale.max"},
		{"function within", node, fn(2, v1.Resources{Memory: "512Mi"}), ""},
		{"unknown node", NodeCapacity{}, svc(1000, v1.Resources{CPU: "100000"}), ""},
		{"not a workload", node, &v1.Topic{}, ""},
	} {
		err := nodeCheck(tc.node, tc.obj)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.field != "" && (!v1.IsInvalid(err) || !strings.HasPrefix(err.Error(), tc.field+": ")):
			t.Errorf("%s: got %v, want an Invalid error on %s", tc.name, err, tc.field)
		}
	}
}
