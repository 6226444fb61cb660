package convert

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
)

// plane stands in for the API server, controllers and routes: objects
// applied are stored (defaulted, with a generation), a new workload gets
// ready instances after a few looks unless its image is missing, and the
// route follows the routes controller's rule (the older until the newer
// has a ready instance).
type plane struct {
	mu      sync.Mutex
	objs    map[string]v1.Object
	created map[string]int // order of creation
	n       int
	looks   map[string]int
	missing bool // the new workload's image cannot be had
	log     []string
}

func newPlane(objs ...v1.Object) *plane {
	p := &plane{objs: map[string]v1.Object{}, created: map[string]int{}, looks: map[string]int{}}
	for _, o := range objs {
		p.put(o)
	}
	return p
}

func key(kind, env, name string) string { return kind + "/" + env + "/" + name }

func (p *plane) put(o v1.Object) {
	md := o.GetMetadata()
	k := key(o.GetTypeMeta().Kind, md.Environment, md.Name)
	if _, ok := p.objs[k]; !ok {
		p.n++
		p.created[k] = p.n
	}
	md.Generation++
	p.objs[k] = o
}

func clone(o v1.Object) v1.Object {
	b, _ := json.Marshal(o)
	var out v1.Object
	switch o.(type) {
	case *v1.Service:
		out = new(v1.Service)
	case *v1.Function:
		out = new(v1.Function)
	}
	_ = json.Unmarshal(b, out)
	return out
}

func (p *plane) Get(_ context.Context, kind, env, name string) (v1.Object, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(kind, env, name)
	o, ok := p.objs[k]
	if !ok {
		return nil, v1.NotFound("%s %s not found", kind, name)
	}
	p.looks[k]++
	// The controllers: after three looks the workload is ready.
	switch x := o.(type) {
	case *v1.Function:
		if p.missing {
			x.Status.Conditions = []v1.Condition{{Type: v1.ConditionProgressing, Reason: "ImageNotFound", Message: `image "nope": not found`}}
		} else if p.looks[k] > 3 {
			x.Status.ReadyInstances = max(*x.Spec.Scale.Min, 1)
		}
	case *v1.Service:
		if p.looks[k] > 3 && x.Status.ReadyReplicas == 0 {
			x.Status.ReadyReplicas = *x.Spec.Replicas
		}
	}
	return clone(o), nil
}

func (p *plane) Apply(_ context.Context, obj v1.Object) (v1.Object, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v1.SetDefaults(obj)
	if err := v1.Validate(obj); err != nil {
		return nil, err
	}
	md := obj.GetMetadata()
	k := key(obj.GetTypeMeta().Kind, md.Environment, md.Name)
	if old, ok := p.objs[k]; ok {
		md.Generation = old.GetMetadata().Generation
	}
	p.put(clone(obj))
	p.log = append(p.log, "apply "+k)
	return clone(p.objs[k]), nil
}

func (p *plane) Delete(_ context.Context, kind, env, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(kind, env, name)
	if _, ok := p.objs[k]; !ok {
		return v1.NotFound("%s %s not found", kind, name)
	}
	delete(p.objs, k)
	p.log = append(p.log, "delete "+k)
	return nil
}

func ready(o v1.Object) int {
	switch x := o.(type) {
	case *v1.Function:
		return int(x.Status.ReadyInstances)
	case *v1.Service:
		return int(x.Status.ReadyReplicas)
	}
	return 0
}

func (p *plane) Routed(env, name string) (gateway.Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var older, newer v1.Object
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		o, ok := p.objs[key(kind, env, name)]
		if !ok {
			continue
		}
		switch {
		case older == nil:
			older = o
		case p.created[key(kind, env, name)] > p.created[key(older.GetTypeMeta().Kind, env, name)]:
			newer = o
		default:
			older, newer = o, older
		}
	}
	pick := older
	if newer != nil && ready(newer) > 0 {
		pick = newer
	}
	if pick == nil {
		return gateway.Target{}, false
	}
	t := gateway.Target{Environment: env, Name: name, Kind: pick.GetTypeMeta().Kind}
	for range ready(pick) {
		t.Endpoints = append(t.Endpoints, gateway.Endpoint{ID: "x", Address: "10.0.0.1:8080"})
	}
	return t, true
}

func service(replicas, ready int32) *v1.Service {
	grace := int64(v1.DefaultTerminationGracePeriodSeconds)
	return &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: "web", Environment: "prod", Labels: map[string]string{"team": "shop"}},
		Spec: v1.ServiceSpec{Replicas: &replicas, Route: &v1.Route{Path: "/web"}, Template: v1.Template{
			Image: "web:1", Port: 8080, TerminationGracePeriodSeconds: &grace,
			Env: []v1.EnvVar{{Name: "A", Value: "1"}, {Name: "PW", ValueFrom: &v1.EnvVarSource{Secret: &v1.KeyRef{Name: "db", Key: "pw"}}}},
		}},
		Status: v1.ServiceStatus{ReadyReplicas: ready},
	}
}

func converter(p *plane) *Converter {
	return New(Config{Routes: p, Poll: time.Millisecond})
}

