package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/controller"
	"berth.dev/berth/internal/events"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/network/fake"
	"berth.dev/berth/internal/runtime/mock"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/wasm"
)

// plane is the control plane as the composition root wires it, on the
// local backend with the mock runtime and fake network: the real
// controllers, informers, store and backend, without root, in seconds.
type plane struct {
	t       *testing.T
	st      store.Store
	backend *local.Backend
	net     *fake.Network
	images  *images
	table   *table
	scaler  *scaler
	policy  *policy
	fns     *controller.FunctionController
	routes  *controller.Routes
	wasm    *wasm.Host
	modules *modules
	// gw is a real gateway fed by the routes controller, and canaries
	// judges on its measurements.
	gw       *gateway.Gateway
	canaries *controller.CanaryController
}

func newPlane(t *testing.T) *plane {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &plane{t: t, st: st, net: fake.New(0),
		images: newImages(), table: &table{}, scaler: &scaler{desired: map[string]int{}}, policy: &policy{allow: map[string][]string{}}}
	rec := &events.Recorder{Store: st}
	drv := mock.New()
	p.backend = local.New(local.Config{
		Store: st, Driver: drv, Network: p.net, Events: rec,
		LogDir: filepath.Join(dir, "logs"), VolumeDir: filepath.Join(dir, "volumes"), StateDir: filepath.Join(dir, "run"),
		BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: logger,
	})
	icfg := func(kind string) informer.Config { return informer.Config{Store: st, Kind: kind, Logger: logger} }
	envs := informer.New[v1.Environment](icfg(v1.KindEnvironment))
	svcs := informer.New[v1.Service](icfg(v1.KindService))
	fns := informer.New[v1.Function](icfg(v1.KindFunction))
	revs := controller.NewRevisionInformer(icfg(v1.KindRevision))
	ec := controller.NewEnvironments(controller.EnvironmentConfig{Store: st, Environments: envs, Backend: p.backend, Policy: p.policy, Logger: logger, Resync: 200 * time.Millisecond})
	sc := controller.NewServices(controller.ServiceConfig{Store: st, Services: svcs, Revisions: revs, Backend: p.backend, Images: p.images, Events: rec, Logger: logger, ImageRetry: 100 * time.Millisecond})
	if p.wasm, err = wasm.New(wasm.Config{Logger: logger}); err != nil {
		t.Fatal(err)
	}
	p.modules = &modules{m: map[string][]byte{}}
	p.fns = controller.NewFunctions(controller.FunctionConfig{Store: st, Functions: fns, Revisions: revs, Backend: p.backend, Images: p.images, Events: rec, Scaler: p.scaler, Logger: logger, ImageRetry: 100 * time.Millisecond,
		Wasm: p.wasm, WasmModules: p.modules})
	p.scaler.wake = p.fns.Enqueue
	rc := controller.NewRoutes(controller.RoutesConfig{Services: svcs, Functions: fns, Backend: p.backend, Table: p.table, Wasm: p.wasm, Logger: logger})
	p.gw = gateway.New(gateway.Config{Logger: logger})
	p.table.gw = p.gw
	p.canaries = controller.NewCanaries(controller.CanaryConfig{Store: st, Services: svcs, Functions: fns, Stats: p.gw, Events: rec, Logger: logger, Tick: 20 * time.Millisecond})
	p.routes = rc

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{p.backend.Run, envs.Run, svcs.Run, fns.Run, revs.Run, ec.Run, sc.Run, p.fns.Run, rc.Run, p.canaries.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		drv.Close()
		p.wasm.Close(context.Background())
		st.Close()
	})
	p.create(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: v1.ObjectMeta{Name: "default"}})
	return p
}

func tm(kind string) v1.TypeMeta { return v1.TypeMeta{APIVersion: v1.APIVersion, Kind: kind} }

func (p *plane) create(obj v1.Object) {
	p.t.Helper()
	if err := store.Create(context.Background(), p.st, obj); err != nil {
		p.t.Fatal(err)
	}
}

