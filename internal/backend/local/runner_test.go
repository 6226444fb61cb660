package local_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// The runner's behaviours, one instance record at a time, on the mock
// runtime: what the agent does is what a user sees in `describe`.

const env = "default"

// runInstance stores revision 1 of owner with tmpl and one instance of it.
func runInstance(t *testing.T, h mockHarness, owner string, tmpl v1.Template, standby bool) *v1.Instance {
	t.Helper()
	ctx := context.Background()
	tmpl.Image = "berth.test/echo:v1"
	if tmpl.Port == 0 {
		tmpl.Port = 8080
	}
	grace := int64(2)
	tmpl.TerminationGracePeriodSeconds = &grace
	rev := &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(owner, 1), Environment: env},
		Spec:     v1.RevisionSpec{Owner: owner, OwnerKind: v1.KindService, Number: 1, Image: tmpl.Image, ImageDigest: h.harness.Digest, Template: tmpl},
	}
	if err := store.Create(ctx, h.harness.Store, rev); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
		Metadata: v1.ObjectMeta{Name: owner + "-a", Environment: env},
		Spec:     v1.InstanceSpec{Owner: owner, OwnerKind: v1.KindService, Revision: 1, Standby: standby},
	}
	if err := store.Create(ctx, h.harness.Store, inst); err != nil {
		t.Fatal(err)
	}
	return inst
}

