package v1

import (
	"strings"
	"testing"
)

func TestApplyLimitRange(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    Resources
		lr    *LimitRange
		want  Resources
		field string // the error's field, "" for none
		msg   string
	}{
		{name: "built-in defaults", want: Resources{CPU: "500m", Memory: "256Mi", Pids: 1024}},
		{name: "explicit values stay", in: Resources{CPU: "2", Memory: "1Gi", Pids: 64},
			want: Resources{CPU: "2", Memory: "1Gi", Pids: 64}},
		{name: "environment defaults", lr: &LimitRange{Default: Resources{CPU: "250m", Memory: "128Mi", Pids: 256}},
			want: Resources{CPU: "250m", Memory: "128Mi", Pids: 256}},
		{name: "partial environment defaults", in: Resources{Memory: "64Mi"}, lr: &LimitRange{Default: Resources{CPU: "100m"}},
			want: Resources{CPU: "100m", Memory: "64Mi", Pids: 1024}},
		{name: "built-in defaults capped at the max", lr: &LimitRange{Max: Resources{CPU: "200m", Memory: "128Mi", Pids: 100}},
			want: Resources{CPU: "200m", Memory: "128Mi", Pids: 100}},
		{name: "max above the built-in defaults", lr: &LimitRange{Max: Resources{CPU: "4", Memory: "4Gi", Pids: 4096}},
			want: Resources{CPU: "500m", Memory: "256Mi", Pids: 1024}},
		{name: "at the max", in: Resources{CPU: "1000m", Memory: "1Gi", Pids: 10}, lr: &LimitRange{Max: Resources{CPU: "1", Memory: "1024Mi", Pids: 10}},
			want: Resources{CPU: "1000m", Memory: "1Gi", Pids: 10}},
		{name: "cpu above the max", in: Resources{CPU: "1500m"}, lr: &LimitRange{Max: Resources{CPU: "1"}},
			field: "spec.resources.cpu", msg: `1500m per instance is above the most environment "dev" allows, 1 (its spec.limits.max.cpu`},
		{name: "memory above the max", in: Resources{Memory: "2Gi"}, lr: &LimitRange{Max: Resources{Memory: "1Gi"}},
			field: "spec.resources.memory", msg: "2Gi per instance is above"},
		{name: "pids above the max", in: Resources{Pids: 5000}, lr: &LimitRange{Max: Resources{Pids: 4096}},
			field: "spec.resources.pids", msg: "5000 per instance is above"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := Template{Image: "x", Resources: tt.in}
			err := ApplyLimitRange(&tmpl, tt.lr, "dev", "spec")
			if tt.field != "" {
				if e := asError(t, err); e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
					t.Fatalf("got %v, want %s: …%s…", err, tt.field, tt.msg)
				}
				return
			}
			if err != nil || tmpl.Resources != tt.want {
				t.Fatalf("got %+v, %v; want %+v", tmpl.Resources, err, tt.want)
			}
			// Applying again changes nothing: a stored spec re-applied
			// stays unchanged.
			again := tmpl
			if err := ApplyLimitRange(&again, tt.lr, "dev", "spec"); err != nil || again.Resources != tmpl.Resources {
				t.Fatalf("second apply: %+v, %v", again.Resources, err)
			}
		})
	}
}

func TestResourcesLimits(t *testing.T) {
	l, err := Resources{}.Limits()
	if err != nil || l != (Limits{CPUMillis: 500, MemoryBytes: 256 << 20, Pids: 1024}) {
		t.Fatalf("built-in: %+v %v", l, err)
	}
	l, err = Resources{CPU: "1.5", Memory: "1Gi", Pids: 32}.Limits()
	if err != nil || l != (Limits{CPUMillis: 1500, MemoryBytes: 1 << 30, Pids: 32}) {
		t.Fatalf("explicit: %+v %v", l, err)
	}
}

func TestValidateLimits(t *testing.T) {
	env := func(lr *LimitRange) *Environment {
		return &Environment{Metadata: ObjectMeta{Name: "dev"}, Spec: EnvironmentSpec{Limits: lr}}
	}
	if err := Validate(env(&LimitRange{Default: Resources{CPU: "1", Memory: "1Gi", Pids: 64}, Max: Resources{CPU: "1000m", Memory: "2Gi", Pids: 64}})); err != nil {
		t.Fatalf("valid limits refused: %v", err)
	}
	for _, tt := range []struct {
		obj   Object
		field string
		msg   string
	}{
		{env(&LimitRange{Default: Resources{CPU: "2"}, Max: Resources{CPU: "1"}}), "spec.limits.default.cpu", "is above spec.limits.max.cpu"},
		{env(&LimitRange{Default: Resources{Memory: "2Gi"}, Max: Resources{Memory: "1Gi"}}), "spec.limits.default.memory", "above"},
		{env(&LimitRange{Default: Resources{Pids: 100}, Max: Resources{Pids: 50}}), "spec.limits.default.pids", "above"},
		{env(&LimitRange{Max: Resources{Memory: "1Ki"}}), "spec.limits.max.memory", "below the minimum"},
		{env(&LimitRange{Default: Resources{Pids: 8}}), "spec.limits.default.pids", "out of range: use 16 to 4194304"},
		{&Service{Metadata: ObjectMeta{Name: "web"}, Spec: ServiceSpec{Template: Template{Image: "x", Resources: Resources{Pids: -1}}}},
			"spec.resources.pids", "out of range"},
		{&Service{Metadata: ObjectMeta{Name: "web"}, Spec: ServiceSpec{Template: Template{Image: "x", Resources: Resources{Pids: MaxPids + 1}}}},
			"spec.resources.pids", "out of range"},
	} {
		err := Validate(tt.obj)
		if e := asError(t, err); e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%+v: got %v, want %s: …%s…", tt.obj, err, tt.field, tt.msg)
		}
	}
}