func TestServiceToFunction(t *testing.T) {
	p := newPlane(service(3, 3))
	four := int32(4)
	res, err := converter(p).Convert(context.Background(), p, v1.KindService, "prod", "web", v1.ConvertRequest{To: "function", Concurrency: &four})
	if err != nil {
		t.Fatal(err)
	}
	// Created with min 3 (the service's ready replicas), the service
	// deleted once the function was ready and routed, then min back to 0.
	want := []string{"apply Function/prod/web", "delete Service/prod/web", "apply Function/prod/web"}
	if strings.Join(p.log, ", ") != strings.Join(want, ", ") {
		t.Errorf("sequence %v, want %v", p.log, want)
	}
	fn := res.Object.(*v1.Function)
	if *fn.Spec.Scale.Min != 0 || *fn.Spec.Scale.Max != 10 || fn.Spec.Concurrency != 4 {
		t.Errorf("scale %+v concurrency %d", fn.Spec.Scale, fn.Spec.Concurrency)
	}
	if fn.Spec.Route.Path != "/web" || fn.Metadata.Labels["team"] != "shop" || len(fn.Spec.Env) != 2 || fn.Spec.Image != "web:1" {
		t.Errorf("kept: %+v", fn)
	}
	// The service's default grace period gives way to the function's.
	if *fn.Spec.TerminationGracePeriodSeconds != v1.DefaultFunctionTerminationGracePeriodSeconds {
		t.Errorf("grace period %d", *fn.Spec.TerminationGracePeriodSeconds)
	}
	if len(res.Steps) != 4 || !strings.Contains(res.Steps[0], "with min 3 until the switch") {
		t.Errorf("steps: %q", res.Steps)
	}
}

func TestFunctionToService(t *testing.T) {
	p := newPlane(service(1, 1))
	if _, err := converter(p).Convert(context.Background(), p, v1.KindService, "prod", "web", v1.ConvertRequest{To: "function"}); err != nil {
		t.Fatal(err)
	}
	p.log = nil
	res, err := converter(p).Convert(context.Background(), p, v1.KindFunction, "prod", "web", v1.ConvertRequest{To: "service"})
	if err != nil {
		t.Fatal(err)
	}
	svc := res.Object.(*v1.Service)
	if *svc.Spec.Replicas != 1 || *svc.Spec.TerminationGracePeriodSeconds != v1.DefaultTerminationGracePeriodSeconds {
		t.Errorf("service %+v", svc.Spec)
	}
	if strings.Join(p.log, ", ") != "apply Service/prod/web, delete Function/prod/web" {
		t.Errorf("sequence %v", p.log)
	}
}

// TestFailedConversionLeavesTheOldOne: a new one that cannot start is
// removed again and the old one keeps serving.
func TestFailedConversionLeavesTheOldOne(t *testing.T) {
	p := newPlane(service(2, 2))
	p.missing = true
	_, err := converter(p).Convert(context.Background(), p, v1.KindService, "prod", "web", v1.ConvertRequest{To: "function"})
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "so it was removed and service web keeps serving") || !strings.Contains(err.Error(), `image "nope"`) {
		t.Fatalf("error: %v", err)
	}
	if strings.Join(p.log, ", ") != "apply Function/prod/web, delete Function/prod/web" {
		t.Errorf("sequence %v", p.log)
	}
	if _, ok := p.objs[key(v1.KindService, "prod", "web")]; !ok {
		t.Error("the service is gone")
	}

	// A timeout does the same.
	p = newPlane(service(2, 2))
	c := New(Config{Routes: neverRouted{}, Poll: time.Millisecond})
	_, err = c.Convert(context.Background(), p, v1.KindService, "prod", "web", v1.ConvertRequest{To: "function", Timeout: "50ms"})
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "not ready and routed within 50ms") {
		t.Fatalf("error: %v", err)
	}
	if _, ok := p.objs[key(v1.KindFunction, "prod", "web")]; ok {
		t.Error("the function that timed out is still there")
	}
}

type neverRouted struct{}

func (neverRouted) Routed(string, string) (gateway.Target, bool) { return gateway.Target{}, false }

func TestConvertRefuses(t *testing.T) {
	withVolume := service(1, 1)
	withVolume.Spec.Volumes = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
	fn := &v1.Function{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "cron", Environment: "prod"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "x"}, Triggers: []v1.Trigger{{Cron: "@every 1m"}}}}
	for _, tc := range []struct {
		name     string
		p        *plane
		backend  string
		from, nm string
		to       string
		kind     string
		want     string
	}{
		{"volumes", newPlane(withVolume), "local", v1.KindService, "web", "function", v1.ErrInvalid, "mounts volumes (data at /data)"},
		{"triggers", newPlane(fn), "local", v1.KindFunction, "cron", "service", v1.ErrInvalid, "has triggers"},
		{"same kind", newPlane(service(1, 1)), "local", v1.KindService, "web", "service", v1.ErrConflict, "already a Service"},
		{"already converted", newPlane(fn), "local", v1.KindService, "cron", "function", v1.ErrConflict, "cron is already a Function"},
		{"unknown", newPlane(), "local", v1.KindService, "web", "function", v1.ErrNotFound, `no Service "web" in environment "prod"`},
		{"bad kind", newPlane(service(1, 1)), "local", v1.KindService, "web", "lambda", v1.ErrInvalid, "neither function nor service"},
		{"kubernetes", newPlane(service(1, 1)), "kubernetes", v1.KindService, "web", "function", v1.ErrUnavailable, "share one Deployment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{Routes: tc.p, Backend: tc.backend, Poll: time.Millisecond})
			_, err := c.Convert(context.Background(), tc.p, tc.from, "prod", tc.nm, v1.ConvertRequest{To: tc.to})
			if v1.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (%s), want %s %q", err, v1.KindOf(err), tc.kind, tc.want)
			}
			if len(tc.p.log) != 0 {
				t.Errorf("it changed something: %v", tc.p.log)
			}
		})
	}
}