func status(t *testing.T, h mockHarness, name string) (v1.InstanceStatus, bool) {
	var inst v1.Instance
	err := store.Get(context.Background(), h.harness.Store, store.Key{Kind: v1.KindInstance, Environment: env, Name: name}, &inst)
	if v1.IsNotFound(err) {
		return v1.InstanceStatus{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return inst.Status, true
}

func waitStatus(t *testing.T, h mockHarness, name, what string, cond func(v1.InstanceStatus) bool) v1.InstanceStatus {
	t.Helper()
	return testutil.WaitForValue(t, 20*time.Second, what, func() (v1.InstanceStatus, bool) {
		st, ok := status(t, h, name)
		return st, ok && cond(st)
	})
}

func setSpec(t *testing.T, h mockHarness, name string, change func(*v1.InstanceSpec)) {
	t.Helper()
	for {
		var inst v1.Instance
		if err := store.Get(context.Background(), h.harness.Store, store.Key{Kind: v1.KindInstance, Environment: env, Name: name}, &inst); err != nil {
			t.Fatal(err)
		}
		change(&inst.Spec)
		err := store.Update(context.Background(), h.harness.Store, &inst)
		if err == nil {
			return
		}
		if !v1.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

func TestLivenessFailureRestarts(t *testing.T) {
	h := mockBackend(t)
	runInstance(t, h, "live", v1.Template{
		LivenessProbe: &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/healthz"}, PeriodSeconds: 1, FailureThreshold: 1},
	}, false)
	st := waitStatus(t, h, "live-a", "ready", func(s v1.InstanceStatus) bool { return s.Ready })
	res, err := http.Get(fmt.Sprintf("http://%s:%d/fail-liveness", st.IP, st.Port))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	st = waitStatus(t, h, "live-a", "a restart for the failed liveness probe", func(s v1.InstanceStatus) bool {
		return s.Restarts >= 1 && s.LastExit != nil && s.LastExit.Reason == "LivenessFailed"
	})
	waitStatus(t, h, "live-a", "ready again after the restart", func(s v1.InstanceStatus) bool { return s.Ready })
}

func TestOOMKillIsReported(t *testing.T) {
	h := mockBackend(t)
	runInstance(t, h, "hog", v1.Template{Args: []string{"-hog-mb", "100"}, Resources: v1.Resources{Memory: "64Mi"}}, false)
	st := waitStatus(t, h, "hog-a", "an OOM kill", func(s v1.InstanceStatus) bool { return s.LastExit != nil })
	if st.LastExit.Reason != "OOMKilled" || st.LastExit.Code != 137 || st.Ready {
		t.Fatalf("last exit %+v ready %v, want OOMKilled (137), not ready", st.LastExit, st.Ready)
	}
}

// A missing secret keeps the instance Failed with a message naming it.
func TestMissingSecretFailsTheInstance(t *testing.T) {
	h := mockBackend(t, withSecrets(secretsOf(nil)))
	runInstance(t, h, "sec", v1.Template{Env: []v1.EnvVar{{Name: "PW", ValueFrom: &v1.EnvVarSource{Secret: &v1.KeyRef{Name: "db", Key: "password"}}}}}, false)
	st := waitStatus(t, h, "sec-a", "Failed", func(s v1.InstanceStatus) bool { return s.Phase == v1.PhaseFailed })
	if !strings.Contains(st.Message, "db") {
		t.Fatalf("message %q does not name the secret", st.Message)
	}
	if h.driver.Running() != 0 {
		t.Fatal("a container runs without its secret")
	}
}

func TestSecretReachesTheContainer(t *testing.T) {
	h := mockBackend(t, withSecrets(secretsOf(map[string]string{"db/password": "s3cret"})))
	runInstance(t, h, "sec", v1.Template{Env: []v1.EnvVar{{Name: "PW", ValueFrom: &v1.EnvVarSource{Secret: &v1.KeyRef{Name: "db", Key: "password"}}}}}, false)
	st := waitStatus(t, h, "sec-a", "ready", func(s v1.InstanceStatus) bool { return s.Ready })
	res, err := http.Get(fmt.Sprintf("http://%s:%d/env", st.IP, st.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	fmt.Fprint(&b, readAll(res))
	if !strings.Contains(b.String(), "PW=s3cret") {
		t.Fatalf("env of the instance:\n%s\nwant PW=s3cret", b.String())
	}
}

// A standby is prepared (attached, created) but not started; taking it out
// of standby starts the same instance.
func TestStandbyStartsOnDemand(t *testing.T) {
	h := mockBackend(t)
	runInstance(t, h, "fn", v1.Template{ReadinessProbe: &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}}}, true)
	st := waitStatus(t, h, "fn-a", "standby", func(s v1.InstanceStatus) bool { return s.Phase == v1.PhaseStandby })
	if st.IP == "" || !h.network.Attached(local.ContainerID(env, "fn-a")) {
		t.Fatalf("standby not attached: %+v", st)
	}
	if h.driver.Running() != 0 {
		t.Fatal("a standby's process runs")
	}
	activated := time.Now()
	setSpec(t, h, "fn-a", func(s *v1.InstanceSpec) { s.Standby = false })
	st = waitStatus(t, h, "fn-a", "ready once out of standby", func(s v1.InstanceStatus) bool { return s.Ready && !s.StartedAt.IsZero() })
	// Its start explains itself: no sandbox (prepared ahead), then the
	// task's start and the program's init up to its first ready check.
	p := st.Start
	if p == nil || !p.FromStandby || p.SandboxMS != 0 || p.BeganAt.Before(activated) || p.ReadyAt.Before(p.BeganAt) {
		t.Fatalf("start record %+v: want one from the standby, begun after its activation at %v", p, activated)
	}
	if total := p.ReadyAt.Sub(p.BeganAt); time.Duration((p.StartMS+p.InitMS)*float64(time.Millisecond)) > total+time.Millisecond {
		t.Errorf("start %.3fms + init %.3fms exceed the %v from begin to ready", p.StartMS, p.InitMS, total)
	}
}

// A fresh instance's start record has its sandbox (attach and create).
func TestFreshStartRecordsItsSandbox(t *testing.T) {
	h := mockBackend(t)
	began := time.Now()
	runInstance(t, h, "svc", v1.Template{}, false)
	st := waitStatus(t, h, "svc-a", "ready", func(s v1.InstanceStatus) bool { return s.Ready })
	p := st.Start
	if p == nil || p.FromStandby || p.SandboxMS <= 0 || p.BeganAt.Before(began) || !p.ReadyAt.After(p.BeganAt) {
		t.Fatalf("start record %+v: want a fresh start with its sandbox, begun after %v", p, began)
	}
}

// Draining asks the gateway to drain the endpoint before the process gets
// SIGTERM; then the container, the address and the record go.
func TestDrainThenStop(t *testing.T) {
	d := &drainer{}
	h := mockBackend(t, withDrainer(d))
	runInstance(t, h, "web", v1.Template{}, false)
	waitStatus(t, h, "web-a", "ready", func(s v1.InstanceStatus) bool { return s.Ready })
	setSpec(t, h, "web-a", func(s *v1.InstanceSpec) { s.Draining = true })
	testutil.WaitFor(t, 20*time.Second, "the record to go, in the store and the backend's cache", func() bool {
		_, ok := status(t, h, "web-a")
		return !ok && len(h.backend.Instances(backend.Ref{Kind: v1.KindService, Environment: env, Name: "web"})) == 0
	})
	id := local.ContainerID(env, "web-a")
	if got := d.drained(); len(got) != 1 || got[0] != id {
		t.Fatalf("drained %v, want [%s]", got, id)
	}
	if h.network.Attached(id) || h.driver.Running() != 0 {
		t.Fatal("the container or its address outlived the drained instance")
	}
}

type drainer struct {
	mu  sync.Mutex
	ids []string
}

func (d *drainer) Drain(_ context.Context, id string) error {
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
	return nil
}

func (d *drainer) drained() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.ids...)
}

// secretsOf resolves "name/key" values; a missing one is NotFound.
type secretsOf map[string]string

func (s secretsOf) Resolve(_ context.Context, _ string, refs []v1.ValueRef) (map[v1.ValueRef]string, error) {
	out := map[v1.ValueRef]string{}
	for _, r := range refs {
		v, ok := s[r.Name+"/"+r.Key]
		if !ok {
			return nil, v1.NotFound("secret %q has no key %q", r.Name, r.Key)
		}
		out[r] = v
	}
	return out, nil
}

// A Detach that fails (a CNI plugin's DEL meeting host state it did not
// expect) is tried again: the record of the instance goes only once its
// network is undone, or the namespace, address and host rules would
// outlive it with nothing left to retry them.
func TestFailedDetachIsRetried(t *testing.T) {
	var nw *failingDetach
	h := mockBackend(t, func(c *local.Config) {
		nw = &failingDetach{EnvironmentNetwork: c.Network, fails: 2}
		c.Network = nw
	})
	runInstance(t, h, "web", v1.Template{}, false)
	waitStatus(t, h, "web-a", "ready", func(s v1.InstanceStatus) bool { return s.Ready })
	setSpec(t, h, "web-a", func(s *v1.InstanceSpec) { s.Draining = true })
	testutil.WaitFor(t, 20*time.Second, "the record to go", func() bool {
		_, ok := status(t, h, "web-a")
		return !ok
	})
	id := local.ContainerID(env, "web-a")
	if h.network.Attached(id) {
		t.Fatal("the instance's record went, its address stayed")
	}
	if got := nw.calls(); got != 3 {
		t.Fatalf("Detach called %d times, want 3 (two failures, then success)", got)
	}
}

// failingDetach fails the first fails Detach calls.
type failingDetach struct {
	local.EnvironmentNetwork
	mu    sync.Mutex
	fails int
	n     int
}

func (f *failingDetach) Detach(ctx context.Context, id, env string) error {
	f.mu.Lock()
	f.n++
	fail := f.n <= f.fails
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("detach %q: plugin type=\"bridge\" failed (delete): CHAIN_DEL failed (Device or resource busy)", id)
	}
	return f.EnvironmentNetwork.Detach(ctx, id, env)
}

func (f *failingDetach) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func withStandbyMemory(n int64) option { return func(c *local.Config) { c.StandbyMemory = n } }

// With a memory budget, a standby is started, initialised and frozen
// ahead: it takes no connection while frozen, and waking it is a thaw of
// the same process, with no start and no initialisation on the way.
func TestFrozenStandbyWakesByThaw(t *testing.T) {
	h := mockBackend(t, withStandbyMemory(1<<30))
	runInstance(t, h, "fn", v1.Template{ReadinessProbe: &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}}}, true)
	st := waitStatus(t, h, "fn-a", "a frozen standby", func(s v1.InstanceStatus) bool {
		return s.Phase == v1.PhaseStandby && strings.Contains(s.Message, "frozen")
	})
	id := local.ContainerID(env, "fn-a")
	cs, err := h.driver.Inspect(context.Background(), id)
	if err != nil || cs.Status != "running" || !cs.Frozen {
		t.Fatalf("standby's task %+v (%v): want running and frozen", cs, err)
	}
	if st.Ready {
		t.Fatal("a frozen standby reads ready")
	}
	// The machine's standby memory counts it (the mock's process: 8 MiB).
	if held, n := standbyGauges(t, h); held != 8<<20 || n != 1 {
		t.Fatalf("berth_standby_memory_bytes %v, berth_frozen_standbys %v: want 8 MiB and 1", held, n)
	}
	// Frozen, it answers nobody: the request waits until the thaw.
	answered := make(chan error, 1)
	go func() {
		res, err := http.Get("http://" + st.IP + ":8080/")
		if err == nil {
			res.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a frozen standby answered (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}

	activated := time.Now()
	setSpec(t, h, "fn-a", func(s *v1.InstanceSpec) { s.Standby = false })
	st = waitStatus(t, h, "fn-a", "ready once thawed", func(s v1.InstanceStatus) bool { return s.Ready })
	if err := <-answered; err != nil {
		t.Fatalf("the request held by the frozen standby: %v", err)
	}
	after, _ := h.driver.Inspect(context.Background(), id)
	if after.Pid != cs.Pid || after.Frozen {
		t.Fatalf("woken task %+v: want the same process (pid %d), thawed", after, cs.Pid)
	}
	if held, n := standbyGauges(t, h); held != 0 || n != 0 {
		t.Fatalf("after the thaw: berth_standby_memory_bytes %v, berth_frozen_standbys %v: want 0 and 0", held, n)
	}
	p := st.Start
	if p == nil || !p.Thawed || !p.FromStandby || p.SandboxMS != 0 || p.BeganAt.Before(activated) {
		t.Fatalf("start record %+v: want a thaw, begun after its activation at %v", p, activated)
	}
}

// Past the memory budget a standby waits created, not started.
func TestStandbyOverMemoryBudgetWaitsCreated(t *testing.T) {
	h := mockBackend(t, withStandbyMemory(1)) // the mock's process holds 8 MiB
	runInstance(t, h, "fn", v1.Template{}, true)
	waitStatus(t, h, "fn-a", "a frozen standby", func(s v1.InstanceStatus) bool {
		return s.Phase == v1.PhaseStandby && strings.Contains(s.Message, "frozen")
	})
	runInstance(t, h, "other", v1.Template{}, true)
	st := waitStatus(t, h, "other-a", "a standby", func(s v1.InstanceStatus) bool { return s.Phase == v1.PhaseStandby })
	if strings.Contains(st.Message, "frozen") || h.driver.Running() != 1 {
		t.Fatalf("second standby %+v with %d processes running: want it created only, over the budget", st, h.driver.Running())
	}
}

// A program that dies during its warm-up leaves a created standby, with
// a warning, and its failure shows when a request starts it.
func TestStandbyThatCrashesAtInitWaitsCreated(t *testing.T) {
	h := mockBackend(t, withStandbyMemory(1<<30))
	runInstance(t, h, "fn", v1.Template{Args: []string{"-exit", "3"}}, true)
	st := waitStatus(t, h, "fn-a", "a standby", func(s v1.InstanceStatus) bool { return s.Phase == v1.PhaseStandby })
	if strings.Contains(st.Message, "frozen") {
		t.Fatalf("standby %+v: a program that exits at init was frozen", st)
	}
	testutil.WaitFor(t, 10*time.Second, "no process left running", func() bool { return h.driver.Running() == 0 })
	setSpec(t, h, "fn-a", func(s *v1.InstanceSpec) { s.Standby = false })
	st = waitStatus(t, h, "fn-a", "the exit recorded", func(s v1.InstanceStatus) bool { return s.LastExit != nil })
	if st.LastExit.Code != 3 {
		t.Fatalf("last exit %+v, want code 3", st.LastExit)
	}
}

// storeRevision records revision n of function owner with tmpl.
func storeRevision(t *testing.T, h mockHarness, owner string, n int64, tmpl v1.Template) *v1.Revision {
	t.Helper()
	tmpl.Image = "berth.test/echo:v1"
	tmpl.Port = 8080
	rev := &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(owner, n), Environment: env},
		Spec:     v1.RevisionSpec{Owner: owner, OwnerKind: v1.KindFunction, Number: n, Image: tmpl.Image, ImageDigest: h.harness.Digest, Template: tmpl},
	}
	if err := store.Create(context.Background(), h.harness.Store, rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// Right after a deploy, until the new revision's standby is prepared, the
// previous revision's prepared standby stays and wakes for a request: a
// new revision goes live when it can answer, not before. Once the new one
// is prepared, the old one goes.
func TestPreviousStandbyServesUntilTheNewOneIsPrepared(t *testing.T) {
	h := mockBackend(t)
	ctx := context.Background()
	ref := backend.Ref{Kind: v1.KindFunction, Environment: env, Name: "fn"}
	rev1 := storeRevision(t, h, "fn", 1, v1.Template{})
	apply := func(rev *v1.Revision, replicas int) {
		t.Helper()
		if err := h.backend.Apply(ctx, backend.Workload{Ref: ref, Revision: rev, Replicas: replicas, MaxSurge: 1, Standbys: 1}); err != nil {
			t.Fatal(err)
		}
	}
	apply(rev1, 0)
	instances := func() []v1.InstanceStatus { return h.backend.Instances(ref) }
	testutil.WaitFor(t, 20*time.Second, "revision 1's standby to be prepared", func() bool {
		for _, i := range instances() {
			if i.Revision == 1 && i.Phase == v1.PhaseStandby {
				return true
			}
		}
		return false
	})
	// Revision 2 cannot be prepared (a value it needs is missing): its
	// standby never gets there.
	rev2 := storeRevision(t, h, "fn", 2, v1.Template{Env: []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{Secret: &v1.KeyRef{Name: "missing", Key: "k"}}}}})
	apply(rev2, 0)
	apply(rev2, 1) // a request comes
	st := testutil.WaitForValue(t, 20*time.Second, "an instance ready", func() (v1.InstanceStatus, bool) {
		for _, i := range instances() {
			if i.Ready {
				return i, true
			}
		}
		return v1.InstanceStatus{}, false
	})
	if st.Revision != 1 || st.Start == nil || !st.Start.FromStandby {
		t.Fatalf("woken instance %+v: want revision 1's prepared standby", st)
	}
}

// standbyGauges reads the backend's standby memory and frozen count.
func standbyGauges(t *testing.T, h mockHarness) (held, n float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.backend.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "berth_standby_memory_bytes":
			held = mf.GetMetric()[0].GetGauge().GetValue()
		case "berth_frozen_standbys":
			n = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return held, n
}
