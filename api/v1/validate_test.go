package v1

import (
	"strings"
	"testing"
)

func validService() *Service {
	return &Service{
		Metadata: ObjectMeta{Name: "orders", Labels: map[string]string{"app": "shop"}},
		Spec: ServiceSpec{
			Template: Template{
				Image:          "registry.example.com:5000/shop/orders:v1",
				Env:            []EnvVar{{Name: "LOG_LEVEL", Value: "info"}},
				Resources:      Resources{CPU: "250m", Memory: "64Mi"},
				ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{Path: "/ready"}},
				LivenessProbe:  &Probe{TCPSocket: &TCPSocketAction{}},
				Volumes:        []VolumeMount{{Name: "data", MountPath: "/data"}},
			},
			Route: &Route{Path: "/orders"},
		},
	}
}

func TestValidateService(t *testing.T) {
	s := validService()
	// Valid before defaults (zero means "default") and after.
	if err := Validate(s); err != nil {
		t.Fatalf("before defaults: %v", err)
	}
	SetDefaults(s)
	if err := Validate(s); err != nil {
		t.Fatalf("after defaults: %v", err)
	}
	if s.Metadata.Environment != DefaultEnvironment {
		t.Errorf("environment = %q, want %q", s.Metadata.Environment, DefaultEnvironment)
	}

	tests := []struct {
		name   string
		mutate func(s *Service)
		field  string
		msg    string
	}{
		{"no name", func(s *Service) { s.Metadata.Name = "" }, "metadata.name", "name is required"},
		{"uppercase name", func(s *Service) { s.Metadata.Name = "Orders" }, "metadata.name", "must be lowercase"},
		{"underscore in name", func(s *Service) { s.Metadata.Name = "my_svc" }, "metadata.name", `contains '_'`},
		{"name starts with digit", func(s *Service) { s.Metadata.Name = "1st" }, "metadata.name", "must start with a letter"},
		{"name ends with dash", func(s *Service) { s.Metadata.Name = "a-" }, "metadata.name", "must end with a letter or digit"},
		{"service name too long", func(s *Service) { s.Metadata.Name = strings.Repeat("a", 41) }, "metadata.name", "at most 40"},
		{"bad environment", func(s *Service) { s.Metadata.Environment = "Prod" }, "metadata.environment", "must be lowercase"},
		{"bad label key", func(s *Service) { s.Metadata.Labels["-x"] = "y" }, "metadata.labels.-x", "label key"},
		{"bad label prefix", func(s *Service) { s.Metadata.Labels["Example.com/x"] = "y" }, "metadata.labels.Example.com/x", "invalid prefix"},
		{"bad label value", func(s *Service) { s.Metadata.Labels["app"] = "a b" }, "metadata.labels.app", "label value"},
		{"kind mismatch", func(s *Service) { s.Kind = "Environment" }, "kind", "does not match"},
		{"wrong apiVersion", func(s *Service) { s.APIVersion = "v1" }, "apiVersion", "unsupported"},
		{"no image", func(s *Service) { s.Spec.Image = "" }, "spec.image", "image is required"},
		{"image with space", func(s *Service) { s.Spec.Image = "nginx latest" }, "spec.image", "space"},
		{"uppercase image", func(s *Service) { s.Spec.Image = "Shop/Orders" }, "spec.image", "must be lowercase"},
		{"bad image tag", func(s *Service) { s.Spec.Image = "nginx:" }, "spec.image", "not a valid image reference"},
		{"bad digest", func(s *Service) { s.Spec.Image = "nginx@sha256:abc" }, "spec.image", "not a valid image reference"},
		{"port too big", func(s *Service) { s.Spec.Port = 70000 }, "spec.port", "use 1 to 65535"},
		{"negative port", func(s *Service) { s.Spec.Port = -1 }, "spec.port", "use 1 to 65535"},
		{"too many replicas", func(s *Service) { s.Spec.Replicas = ptr[int32](1001) }, "spec.replicas", "use 0 to 1000"},
		{"negative replicas", func(s *Service) { s.Spec.Replicas = ptr[int32](-1) }, "spec.replicas", "out of range"},
		{"env name", func(s *Service) { s.Spec.Env[0].Name = "1X" }, "spec.env[0].name", "not a valid variable name"},
		{"env dash", func(s *Service) { s.Spec.Env[0].Name = "LOG-LEVEL" }, "spec.env[0].name", "not a valid variable name"},
		{"env empty name", func(s *Service) { s.Spec.Env[0].Name = "" }, "spec.env[0].name", "required"},
		{"env duplicate", func(s *Service) { s.Spec.Env = append(s.Spec.Env, EnvVar{Name: "LOG_LEVEL"}) },
			"spec.env[1].name", "already set by spec.env[0]"},
		{"env PORT", func(s *Service) { s.Spec.Env[0].Name = "PORT" }, "spec.env[0].name", "set by the platform"},
		{"env BERTH_", func(s *Service) { s.Spec.Env[0].Name = "BERTH_NAME" }, "spec.env[0].name", "set by the platform"},
		{"cpu garbage", func(s *Service) { s.Spec.Resources.CPU = "fast" }, "spec.resources.cpu", `cpu "fast"`},
		{"cpu zero", func(s *Service) { s.Spec.Resources.CPU = "0" }, "spec.resources.cpu", "more than 0"},
		{"memory unit", func(s *Service) { s.Spec.Resources.Memory = "512MB" }, "spec.resources.memory", `unknown unit "MB"`},
		{"memory tiny", func(s *Service) { s.Spec.Resources.Memory = "1Ki" }, "spec.resources.memory", "minimum of 4Mi"},
		{"probe without action", func(s *Service) { s.Spec.ReadinessProbe = &Probe{} }, "spec.readinessProbe", "set one of httpGet or tcpSocket"},
		{"probe with both", func(s *Service) { s.Spec.LivenessProbe.HTTPGet = &HTTPGetAction{} }, "spec.livenessProbe", "not both"},
		{"probe path", func(s *Service) { s.Spec.ReadinessProbe.HTTPGet.Path = "ready" }, "spec.readinessProbe.httpGet.path", "must start with '/'"},
		{"probe port", func(s *Service) { s.Spec.LivenessProbe.TCPSocket.Port = 65536 }, "spec.livenessProbe.tcpSocket.port", "out of range"},
		{"probe negative", func(s *Service) { s.Spec.ReadinessProbe.PeriodSeconds = -5 }, "spec.readinessProbe.periodSeconds", "negative"},
		{"probe negative threshold", func(s *Service) { s.Spec.ReadinessProbe.FailureThreshold = -1 }, "spec.readinessProbe.failureThreshold", "negative"},
		{"liveness success threshold", func(s *Service) { s.Spec.LivenessProbe.SuccessThreshold = 2 }, "spec.livenessProbe.successThreshold", "must be 1"},
		{"volume name", func(s *Service) { s.Spec.Volumes[0].Name = "Data" }, "spec.volumes[0].name", "must be lowercase"},
		{"volume relative", func(s *Service) { s.Spec.Volumes[0].MountPath = "data" }, "spec.volumes[0].mountPath", "absolute"},
		{"volume root", func(s *Service) { s.Spec.Volumes[0].MountPath = "/" }, "spec.volumes[0].mountPath", "root directory"},
		{"volume dotdot", func(s *Service) { s.Spec.Volumes[0].MountPath = "/data/../etc" }, "spec.volumes[0].mountPath", "'..'"},
		{"volume proc", func(s *Service) { s.Spec.Volumes[0].MountPath = "/proc/x" }, "spec.volumes[0].mountPath", "runtime provides"},
		{"volume duplicate name", func(s *Service) {
			s.Spec.Volumes = append(s.Spec.Volumes, VolumeMount{Name: "data", MountPath: "/other"})
		}, "spec.volumes[1].name", "already mounted"},
		{"volume duplicate path", func(s *Service) {
			s.Spec.Volumes = append(s.Spec.Volumes, VolumeMount{Name: "other", MountPath: "/data/"})
		}, "spec.volumes[1].mountPath", "already used by spec.volumes[0]"},
		{"strategy both zero", func(s *Service) { s.Spec.Strategy.MaxSurge = ptr[int32](0) }, "spec.strategy", "both 0"},
		{"strategy negative", func(s *Service) { s.Spec.Strategy.MaxUnavailable = ptr[int32](-1) }, "spec.strategy.maxUnavailable", "negative"},
		{"route relative", func(s *Service) { s.Spec.Route.Path = "orders" }, "spec.route.path", "must start with '/'"},
		{"route empty", func(s *Service) { s.Spec.Route.Path = "" }, "spec.route.path", "required"},
		{"route space", func(s *Service) { s.Spec.Route.Path = "/my orders" }, "spec.route.path", "spaces"},
		{"route dotdot", func(s *Service) { s.Spec.Route.Path = "/a/../b" }, "spec.route.path", "'..'"},
		{"route api", func(s *Service) { s.Spec.Route.Path = "/api/orders" }, "spec.route.path", "reserved"},
		{"route query", func(s *Service) { s.Spec.Route.Path = "/a?b" }, "spec.route.path", "'?'"},
		{"grace too long", func(s *Service) { s.Spec.TerminationGracePeriodSeconds = ptr[int64](3601) }, "spec.terminationGracePeriodSeconds", "0 to 3600"},
		{"NUL in args", func(s *Service) { s.Spec.Args = []string{"ok", "a\x00b"} }, "spec.args[1]", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validService()
			SetDefaults(s)
			tt.mutate(s)
			err := Validate(s)
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			e := asError(t, err)
			if e.Kind != ErrInvalid || e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("got %#v\nwant field %q, message containing %q", e, tt.field, tt.msg)
			}
		})
	}
}