// update reads obj's kind and key back, applies change and writes it with
// a new generation, as the API server does for a spec change.
func update[T any, PT interface {
	*T
	v1.Object
}](p *plane, key store.Key, change func(PT)) {
	p.t.Helper()
	for {
		obj := PT(new(T))
		if err := store.Get(context.Background(), p.st, key, obj); err != nil {
			p.t.Fatal(err)
		}
		change(obj)
		obj.GetMetadata().Generation++
		err := store.Update(context.Background(), p.st, obj)
		if err == nil {
			return
		}
		if !v1.IsConflict(err) {
			p.t.Fatal(err)
		}
	}
}

// delete deletes the object at key whatever its revision (the
// controllers write statuses meanwhile), as the API server does.
func (p *plane) delete(key store.Key) {
	p.t.Helper()
	if err := p.st.Delete(context.Background(), key, 0); err != nil {
		p.t.Fatal(err)
	}
}

func get[T any, PT interface {
	*T
	v1.Object
}](p *plane, key store.Key) (PT, bool) {
	obj := PT(new(T))
	err := store.Get(context.Background(), p.st, key, obj)
	if v1.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return obj, true
}

func svcKey(name string) store.Key {
	return store.Key{Kind: v1.KindService, Environment: "default", Name: name}
}

func service(name, image string, replicas int32) *v1.Service {
	return &v1.Service{
		TypeMeta: tm(v1.KindService),
		Metadata: v1.ObjectMeta{Name: name, Environment: "default"},
		Spec: v1.ServiceSpec{
			Replicas: &replicas,
			Template: v1.Template{Image: image, Port: 8080,
				ReadinessProbe: &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}, PeriodSeconds: 1}},
		},
	}
}

// waitService waits for the service's status to satisfy cond.
func (p *plane) waitService(name, what string, cond func(*v1.Service) bool) *v1.Service {
	p.t.Helper()
	return testutil.WaitForValue(p.t, 20*time.Second, what, func() (*v1.Service, bool) {
		svc, ok := get[v1.Service](p, svcKey(name))
		return svc, ok && cond(svc)
	})
}

func (p *plane) revisions(kind, name string) []*v1.Revision {
	revs, _, err := store.List[v1.Revision](context.Background(), p.st, v1.KindRevision, "default")
	if err != nil {
		p.t.Fatal(err)
	}
	var out []*v1.Revision
	for _, r := range revs {
		if r.Spec.Owner == name && r.Spec.OwnerKind == kind {
			out = append(out, r)
		}
	}
	return out
}

func (p *plane) eventReasons(object string) []string {
	evs, _, err := store.List[v1.Event](context.Background(), p.st, v1.KindEvent, "default")
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Object == object {
			out = append(out, e.Reason)
		}
	}
	return out
}

