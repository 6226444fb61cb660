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

// Function and Topic defaults. A function's grace period is shorter than a
// service's: its instances come and go with load, and one draining for 30s
// after every scale-in would hold resources the idle timeout meant to free.
const (
	DefaultFunctionTerminationGracePeriodSeconds = 10
	DefaultConcurrency                           = 1
	DefaultScaleMin                              = 0
	DefaultScaleMax                              = 10
	DefaultIdleTimeout                           = "60s"
	DefaultTargetUtilization                     = 0.7
	DefaultFunctionTimeout                       = "30s"
	DefaultAsyncMaxRetries                       = 2
	DefaultAsyncBackoff                          = "1s"
	DefaultTopicRetention                        = "168h"
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
	case *Function:
		defaultFunction(&o.Spec)
	case *Topic:
		if o.Spec.Retention == "" {
			o.Spec.Retention = DefaultTopicRetention
		}
	case *Revision:
		if o.Spec.OwnerKind == KindFunction {
			DefaultFunctionTemplate(&o.Spec.Template)
		} else {
			DefaultTemplate(&o.Spec.Template)
		}
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

func defaultFunction(s *FunctionSpec) {
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	sc := &s.Scale
	if sc.Min == nil {
		sc.Min = ptr[int32](DefaultScaleMin)
	}
	if sc.Max == nil {
		sc.Max = ptr[int32](DefaultScaleMax)
	}
	// An unset idleTimeout stays unset: the autoscaler learns it from the
	// function's own idle gaps (DefaultIdleTimeout until it has enough).
	if sc.TargetUtilization == nil {
		sc.TargetUtilization = ptr(DefaultTargetUtilization)
	}
	if s.Timeout == "" {
		s.Timeout = DefaultFunctionTimeout
	}
	if s.Async.MaxRetries == nil {
		s.Async.MaxRetries = ptr[int32](DefaultAsyncMaxRetries)
	}
	if s.Async.Backoff == "" {
		s.Async.Backoff = DefaultAsyncBackoff
	}
	DefaultFunctionTemplate(&s.Template)
}

// DefaultFunctionTemplate is DefaultTemplate with a function's shorter
// grace period. Hash a function's template only after it (SetDefaults does
// it): TemplateHash alone would fill in a service's grace period.
func DefaultFunctionTemplate(t *Template) {
	if t.TerminationGracePeriodSeconds == nil {
		t.TerminationGracePeriodSeconds = ptr[int64](DefaultFunctionTerminationGracePeriodSeconds)
	}
	DefaultTemplate(t)
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