func TestValidateServiceAccepts(t *testing.T) {
	for name, mutate := range map[string]func(s *Service){
		"zero replicas": func(s *Service) { s.Spec.Replicas = ptr[int32](0) },
		"surge zero": func(s *Service) {
			s.Spec.Strategy = UpdateStrategy{MaxSurge: ptr[int32](0), MaxUnavailable: ptr[int32](1)}
		},
		"digest image":         func(s *Service) { s.Spec.Image = "nginx@sha256:" + strings.Repeat("ab", 32) },
		"tag and digest":       func(s *Service) { s.Spec.Image = "docker.io/library/nginx:1.27@sha256:" + strings.Repeat("ab", 32) },
		"localhost registry":   func(s *Service) { s.Spec.Image = "localhost:5000/app" },
		"prefixed label":       func(s *Service) { s.Metadata.Labels["app.kubernetes.io/name"] = "Shop_1.0" },
		"empty label value":    func(s *Service) { s.Metadata.Labels["canary"] = "" },
		"grace zero":           func(s *Service) { s.Spec.TerminationGracePeriodSeconds = ptr[int64](0) },
		"route root":           func(s *Service) { s.Spec.Route.Path = "/" },
		"route apifoo":         func(s *Service) { s.Spec.Route.Path = "/apis" },
		"name of 40":           func(s *Service) { s.Metadata.Name = "a" + strings.Repeat("0", 39) },
		"env lowercase":        func(s *Service) { s.Spec.Env[0].Name = "_lower_case1" },
		"fractional cpu":       func(s *Service) { s.Spec.Resources.CPU = "1.5" },
		"decimal memory units": func(s *Service) { s.Spec.Resources.Memory = "128M" },
	} {
		s := validService()
		SetDefaults(s)
		mutate(s)
		if err := Validate(s); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateEnvironment(t *testing.T) {
	e := &Environment{Metadata: ObjectMeta{Name: "staging"}, Spec: EnvironmentSpec{AllowFrom: []string{"dev", "qa"}}}
	SetDefaults(e)
	if e.Metadata.Environment != "" {
		t.Errorf("SetDefaults put an Environment in environment %q", e.Metadata.Environment)
	}
	if e.Kind != KindEnvironment {
		t.Errorf("kind = %q", e.Kind)
	}
	if err := Validate(e); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		e     Environment
		field string
		msg   string
	}{
		{Environment{Metadata: ObjectMeta{Name: "Staging"}}, "metadata.name", "lowercase"},
		{Environment{Metadata: ObjectMeta{Name: "staging", Environment: "default"}}, "metadata.environment", "remove metadata.environment"},
		{Environment{Metadata: ObjectMeta{Name: "staging"}, Spec: EnvironmentSpec{AllowFrom: []string{"dev", "QA"}}}, "spec.allowFrom[1]", "lowercase"},
		{Environment{Metadata: ObjectMeta{Name: "staging"}, Spec: EnvironmentSpec{AllowFrom: []string{""}}}, "spec.allowFrom[0]", "required"},
	} {
		err := Validate(&tt.e)
		if err == nil {
			t.Errorf("%+v: accepted", tt.e)
			continue
		}
		if e := asError(t, err); e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%+v: got %#v, want field %q and %q", tt.e, e, tt.field, tt.msg)
		}
	}
}