func TestServiceRollsOutRollsBackAndGoes(t *testing.T) {
	p := newPlane(t)
	p.images.set("web:1", "sha256:"+strings.Repeat("1", 64))
	p.images.set("web:2", "sha256:"+strings.Repeat("2", 64))
	p.create(service("web", "web:1", 2))
	svc := p.waitService("web", "2 ready instances of revision 1", func(s *v1.Service) bool {
		return s.Status.ReadyReplicas == 2 && s.Status.Revision == 1 && len(s.Status.Instances) == 2
	})
	if svc.Status.ImageDigest != "sha256:"+strings.Repeat("1", 64) {
		t.Errorf("status digest %s, want web:1's", svc.Status.ImageDigest)
	}
	if !hasCondition(svc.Status.Conditions, v1.ConditionProgressing, "RolloutComplete") {
		t.Errorf("conditions %+v, want Progressing RolloutComplete", svc.Status.Conditions)
	}

	update[v1.Service](p, svcKey("web"), func(s *v1.Service) { s.Spec.Template.Image = "web:2" })
	p.waitService("web", "revision 2 rolled out", func(s *v1.Service) bool {
		return s.Status.Revision == 2 && s.Status.UpdatedReplicas == 2 && s.Status.ReadyReplicas == 2 && len(s.Status.Instances) == 2
	})

	// Back to the first template: a new revision with the first one's
	// digest, as a Kubernetes rollback makes.
	update[v1.Service](p, svcKey("web"), func(s *v1.Service) { s.Spec.Template.Image = "web:1" })
	p.waitService("web", "revision 3 rolled out", func(s *v1.Service) bool {
		return s.Status.Revision == 3 && s.Status.UpdatedReplicas == 2 && s.Status.ReadyReplicas == 2 && len(s.Status.Instances) == 2
	})
	revs := p.revisions(v1.KindService, "web")
	if len(revs) != 3 || revs[2].Spec.ImageDigest != revs[0].Spec.ImageDigest || !strings.Contains(revs[2].Spec.ChangeCause, "rollback to revision 1") {
		t.Fatalf("revisions after the rollback: %+v", revs)
	}
	if n := p.images.calls("web:1"); n != 1 {
		t.Errorf("web:1 resolved %d times; a rollback reuses the digest it pinned", n)
	}

	p.delete(svcKey("web"))
	testutil.WaitFor(t, 20*time.Second, "instances and revisions of the deleted service to go", func() bool {
		return len(p.backend.Instances(backend.Ref{Kind: v1.KindService, Environment: "default", Name: "web"})) == 0 &&
			len(p.revisions(v1.KindService, "web")) == 0
	})
	for _, want := range []string{"RevisionCreated", "Created", "Draining", "RolloutComplete"} {
		if !contains(p.eventReasons("Service/web"), want) {
			t.Errorf("no %s event; events: %v", want, p.eventReasons("Service/web"))
		}
	}
}

// A pull that takes minutes holds no worker: other services roll out
// meanwhile, and the slow one follows once its image is there.
func TestSlowImageDoesNotStallOthers(t *testing.T) {
	p := newPlane(t)
	release := p.images.gate("slow:1", "sha256:"+strings.Repeat("5", 64))
	p.create(service("slow", "slow:1", 1))
	// More services than workers, each with its own image.
	for i := range 4 {
		img := fmt.Sprintf("fast%d:1", i)
		p.images.set(img, fmt.Sprintf("sha256:%064d", i))
		p.create(service(fmt.Sprintf("fast%d", i), img, 1))
	}
	for i := range 4 {
		p.waitService(fmt.Sprintf("fast%d", i), "a ready instance while slow:1 is being pulled", func(s *v1.Service) bool { return s.Status.ReadyReplicas == 1 })
	}
	svc := p.waitService("slow", "the status to say the image is being resolved", func(s *v1.Service) bool {
		return hasCondition(s.Status.Conditions, v1.ConditionProgressing, "ResolvingImage")
	})
	if len(svc.Status.Instances) != 0 {
		t.Fatalf("instances before the image is resolved: %+v", svc.Status.Instances)
	}
	release()
	p.waitService("slow", "a ready instance once the pull ended", func(s *v1.Service) bool { return s.Status.ReadyReplicas == 1 })
}

func TestMissingImageIsReportedThenFound(t *testing.T) {
	p := newPlane(t)
	p.create(service("web", "nowhere:1", 1))
	p.waitService("web", "ImageNotFound", func(s *v1.Service) bool {
		for _, c := range s.Status.Conditions {
			if c.Type == v1.ConditionProgressing && c.Reason == "ImageNotFound" && !c.Status && strings.Contains(c.Message, "nowhere:1") {
				return true
			}
		}
		return false
	})
	testutil.WaitFor(t, 10*time.Second, "an ImageNotFound event", func() bool { return contains(p.eventReasons("Service/web"), "ImageNotFound") })
	p.images.set("nowhere:1", "sha256:"+strings.Repeat("9", 64))
	p.waitService("web", "a ready instance once the image exists", func(s *v1.Service) bool { return s.Status.ReadyReplicas == 1 })
}

