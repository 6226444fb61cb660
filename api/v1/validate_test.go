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

func validFunction() *Function {
	return &Function{
		Metadata: ObjectMeta{Name: "resize", Labels: map[string]string{"app": "media"}},
		Spec: FunctionSpec{
			Template: Template{Image: "registry.example.com/media/resize:v2"},
			Route:    &Route{Path: "/resize"},
			Triggers: []Trigger{{Cron: "*/5 * * * *", Data: `{"batch": true}`}, {Topic: "uploads"}},
			Async:    Async{DeadLetterTopic: "uploads-failed"},
		},
	}
}

func TestFunctionDefaults(t *testing.T) {
	f := &Function{Spec: FunctionSpec{Template: Template{Image: "fn"}}}
	SetDefaults(f)
	s := f.Spec
	if f.Kind != KindFunction || f.APIVersion != APIVersion || f.Metadata.Environment != DefaultEnvironment {
		t.Errorf("meta = %+v %+v", f.TypeMeta, f.Metadata)
	}
	if s.Port != 8080 || *s.TerminationGracePeriodSeconds != 10 || s.Concurrency != 1 || *s.Scale.Min != 0 ||
		*s.Scale.Max != 10 || s.Scale.IdleTimeout != "" || *s.Scale.TargetUtilization != 0.7 || s.Timeout != "30s" ||
		*s.Async.MaxRetries != 2 || s.Async.Backoff != "1s" {
		t.Errorf("defaults = %+v scale %+v async %+v", s, s.Scale, s.Async)
	}
	// Explicit values stay, and defaulting twice changes nothing.
	f = &Function{Spec: FunctionSpec{Template: Template{Image: "fn", TerminationGracePeriodSeconds: ptr[int64](0)},
		Scale: FunctionScale{Min: ptr[int32](2), Max: ptr[int32](3)}, Async: Async{MaxRetries: ptr[int32](0)}}}
	SetDefaults(f)
	SetDefaults(f)
	if *f.Spec.TerminationGracePeriodSeconds != 0 || *f.Spec.Scale.Min != 2 || *f.Spec.Scale.Max != 3 || *f.Spec.Async.MaxRetries != 0 {
		t.Errorf("explicit values overwritten: %+v", f.Spec)
	}

	// A function's revision gets a function's grace period.
	rev := &Revision{Spec: RevisionSpec{OwnerKind: KindFunction, Template: Template{Image: "fn"}}}
	SetDefaults(rev)
	if *rev.Spec.Template.TerminationGracePeriodSeconds != 10 {
		t.Errorf("function revision grace = %d", *rev.Spec.Template.TerminationGracePeriodSeconds)
	}
}