func TestDefaultsKeepExplicitValues(t *testing.T) {
	s := &Service{Spec: ServiceSpec{
		Replicas: ptr[int32](0),
		Strategy: UpdateStrategy{MaxSurge: ptr[int32](0), MaxUnavailable: ptr[int32](2)},
		Template: Template{
			Port:                          3000,
			TerminationGracePeriodSeconds: ptr[int64](0),
			ReadinessProbe:                &Probe{HTTPGet: &HTTPGetAction{Path: "/ok", Port: 3001}, PeriodSeconds: 2},
		},
	}}
	SetDefaults(s)
	SetDefaults(s) // idempotent
	if *s.Spec.Replicas != 0 || *s.Spec.Strategy.MaxSurge != 0 || *s.Spec.Strategy.MaxUnavailable != 2 ||
		*s.Spec.TerminationGracePeriodSeconds != 0 || s.Spec.Port != 3000 {
		t.Errorf("explicit values overwritten: %+v", s.Spec)
	}
	if p := s.Spec.ReadinessProbe; p.HTTPGet.Path != "/ok" || p.HTTPGet.Port != 3001 || p.PeriodSeconds != 2 || p.TimeoutSeconds != 1 {
		t.Errorf("probe = %+v %+v", p, p.HTTPGet)
	}
}