func TestFunctionScalesWithAStandby(t *testing.T) {
	p := newPlane(t)
	p.images.set("fn:1", "sha256:"+strings.Repeat("f", 64))
	max := int32(3)
	p.create(&v1.Function{
		TypeMeta: tm(v1.KindFunction),
		Metadata: v1.ObjectMeta{Name: "fn", Environment: "default"},
		Spec: v1.FunctionSpec{
			Template: v1.Template{Image: "fn:1", Port: 8080},
			Scale:    v1.FunctionScale{Max: &max},
		},
	})
	ref := backend.Ref{Kind: v1.KindFunction, Environment: "default", Name: "fn"}
	phases := func() map[string]int {
		n := map[string]int{}
		for _, i := range p.backend.Instances(ref) {
			n[i.Phase]++
			if i.Ready && i.Phase != v1.PhaseTerminating {
				n["ready"]++
			}
		}
		return n
	}
	// At zero: one prepared standby, nothing started.
	standby := testutil.WaitForValue(t, 20*time.Second, "one standby at zero", func() (string, bool) {
		l := p.backend.Instances(ref)
		return func() string {
			if len(l) == 1 {
				return l[0].Name
			}
			return ""
		}(), len(l) == 1 && l[0].Phase == v1.PhaseStandby
	})
	// Demand for one: the standby starts (same instance) and a new standby
	// is prepared.
	p.scaler.set("default", "fn", 1)
	testutil.WaitForState(t, 20*time.Second, "the standby started and a new one prepared", func() (bool, string) {
		n := phases()
		started := false
		for _, i := range p.backend.Instances(ref) {
			if i.Name == standby && i.Ready {
				started = true
			}
		}
		return started && n["ready"] == 1 && n[v1.PhaseStandby] == 1, fmt.Sprint(n)
	})
	// At max: no standby.
	p.scaler.set("default", "fn", 3)
	testutil.WaitForState(t, 20*time.Second, "3 ready, no standby", func() (bool, string) {
		n := phases()
		return n["ready"] == 3 && n[v1.PhaseStandby] == 0, fmt.Sprint(n)
	})
	// Back to zero.
	p.scaler.set("default", "fn", 0)
	testutil.WaitForState(t, 20*time.Second, "zero started, one standby", func() (bool, string) {
		n := phases()
		return n["ready"] == 0 && n[v1.PhaseStandby] == 1 && len(p.backend.Instances(ref)) == 1, fmt.Sprint(n)
	})
	fn, _ := get[v1.Function](p, store.Key{Kind: v1.KindFunction, Environment: "default", Name: "fn"})
	if !hasCondition(fn.Status.Conditions, v1.ConditionProgressing, "ScaledToZero") {
		t.Errorf("function conditions %+v, want ScaledToZero", fn.Status.Conditions)
	}
}

func TestRoutesFollowReadyInstances(t *testing.T) {
	p := newPlane(t)
	p.images.set("web:1", "sha256:"+strings.Repeat("1", 64))
	svc := service("web", "web:1", 2)
	svc.Spec.Route = &v1.Route{Path: "/shop", StripPrefix: true}
	p.create(svc)
	target := testutil.WaitForValue(t, 20*time.Second, "web in the table with 2 endpoints", func() (gateway.Target, bool) {
		tg, ok := p.table.target("default", "web")
		return tg, ok && len(tg.Endpoints) == 2
	})
	if target.RoutePath != "/shop" || !target.StripPrefix || target.Kind != v1.KindService {
		t.Errorf("target %+v, want route /shop stripped", target)
	}
	for _, ep := range target.Endpoints {
		res, err := http.Get("http://" + ep.Address + "/ready")
		if err != nil {
			t.Fatalf("endpoint %s: %v", ep.Address, err)
		}
		res.Body.Close()
		if !strings.HasPrefix(ep.ID, "default.web-") {
			t.Errorf("endpoint ID %q, want default.INSTANCE", ep.ID)
		}
	}
	p.delete(svcKey("web"))
	testutil.WaitFor(t, 20*time.Second, "web to leave the table", func() bool {
		_, ok := p.table.target("default", "web")
		return !ok
	})
}