func TestValidateFunction(t *testing.T) {
	f := validFunction()
	if err := Validate(f); err != nil {
		t.Fatalf("before defaults: %v", err)
	}
	SetDefaults(f)
	if err := Validate(f); err != nil {
		t.Fatalf("after defaults: %v", err)
	}

	tests := []struct {
		name   string
		mutate func(f *Function)
		field  string
		msg    string
	}{
		{"name too long", func(f *Function) { f.Metadata.Name = strings.Repeat("f", 41) }, "metadata.name", "at most 40"},
		{"no image", func(f *Function) { f.Spec.Image = "" }, "spec.image", "image is required"},
		{"volumes", func(f *Function) { f.Spec.Volumes = []VolumeMount{{Name: "data", MountPath: "/data"}} },
			"spec.volumes", "functions are stateless; use a Service for state"},
		{"unknown runtime", func(f *Function) { f.Spec.Runtime = "lambda" }, "spec.runtime", `unknown runtime "lambda"`},
		{"wasm without image", func(f *Function) { f.Spec.Runtime, f.Spec.Image = RuntimeWasm, "" }, "spec.image", "image is required"},
		{"wasm with command", func(f *Function) { f.Spec.Runtime, f.Spec.Command = RuntimeWasm, []string{"/app"} }, "spec.command", "_start"},
		{"wasm with probe", func(f *Function) {
			f.Spec.Runtime, f.Spec.ReadinessProbe = RuntimeWasm, &Probe{HTTPGet: &HTTPGetAction{Path: "/"}}
		}, "spec.readinessProbe", "no probes"},
		{"negative concurrency", func(f *Function) { f.Spec.Concurrency = -1 }, "spec.concurrency", "must be at least 1"},
		{"concurrency too high", func(f *Function) { f.Spec.Concurrency = 1001 }, "spec.concurrency", "at most 1000"},
		{"negative min", func(f *Function) { f.Spec.Scale.Min = ptr[int32](-1) }, "spec.scale.min", "negative"},
		{"max zero", func(f *Function) { f.Spec.Scale.Max = ptr[int32](0) }, "spec.scale.max", "must be at least 1"},
		{"max too high", func(f *Function) { f.Spec.Scale.Max = ptr[int32](1001) }, "spec.scale.max", "at most 1000"},
		{"min above max", func(f *Function) { f.Spec.Scale.Min, f.Spec.Scale.Max = ptr[int32](5), ptr[int32](3) },
			"spec.scale.min", "5 is greater than spec.scale.max 3"},
		{"min above default max", func(f *Function) { f.Spec.Scale = FunctionScale{Min: ptr[int32](11)} },
			"spec.scale.min", "11 is greater than spec.scale.max 10"},
		{"utilization zero", func(f *Function) { f.Spec.Scale.TargetUtilization = ptr(0.0) }, "spec.scale.targetUtilization", "more than 0"},
		{"utilization above 1", func(f *Function) { f.Spec.Scale.TargetUtilization = ptr(1.5) }, "spec.scale.targetUtilization", "at most 1"},
		{"idle timeout garbage", func(f *Function) { f.Spec.Scale.IdleTimeout = "a minute" }, "spec.scale.idleTimeout", "not a duration"},
		{"idle timeout without unit", func(f *Function) { f.Spec.Scale.IdleTimeout = "60" }, "spec.scale.idleTimeout", "not a duration"},
		{"idle timeout short", func(f *Function) { f.Spec.Scale.IdleTimeout = "500ms" }, "spec.scale.idleTimeout", "at least 1s"},
		{"timeout zero", func(f *Function) { f.Spec.Timeout = "0s" }, "spec.timeout", "must be positive"},
		{"timeout negative", func(f *Function) { f.Spec.Timeout = "-5s" }, "spec.timeout", "must be positive"},
		{"timeout short", func(f *Function) { f.Spec.Timeout = "100ms" }, "spec.timeout", "at least 1s"},
		{"timeout long", func(f *Function) { f.Spec.Timeout = "16m" }, "spec.timeout", "at most 15m0s"},
		{"backoff short", func(f *Function) { f.Spec.Async.Backoff = "1ms" }, "spec.async.backoff", "at least 10ms"},
		{"retries negative", func(f *Function) { f.Spec.Async.MaxRetries = ptr[int32](-1) }, "spec.async.maxRetries", "out of range"},
		{"dead letter name", func(f *Function) { f.Spec.Async.DeadLetterTopic = "Failed" }, "spec.async.deadLetterTopic", "lowercase"},
		{"dead letter is a trigger", func(f *Function) { f.Spec.Async.DeadLetterTopic = "uploads" },
			"spec.async.deadLetterTopic", "also this function's trigger (spec.triggers[1])"},
		{"empty trigger", func(f *Function) { f.Spec.Triggers[0] = Trigger{} }, "spec.triggers[0]", "set one of cron or topic"},
		{"trigger with both", func(f *Function) { f.Spec.Triggers[1].Cron = "@hourly" }, "spec.triggers[1]", "not both"},
		{"cron with 4 fields", func(f *Function) { f.Spec.Triggers[0].Cron = "* * * *" }, "spec.triggers[0].cron", "not a valid schedule"},
		{"cron with seconds", func(f *Function) { f.Spec.Triggers[0].Cron = "0 * * * * *" }, "spec.triggers[0].cron", "5 fields"},
		{"cron out of range", func(f *Function) { f.Spec.Triggers[0].Cron = "61 * * * *" }, "spec.triggers[0].cron", "above maximum"},
		{"cron garbage", func(f *Function) { f.Spec.Triggers[0].Cron = "every monday" }, "spec.triggers[0].cron", "not a valid schedule"},
		{"cron unknown descriptor", func(f *Function) { f.Spec.Triggers[0].Cron = "@fortnightly" }, "spec.triggers[0].cron", "not a valid schedule"},
		{"cron every garbage", func(f *Function) { f.Spec.Triggers[0].Cron = "@every soon" }, "spec.triggers[0].cron", "not a duration"},
		{"cron every too fast", func(f *Function) { f.Spec.Triggers[0].Cron = "@every 100ms" }, "spec.triggers[0].cron", "at least 1s"},
		{"cron with a zone", func(f *Function) { f.Spec.Triggers[0].Cron = "TZ=Europe/Paris 0 9 * * *" }, "spec.triggers[0].cron", "UTC"},
		{"cron zone without a space", func(f *Function) { f.Spec.Triggers[0].Cron = "CRON_TZ=x" }, "spec.triggers[0].cron", "UTC"},
		{"cron never fires", func(f *Function) { f.Spec.Triggers[0].Cron = "0 0 30 2 *" }, "spec.triggers[0].cron", "never fires"},
		{"topic name", func(f *Function) { f.Spec.Triggers[1].Topic = "Uploads" }, "spec.triggers[1].topic", "lowercase"},
		{"topic with a dot", func(f *Function) { f.Spec.Triggers[1].Topic = "uploads.v2" }, "spec.triggers[1].topic", `contains '.'`},
		{"data on a topic trigger", func(f *Function) { f.Spec.Triggers[1].Data = "x" }, "spec.triggers[1].data", "cron"},
		{"same topic twice", func(f *Function) { f.Spec.Triggers = append(f.Spec.Triggers, Trigger{Topic: "uploads"}) },
			"spec.triggers[2].topic", "already a trigger (spec.triggers[1])"},
		{"route api", func(f *Function) { f.Spec.Route.Path = "/api/resize" }, "spec.route.path", "reserved"},
		{"route relative", func(f *Function) { f.Spec.Route.Path = "resize" }, "spec.route.path", "must start with '/'"},
		{"env PORT", func(f *Function) { f.Spec.Env = []EnvVar{{Name: "PORT", Value: "1"}} }, "spec.env[0].name", "set by the platform"},
		{"kind mismatch", func(f *Function) { f.Kind = KindService }, "kind", "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := validFunction()
			SetDefaults(f)
			tt.mutate(f)
			err := Validate(f)
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

func TestValidateFunctionAccepts(t *testing.T) {
	for name, mutate := range map[string]func(f *Function){
		"cron hourly":        func(f *Function) { f.Spec.Triggers[0].Cron = "@hourly" },
		"cron every":         func(f *Function) { f.Spec.Triggers[0].Cron = "@every 1m30s" },
		"cron names":         func(f *Function) { f.Spec.Triggers[0].Cron = "0 9 * JAN-MAR MON-FRI" },
		"cron lists":         func(f *Function) { f.Spec.Triggers[0].Cron = "0,30 8-18/2 1,15 * *" },
		"cron leap day":      func(f *Function) { f.Spec.Triggers[0].Cron = "0 0 29 2 *" },
		"min equals max":     func(f *Function) { f.Spec.Scale.Min, f.Spec.Scale.Max = ptr[int32](3), ptr[int32](3) },
		"utilization 1":      func(f *Function) { f.Spec.Scale.TargetUtilization = ptr(1.0) },
		"concurrency 1000":   func(f *Function) { f.Spec.Concurrency = 1000 },
		"wasm":               func(f *Function) { f.Spec.Runtime = RuntimeWasm; f.Spec.Args = []string{"-v"} },
		"container":          func(f *Function) { f.Spec.Runtime = RuntimeContainer },
		"timeout 15m":        func(f *Function) { f.Spec.Timeout = "15m" },
		"no retries":         func(f *Function) { f.Spec.Async.MaxRetries = ptr[int32](0) },
		"backoff 10ms":       func(f *Function) { f.Spec.Async.Backoff = "10ms" },
		"no triggers":        func(f *Function) { f.Spec.Triggers = nil },
		"no route":           func(f *Function) { f.Spec.Route = nil },
		"cron with no data":  func(f *Function) { f.Spec.Triggers[0].Data = "" },
		"probe on the port":  func(f *Function) { f.Spec.ReadinessProbe = &Probe{TCPSocket: &TCPSocketAction{}} },
		"name of 40":         func(f *Function) { f.Metadata.Name = "f" + strings.Repeat("0", 39) },
		"idle timeout hours": func(f *Function) { f.Spec.Scale.IdleTimeout = "2h" },
	} {
		f := validFunction()
		SetDefaults(f)
		mutate(f)
		if err := Validate(f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateTopic(t *testing.T) {
	tp := &Topic{Metadata: ObjectMeta{Name: "orders"}}
	SetDefaults(tp)
	if tp.Spec.Retention != "168h" || tp.Kind != KindTopic || tp.Metadata.Environment != DefaultEnvironment {
		t.Fatalf("topic after defaults = %+v", tp)
	}
	if err := Validate(tp); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tp    Topic
		field string
		msg   string
	}{
		{Topic{Metadata: ObjectMeta{Name: "Orders"}}, "metadata.name", "lowercase"},
		{Topic{Metadata: ObjectMeta{Name: ""}}, "metadata.name", "required"},
		{Topic{Metadata: ObjectMeta{Name: "orders"}, Spec: TopicSpec{Retention: "30s"}}, "spec.retention", "at least 1m"},
		{Topic{Metadata: ObjectMeta{Name: "orders"}, Spec: TopicSpec{Retention: "7d"}}, "spec.retention", "not a duration"},
		{Topic{Metadata: ObjectMeta{Name: "orders"}, Spec: TopicSpec{Retention: "-1h"}}, "spec.retention", "positive"},
	} {
		err := Validate(&tt.tp)
		if err == nil {
			t.Errorf("%+v: accepted", tt.tp)
			continue
		}
		if e := asError(t, err); e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%+v: got %#v, want field %q and %q", tt.tp, e, tt.field, tt.msg)
		}
	}
}
