// Package backendtest is the conformance suite every backend.Backend must
// pass (as drivertest is for runtime drivers): the local backend on the
// mock runtime and fake network (fast, no root), on containerd and CNI
// (root), and the kubernetes backend on a real cluster.
//
// The suite plays the controllers' part: it writes the revisions to the
// store, calls Apply again on every change the backend reports (as a
// level-triggered controller does), and checks what Instances says and
// what the instances answer over HTTP.
package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/telemetry/logs"
)

// Harness is what a backend's test gives the suite.
type Harness struct {
	// Backend is running (its Run started) and synced.
	Backend backend.Backend
	// Store is the Berth store the backend was given: revisions are
	// written there before Apply, as the controllers do.
	Store store.Store
	// Image is a reference to the echo test image (testimage) that the
	// backend can run, and Digest its digest.
	Image, Digest string
	// Timeout bounds each wait (default 60s: a loaded 2-core machine and a
	// real cluster are slow).
	Timeout time.Duration
	// Reach, when set, rewrites an instance's address for the test's own
	// HTTP calls (a cluster's pods may be reached some other way); nil
	// calls IP:port directly.
	Reach func(inst v1.InstanceStatus) string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	b := make([]byte, 3)
	rand.Read(b)
	s := &suite{h: h, env: "bt" + hex.EncodeToString(b), changed: make(chan struct{}, 1)}
	h.Backend.Watch(func(backend.Ref) {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	})
	if !t.Run("Environment", s.environment) {
		return
	}
	t.Run("RollingUpdate", s.rollingUpdate)
	t.Run("ScaleToZeroAndBack", s.scaleToZero)
	t.Run("CrashIsReported", s.crash)
	t.Run("Logs", s.logs)
	t.Run("RemoveEnvironment", s.removeEnvironment)
}

type suite struct {
	h       Harness
	env     string
	changed chan struct{}
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) environment(t *testing.T) {
	ctx := s.ctx(t)
	env := &v1.Environment{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment},
		Metadata: v1.ObjectMeta{Name: s.env},
	}
	if err := store.Create(ctx, s.h.Store, env); err != nil {
		t.Fatal(err)
	}
	st, err := s.h.Backend.EnsureEnvironment(ctx, env)
	if err != nil {
		t.Fatalf("EnsureEnvironment: %v", err)
	}
	if st == (v1.EnvironmentStatus{}) {
		t.Fatal("EnsureEnvironment returned an empty status")
	}
	again, err := s.h.Backend.EnsureEnvironment(ctx, env)
	if err != nil || again != st {
		t.Fatalf("EnsureEnvironment is not idempotent: %+v then %+v (%v)", st, again, err)
	}
	envs, err := s.h.Backend.Environments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(envs, s.env) {
		t.Fatalf("Environments() = %v, missing %s", envs, s.env)
	}
}