// TestSameNameRoutesOlderUntilNewerIsReady: while a conversion has a
// Service and a Function of one name, the gateway keeps serving the one
// that was there until the other has a ready instance, and then only it.
func TestSameNameRoutesOlderUntilNewerIsReady(t *testing.T) {
	p := newPlane(t)
	p.images.set("web:1", "sha256:"+strings.Repeat("1", 64))
	svc := service("web", "web:1", 2)
	svc.Spec.Route = &v1.Route{Path: "/web"}
	p.create(svc)
	routedAs := func(kind string, endpoints int) func() bool {
		return func() bool {
			tg, ok := p.table.target("default", "web")
			rt, rok := p.routes.Routed("default", "web")
			return ok && rok && tg.Kind == kind && len(tg.Endpoints) == endpoints && rt.Kind == kind
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the service routed with 2 endpoints", routedAs(v1.KindService, 2))

	// The function's image resolves only later: until then it has no
	// ready instance and the service keeps the route.
	one := int32(1)
	p.create(&v1.Function{
		TypeMeta: tm(v1.KindFunction),
		Metadata: v1.ObjectMeta{Name: "web", Environment: "default"},
		Spec: v1.FunctionSpec{
			Template: v1.Template{Image: "fn-web:1", Port: 8080},
			Scale:    v1.FunctionScale{Min: &one},
			Route:    &v1.Route{Path: "/web"},
		},
	})
	// Once the function controller has seen it (its image is not found
	// yet), the table has been rebuilt with both: the service keeps it.
	testutil.WaitFor(t, 20*time.Second, "the function's ImageNotFound", func() bool {
		fn, ok := get[v1.Function](p, store.Key{Kind: v1.KindFunction, Environment: "default", Name: "web"})
		return ok && hasCondition(fn.Status.Conditions, v1.ConditionProgressing, "ImageNotFound")
	})
	if !routedAs(v1.KindService, 2)() {
		tg, _ := p.table.target("default", "web")
		t.Fatalf("the function without a ready instance took the route: %+v", tg)
	}
	n := 0
	for _, tg := range p.table.snapshot() {
		if tg.Name == "web" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d targets named web in the table, want 1", n)
	}
	p.images.set("fn-web:1", "sha256:"+strings.Repeat("2", 64))
	testutil.WaitForState(t, 20*time.Second, "the function routed once ready", func() (bool, string) {
		tg, _ := p.table.target("default", "web")
		rt, _ := p.routes.Routed("default", "web")
		fn, _ := get[v1.Function](p, store.Key{Kind: v1.KindFunction, Environment: "default", Name: "web"})
		return routedAs(v1.KindFunction, 1)(), fmt.Sprintf("table %s with %d endpoints, routed %s; function instances %+v", tg.Kind, len(tg.Endpoints), rt.Kind, fn.Status.Instances)
	})
	// Its revisions continue the service's numbers: names are NAME-N for
	// both kinds.
	if revs := p.revisions(v1.KindFunction, "web"); len(revs) != 1 || revs[0].Spec.Number != 2 {
		t.Errorf("function revisions %+v, want one numbered 2 after the service's 1", revs)
	}
	p.delete(svcKey("web"))
	testutil.WaitFor(t, 20*time.Second, "the service gone, the function still routed", func() bool {
		return routedAs(v1.KindFunction, 1)() && len(p.backend.Instances(backend.Ref{Kind: v1.KindService, Environment: "default", Name: "web"})) == 0
	})
}

func TestEnvironmentLifecycle(t *testing.T) {
	p := newPlane(t)
	p.create(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: v1.ObjectMeta{Name: "staging"},
		Spec: v1.EnvironmentSpec{AllowFrom: []string{"default"}}})
	env := testutil.WaitForValue(t, 20*time.Second, "staging's status", func() (*v1.Environment, bool) {
		e, ok := get[v1.Environment](p, store.Key{Kind: v1.KindEnvironment, Name: "staging"})
		return e, ok && e.Status.Subnet != ""
	})
	if !strings.HasPrefix(env.Status.Subnet, "127.") || env.Status.Gateway == "" {
		t.Errorf("status %+v, want the fake network's subnet and gateway", env.Status)
	}
	if got := p.policy.get("staging"); len(got) != 1 || got[0] != "default" {
		t.Errorf("gateway policy for staging = %v, want [default]", got)
	}
	p.delete(store.KeyOf(env))
	testutil.WaitFor(t, 20*time.Second, "staging's network to be freed and its policy forgotten", func() bool {
		return !contains(p.net.Environments(), "staging") && p.policy.get("staging") == nil
	})
}

func hasCondition(conds []v1.Condition, typ, reason string) bool {
	for _, c := range conds {
		if c.Type == typ && c.Reason == reason {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// images resolves refs it was told of; a gated ref blocks until released,
// as a slow pull does; anything else is NotFound.
type images struct {
	mu      sync.Mutex
	digests map[string]string
	gates   map[string]chan struct{}
	n       map[string]int
}

func newImages() *images {
	return &images{digests: map[string]string{}, gates: map[string]chan struct{}{}, n: map[string]int{}}
}

func (i *images) set(ref, digest string) {
	i.mu.Lock()
	i.digests[ref] = digest
	i.mu.Unlock()
}

func (i *images) gate(ref, digest string) (release func()) {
	ch := make(chan struct{})
	i.mu.Lock()
	i.digests[ref], i.gates[ref] = digest, ch
	i.mu.Unlock()
	return func() { close(ch) }
}

func (i *images) calls(ref string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.n[ref]
}

func (i *images) ResolveImageIn(ctx context.Context, env, ref string) (string, error) {
	i.mu.Lock()
	i.n[ref]++
	gate := i.gates[ref]
	i.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if d, ok := i.digests[ref]; ok {
		return d, nil
	}
	return "", v1.NotFound("image %q not found", ref)
}

// table keeps the last routing table, and passes it on to a real
// gateway when the test has one.
type table struct {
	mu      sync.Mutex
	targets []gateway.Target
	gw      *gateway.Gateway
}

func (t *table) SetTargets(ts []gateway.Target) {
	t.mu.Lock()
	t.targets = ts
	gw := t.gw
	t.mu.Unlock()
	if gw != nil {
		gw.SetTargets(ts)
	}
}

func (t *table) snapshot() []gateway.Target {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]gateway.Target(nil), t.targets...)
}

func (t *table) target(env, name string) (gateway.Target, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tg := range t.targets {
		if tg.Environment == env && tg.Name == name {
			return tg, true
		}
	}
	return gateway.Target{}, false
}

// scaler is an autoscaler whose decisions the test makes.
type scaler struct {
	mu      sync.Mutex
	desired map[string]int
	wake    func(env, name string)
}

func (s *scaler) set(env, name string, n int) {
	s.mu.Lock()
	s.desired[env+"/"+name] = n
	s.mu.Unlock()
	s.wake(env, name)
}

func (s *scaler) Set(env, name string, p controller.ScaleParams) {}
func (s *scaler) Remove(env, name string)                        {}
func (s *scaler) Desired(env, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired[env+"/"+name]
}

// policy records the gateway's access policy.
type policy struct {
	mu    sync.Mutex
	allow map[string][]string
}

func (p *policy) SetAllowFrom(env string, from []string) {
	p.mu.Lock()
	p.allow[env] = from
	p.mu.Unlock()
}

func (p *policy) ForgetEnvironment(env string) {
	p.mu.Lock()
	delete(p.allow, env)
	p.mu.Unlock()
}

func (p *policy) get(env string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allow[env]
}
