package v1

// Defaults a manifest gets for what it leaves out.
const (
	DefaultReplicas                      = 1
	DefaultPort                          = 8080
	DefaultMaxSurge                      = 1
	DefaultMaxUnavailable                = 0
	DefaultTerminationGracePeriodSeconds = 30

	DefaultProbePeriodSeconds    = 10
	DefaultProbeTimeoutSeconds   = 1
	DefaultProbeFailureThreshold = 3
	DefaultProbeSuccessThreshold = 1
	DefaultProbePath             = "/"
)

// SetDefaults fills in what a manifest may leave out and sets apiVersion and
// kind. It is idempotent, and runs before Validate: Validate expects the
// defaults to be there.
func SetDefaults(obj Object) {
	tm := obj.GetTypeMeta()
	tm.APIVersion = APIVersion
	if k := kindOf(obj); k != "" {
		tm.Kind = k
	}
	switch o := obj.(type) {
	case *Environment:
		// Environments are cluster-scoped: not inside an environment.
		return
	case *Service:
		defaultService(&o.Spec)
	case *Revision:
		DefaultTemplate(&o.Spec.Template)
	}
	if meta := obj.GetMetadata(); meta.Environment == "" {
		meta.Environment = DefaultEnvironment
	}
}

func defaultService(s *ServiceSpec) {
	if s.Replicas == nil {
		s.Replicas = ptr[int32](DefaultReplicas)
	}
	if s.Strategy.MaxSurge == nil {
		s.Strategy.MaxSurge = ptr[int32](DefaultMaxSurge)
	}
	if s.Strategy.MaxUnavailable == nil {
		s.Strategy.MaxUnavailable = ptr[int32](DefaultMaxUnavailable)
	}
	DefaultTemplate(&s.Template)
}

// DefaultTemplate fills in a template's defaults: port, grace period and the
// probes' timings, path and port. Pointers it fills are new, so a template
// copied by value can be defaulted without touching the original's probes.
func DefaultTemplate(t *Template) {
	if t.Port == 0 {
		t.Port = DefaultPort
	}
	if t.TerminationGracePeriodSeconds == nil {
		t.TerminationGracePeriodSeconds = ptr[int64](DefaultTerminationGracePeriodSeconds)
	}
	t.ReadinessProbe = defaultProbe(t.ReadinessProbe, t.Port)
	t.LivenessProbe = defaultProbe(t.LivenessProbe, t.Port)
}

func defaultProbe(in *Probe, port int32) *Probe {
	if in == nil {
		return nil
	}
	p := *in
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = DefaultProbePeriodSeconds
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultProbeTimeoutSeconds
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.HTTPGet != nil {
		h := *p.HTTPGet
		if h.Path == "" {
			h.Path = DefaultProbePath
		}
		if h.Port == 0 {
			h.Port = port
		}
		p.HTTPGet = &h
	}
	if p.TCPSocket != nil {
		s := *p.TCPSocket
		if s.Port == 0 {
			s.Port = port
		}
		p.TCPSocket = &s
	}
	return &p
}

func ptr[T any](v T) *T { return &v }