// revision stores revision n of a workload of the echo image.
func (s *suite) revision(t *testing.T, ref backend.Ref, n int64, tmpl v1.Template) *v1.Revision {
	t.Helper()
	tmpl.Image = s.h.Image
	if tmpl.Port == 0 {
		tmpl.Port = 8080
	}
	if tmpl.ReadinessProbe == nil {
		tmpl.ReadinessProbe = &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}, PeriodSeconds: 1}
	}
	grace := int64(5)
	tmpl.TerminationGracePeriodSeconds = &grace
	rev := &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(ref.Name, n), Environment: ref.Environment},
		Spec: v1.RevisionSpec{
			Owner: ref.Name, OwnerKind: ref.Kind, Number: n,
			Image: s.h.Image, ImageDigest: s.h.Digest, Template: tmpl, Hash: fmt.Sprintf("h%d", n),
		},
	}
	if err := store.Create(s.ctx(t), s.h.Store, rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// converge calls Apply on every change until done says the instances are
// what the test waits for, calling check on every state seen.
func (s *suite) converge(t *testing.T, w backend.Workload, what string, done func([]v1.InstanceStatus) bool, check func([]v1.InstanceStatus)) []v1.InstanceStatus {
	t.Helper()
	ctx := s.ctx(t)
	deadline := time.Now().Add(s.h.Timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last []v1.InstanceStatus
	for {
		if err := s.h.Backend.Apply(ctx, w); err != nil && !v1.IsConflict(err) {
			t.Fatalf("Apply: %v", err)
		}
		last = s.h.Backend.Instances(w.Ref)
		if check != nil {
			check(last)
		}
		if done(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; instances: %s", s.h.Timeout, what, describe(last))
		}
		select {
		case <-s.changed:
		case <-tick.C:
		}
	}
}

func (s *suite) remove(t *testing.T, ref backend.Ref) {
	t.Helper()
	ctx := s.ctx(t)
	deadline := time.Now().Add(s.h.Timeout)
	for {
		gone, err := s.h.Backend.Remove(ctx, ref)
		if err != nil && !v1.IsConflict(err) {
			t.Fatalf("Remove: %v", err)
		}
		if gone && len(s.h.Backend.Instances(ref)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Remove: instances left after %v: %s", s.h.Timeout, describe(s.h.Backend.Instances(ref)))
		}
		select {
		case <-s.changed:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readyOf counts ready instances of revision rev (0: any).
func readyOf(insts []v1.InstanceStatus, rev int64) int {
	n := 0
	for _, i := range insts {
		if backend.Ready(i) && (rev == 0 || i.Revision == rev) {
			n++
		}
	}
	return n
}

func (s *suite) rollingUpdate(t *testing.T) {
	ref := backend.Ref{Kind: v1.KindService, Environment: s.env, Name: "web"}
	rev1 := s.revision(t, ref, 1, v1.Template{Env: []v1.EnvVar{{Name: "VERSION", Value: "one"}}})
	w := backend.Workload{Ref: ref, Revision: rev1, Replicas: 2, MaxSurge: 1, MaxUnavailable: 0}
	insts := s.converge(t, w, "2 ready instances of revision 1", func(l []v1.InstanceStatus) bool {
		return readyOf(l, 1) == 2 && len(l) == 2
	}, nil)
	for _, i := range insts {
		if body := s.get(t, i, "/"); !strings.Contains(body, `"version":"one"`) {
			t.Fatalf("instance %s answered %q, want version one", i.Name, body)
		}
	}

	// A new revision rolls out without ever dropping below 2 ready.
	rev2 := s.revision(t, ref, 2, v1.Template{Env: []v1.EnvVar{{Name: "VERSION", Value: "two"}}})
	w.Revision = rev2
	minReady := 2
	insts = s.converge(t, w, "2 ready instances of revision 2 and nothing else", func(l []v1.InstanceStatus) bool {
		return readyOf(l, 2) == 2 && len(l) == 2
	}, func(l []v1.InstanceStatus) {
		minReady = min(minReady, readyOf(l, 0))
		if n := live(l); n > 3 {
			t.Errorf("%d instances (not terminating) during the rollout, more than replicas+maxSurge=3: %s", n, describe(l))
		}
	})
	if minReady < 2 {
		t.Errorf("ready instances fell to %d during the rollout (maxUnavailable 0)", minReady)
	}
	for _, i := range insts {
		if body := s.get(t, i, "/"); !strings.Contains(body, `"version":"two"`) {
			t.Fatalf("instance %s answered %q, want version two", i.Name, body)
		}
	}
	s.remove(t, ref)
}

func (s *suite) scaleToZero(t *testing.T) {
	ref := backend.Ref{Kind: v1.KindFunction, Environment: s.env, Name: "fn"}
	rev := s.revision(t, ref, 1, v1.Template{})
	w := backend.Workload{Ref: ref, Revision: rev, Replicas: 1, MaxSurge: 1}
	s.converge(t, w, "1 ready instance", func(l []v1.InstanceStatus) bool { return readyOf(l, 1) == 1 }, nil)
	w.Replicas = 0
	s.converge(t, w, "no instance left", func(l []v1.InstanceStatus) bool { return len(l) == 0 }, nil)
	w.Replicas = 1
	insts := s.converge(t, w, "1 ready instance again", func(l []v1.InstanceStatus) bool { return readyOf(l, 1) == 1 }, nil)
	for _, i := range insts {
		if backend.Ready(i) {
			s.get(t, i, "/ready")
		}
	}
	s.remove(t, ref)
}

func (s *suite) crash(t *testing.T) {
	ref := backend.Ref{Kind: v1.KindService, Environment: s.env, Name: "crash"}
	rev := s.revision(t, ref, 1, v1.Template{Args: []string{"-exit", "3"}})
	w := backend.Workload{Ref: ref, Revision: rev, Replicas: 1, MaxSurge: 1}
	insts := s.converge(t, w, "the instance's exit with code 3 to be reported", func(l []v1.InstanceStatus) bool {
		return len(l) == 1 && l[0].LastExit != nil && l[0].LastExit.Code == 3
	}, func(l []v1.InstanceStatus) {
		if readyOf(l, 0) > 0 {
			t.Errorf("an instance that exits at once is reported ready: %s", describe(l))
		}
	})
	if insts[0].Restarts < 1 {
		// The exit is reported with the restart it causes.
		s.converge(t, w, "a restart to be counted", func(l []v1.InstanceStatus) bool { return len(l) == 1 && l[0].Restarts >= 1 }, nil)
	}
	s.remove(t, ref)
}

func (s *suite) logs(t *testing.T) {
	ref := backend.Ref{Kind: v1.KindService, Environment: s.env, Name: "talk"}
	rev := s.revision(t, ref, 1, v1.Template{})
	w := backend.Workload{Ref: ref, Revision: rev, Replicas: 1, MaxSurge: 1}
	insts := s.converge(t, w, "1 ready instance", func(l []v1.InstanceStatus) bool { return readyOf(l, 1) == 1 }, nil)
	s.get(t, insts[0], "/log?msg=hello-from-the-suite")
	var out strings.Builder
	deadline := time.Now().Add(s.h.Timeout)
	for {
		out.Reset()
		err := s.h.Backend.Logs(s.ctx(t), logs.Query{Environment: s.env, Owner: "talk", Prefix: true}, &out)
		if err == nil && strings.Contains(out.String(), "hello-from-the-suite") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the line logged never came out of Logs: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "["+insts[0].Name+"]") {
		t.Errorf("log lines are not prefixed with the instance name %s:\n%s", insts[0].Name, out.String())
	}
	stats, err := s.h.Backend.Stats(s.ctx(t), ref)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st, ok := stats[insts[0].Name]; ok && st.MemoryBytes == 0 {
		t.Errorf("Stats of %s: zero memory for a running instance", insts[0].Name)
	}
	s.remove(t, ref)
}

func (s *suite) removeEnvironment(t *testing.T) {
	ctx := s.ctx(t)
	ref := backend.Ref{Kind: v1.KindService, Environment: s.env, Name: "last"}
	rev := s.revision(t, ref, 1, v1.Template{})
	w := backend.Workload{Ref: ref, Revision: rev, Replicas: 1, MaxSurge: 1}
	s.converge(t, w, "1 instance", func(l []v1.InstanceStatus) bool { return len(l) == 1 }, nil)
	if err := s.h.Backend.RemoveEnvironment(ctx, s.env); !v1.IsConflict(err) {
		t.Fatalf("RemoveEnvironment with an instance left: %v, want Conflict", err)
	}
	s.remove(t, ref)
	deadline := time.Now().Add(s.h.Timeout)
	for {
		err := s.h.Backend.RemoveEnvironment(ctx, s.env)
		if err == nil {
			break
		}
		if !v1.IsConflict(err) || time.Now().After(deadline) {
			t.Fatalf("RemoveEnvironment once empty: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	envs, err := s.h.Backend.Environments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if contains(envs, s.env) {
		t.Errorf("Environments() still lists %s after RemoveEnvironment", s.env)
	}
}

// get calls an instance over HTTP and returns the body of a 200.
func (s *suite) get(t *testing.T, i v1.InstanceStatus, path string) string {
	t.Helper()
	addr := net.JoinHostPort(i.IP, strconv.Itoa(int(i.Port)))
	if s.h.Reach != nil {
		addr = s.h.Reach(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s on instance %s: %v", path, i.Name, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on instance %s: %d %s", path, i.Name, res.StatusCode, body)
	}
	return string(body)
}

// live counts the instances that are not terminating.
func live(l []v1.InstanceStatus) int {
	n := 0
	for _, i := range l {
		if i.Phase != v1.PhaseTerminating {
			n++
		}
	}
	return n
}

func describe(l []v1.InstanceStatus) string {
	if len(l) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(l))
	for _, i := range l {
		p := fmt.Sprintf("%s(rev %d, %s, ready=%v, ip=%s, restarts=%d", i.Name, i.Revision, i.Phase, i.Ready, i.IP, i.Restarts)
		if i.LastExit != nil {
			p += fmt.Sprintf(", last exit %d %s", i.LastExit.Code, i.LastExit.Reason)
		}
		if i.Message != "" {
			p += ", " + i.Message
		}
		parts = append(parts, p+")")
	}
	return strings.Join(parts, "; ")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
