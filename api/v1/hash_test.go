package v1

import (
	"regexp"
	"testing"
)

func TestTemplateHash(t *testing.T) {
	base := Template{Image: "nginx:1.27", ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{}}}
	h := TemplateHash(base)
	if !regexp.MustCompile(`^[0-9a-f]{10}$`).MatchString(h) {
		t.Fatalf("hash %q is not 10 hex digits", h)
	}
	// Pinned: a hash that changes across releases would make every
	// service roll out again after an upgrade.
	if h != "7e8482492a" {
		t.Fatalf("hash of the pinned template is %s, was 7e8482492a", h)
	}
	if base.Port != 0 || base.ReadinessProbe.HTTPGet.Path != "" || base.TerminationGracePeriodSeconds != nil {
		t.Fatalf("TemplateHash changed its argument: %+v", base)
	}

	explicit := Template{Image: "nginx:1.27", Port: 8080, TerminationGracePeriodSeconds: ptr[int64](30),
		ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{Path: "/", Port: 8080}, PeriodSeconds: 10, TimeoutSeconds: 1,
			FailureThreshold: 3, SuccessThreshold: 1}}
	if got := TemplateHash(explicit); got != h {
		t.Errorf("spelling out the defaults changed the hash: %s vs %s", got, h)
	}

	for name, t2 := range map[string]Template{
		"image":  {Image: "nginx:1.28", ReadinessProbe: base.ReadinessProbe},
		"env":    {Image: "nginx:1.27", ReadinessProbe: base.ReadinessProbe, Env: []EnvVar{{Name: "A", Value: "1"}}},
		"port":   {Image: "nginx:1.27", ReadinessProbe: base.ReadinessProbe, Port: 9000},
		"probe":  {Image: "nginx:1.27", ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{Path: "/ready"}}},
		"memory": {Image: "nginx:1.27", ReadinessProbe: base.ReadinessProbe, Resources: Resources{Memory: "64Mi"}},
	} {
		if TemplateHash(t2) == h {
			t.Errorf("changing %s did not change the hash", name)
		}
	}

	// Replicas, strategy and route are not in the template: scaling is not
	// a new revision.
	a := &Service{Spec: ServiceSpec{Template: base, Replicas: ptr[int32](1)}}
	b := &Service{Spec: ServiceSpec{Template: base, Replicas: ptr[int32](5), Route: &Route{Path: "/x"}}}
	SetDefaults(a)
	SetDefaults(b)
	if TemplateHash(a.Spec.Template) != TemplateHash(b.Spec.Template) || TemplateHash(a.Spec.Template) != h {
		t.Error("scaling or routing changed the template hash")
	}
}

// A function's scale, concurrency, timeout, triggers and async settings are
// outside its template: changing them makes no new revision.
func TestTemplateHashOfFunctions(t *testing.T) {
	a := &Function{Spec: FunctionSpec{Template: Template{Image: "fn:1"}}}
	b := &Function{Spec: FunctionSpec{Template: Template{Image: "fn:1", TerminationGracePeriodSeconds: ptr[int64](10)},
		Concurrency: 50, Scale: FunctionScale{Min: ptr[int32](1), Max: ptr[int32](99)}, Timeout: "5m",
		Triggers: []Trigger{{Cron: "@hourly"}}, Async: Async{DeadLetterTopic: "dlq"}, Route: &Route{Path: "/fn"}}}
	SetDefaults(a)
	SetDefaults(b)
	ha := TemplateHash(a.Spec.Template)
	if hb := TemplateHash(b.Spec.Template); ha != hb {
		t.Errorf("non-template fields changed the hash: %s vs %s", ha, hb)
	}
	// The function's grace period (10s) is part of what it runs: the same
	// template in a service, defaulted to 30s, is a different revision.
	svc := &Service{Spec: ServiceSpec{Template: Template{Image: "fn:1"}}}
	SetDefaults(svc)
	if TemplateHash(svc.Spec.Template) == ha {
		t.Error("a function's and a service's defaulted templates hash the same")
	}
	c := &Function{Spec: FunctionSpec{Template: Template{Image: "fn:2"}}}
	SetDefaults(c)
	if TemplateHash(c.Spec.Template) == ha {
		t.Error("changing the image did not change the hash")
	}
}
