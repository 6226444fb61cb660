package apiserver

import (
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func ptr[T any](v T) *T { return &v }

func TestWorkloadDemand(t *testing.T) {
	svc := &v1.Service{Spec: v1.ServiceSpec{Replicas: ptr[int32](3)}}
	svc.Spec.Resources = v1.Resources{CPU: "500m", Memory: "1Gi"}
	fn := &v1.Function{Spec: v1.FunctionSpec{Scale: v1.FunctionScale{Max: ptr[int32](4)}}}
	// No limits: the defaults count.
	for _, tc := range []struct {
		obj  v1.Object
		want demand
	}{
		{svc, demand{cpu: 1500, mem: 3 << 30}},
		{fn, demand{cpu: 4 * 500, mem: 4 * 256 << 20}},
		{&v1.Topic{}, demand{}},
	} {
		got, err := workloadDemand(tc.obj)
		if err != nil || got != tc.want {
			t.Errorf("%T: demand = %+v, %v; want %+v", tc.obj, got, err, tc.want)
		}
	}
}

func TestQuotaCheckMessage(t *testing.T) {
	q := &v1.Quota{CPU: "4", Memory: "8Gi"}
	inUse := demand{cpu: 2000, mem: 6 << 30}
	if err := quotaCheck("dev", q, inUse, demand{cpu: 2000, mem: 2 << 30}, "service/web"); err != nil {
		t.Fatalf("exactly at the quota refused: %v", err)
	}
	err := quotaCheck("dev", q, inUse, demand{cpu: 1000, mem: 5 << 29}, "service/web")
	want := `spec.resources: quota exceeded in environment "dev": memory 8.5Gi requested (6Gi in use + 2.5Gi for service/web), quota 8Gi`
	if err == nil || err.Error() != want || !v1.IsInvalid(err) {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	err = quotaCheck("dev", q, inUse, demand{cpu: 2500, mem: 0}, "function/resize")
	want = `spec.resources: quota exceeded in environment "dev": cpu 4.5 requested (2 in use + 2.5 for function/resize), quota 4`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if err := quotaCheck("dev", nil, inUse, demand{cpu: 1 << 40}, "x"); err != nil {
		t.Fatalf("no quota: %v", err)
	}
}

func TestHumanQuantities(t *testing.T) {
	for b, want := range map[int64]string{512 << 20: "512Mi", 3 << 29: "1.5Gi", 1 << 30: "1Gi", 100: "100"} {
		if got := humanMemory(b); got != want {
			t.Errorf("humanMemory(%d) = %q, want %q", b, got, want)
		}
	}
	for m, want := range map[int64]string{250: "250m", 1000: "1", 2500: "2.5"} {
		if got := humanCPU(m); got != want {
			t.Errorf("humanCPU(%d) = %q, want %q", m, got, want)
		}
	}
}
