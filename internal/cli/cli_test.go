package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// isolateConfig keeps the developer's own client.json and BERTH_* out of
// the tests, and gives them a client config with a gateway address.
func isolateConfig(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client.json")
	if err := os.WriteFile(path, []byte(`{"addr":"http://127.0.0.1:1","token":"from-file","gateway":"127.0.0.1:8080"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BERTH_CONFIG", path)
	t.Setenv("BERTH_ADDR", "")
	t.Setenv("BERTH_TOKEN", "")
}

type result struct {
	stdout, stderr string
	code           int
	err            error
}

// syncBuffer is written by the command and read by the test while the
// command runs (logs -f); wrote says when there is something new.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wrote: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitContains waits, up to a deadline, until b holds want.
func (b *syncBuffer) waitContains(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		select {
		case <-b.wrote:
		case <-deadline:
			t.Fatalf("output never contained %q; got:\n%s", want, b.String())
		}
	}
}

// run executes berth with args against addr (the fake's URL unless
// overridden with --addr in args), as main would, and collects the output.
func runCtx(ctx context.Context, t *testing.T, addr, stdin string, out *syncBuffer, args ...string) result {
	t.Helper()
	errOut := newSyncBuffer()
	o := &options{out: out, errOut: errOut, now: func() time.Time { return testNow }, pollInterval: time.Millisecond}
	root := newRootCommand(o)
	root.SetArgs(append([]string{"--addr", addr, "--token", "s3cret"}, args...))
	root.SetIn(strings.NewReader(stdin))
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(errOut, "error: %v\n", err)
	}
	return result{stdout: out.String(), stderr: errOut.String(), code: ExitCode(err), err: err}
}

func run(t *testing.T, f *testAPI, args ...string) result {
	t.Helper()
	return runCtx(context.Background(), t, f.URL(), "", newSyncBuffer(), args...)
}

func runStdin(t *testing.T, f *testAPI, stdin string, args ...string) result {
	t.Helper()
	return runCtx(context.Background(), t, f.URL(), stdin, newSyncBuffer(), args...)
}

func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %v\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
	}
}

func meta(env, name string, ago time.Duration) v1.ObjectMeta {
	return v1.ObjectMeta{Name: name, Environment: env, UID: "uid-" + name, ResourceVersion: 7, Generation: 1, CreationTimestamp: testNow.Add(-ago)}
}

func tm(kind string) v1.TypeMeta { return v1.TypeMeta{APIVersion: v1.APIVersion, Kind: kind} }

const (
	digest124 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digest125 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// seedShop stores what a server would hold a while after deploying a web
// service (mid-way through its second rollout) and an api service.
func seedShop(f *testAPI) {
	web := &v1.Service{
		TypeMeta: tm(v1.KindService),
		Metadata: meta("default", "web", 3*time.Minute+20*time.Second),
		Spec: v1.ServiceSpec{
			Replicas: ptr[int32](3),
			Template: v1.Template{
				Image:     "nginx:1.25",
				Port:      8080,
				Env:       []v1.EnvVar{{Name: "MODE", Value: "prod"}},
				Resources: v1.Resources{CPU: "500m", Memory: "128Mi", Pids: 1024},
				ReadinessProbe: &v1.Probe{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: 8080},
					PeriodSeconds: 10, TimeoutSeconds: 1, FailureThreshold: 3, SuccessThreshold: 1},
				Volumes:                       []v1.VolumeMount{{Name: "data", MountPath: "/var/lib/web"}},
				TerminationGracePeriodSeconds: ptr[int64](30),
			},
			Strategy: v1.UpdateStrategy{MaxSurge: ptr[int32](1), MaxUnavailable: ptr[int32](0)},
			Route:    &v1.Route{Path: "/shop", StripPrefix: true},
		},
		Status: v1.ServiceStatus{
			ObservedGeneration: 2, Revision: 2, ImageDigest: digest125,
			Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3,
			Instances: []v1.InstanceStatus{
				{Name: "web-2-aaaaa", Revision: 2, Phase: v1.PhaseRunning, Ready: true, IP: "10.89.0.5", Port: 8080, StartedAt: testNow.Add(-3 * time.Minute)},
				{Name: "web-2-bbbbb", Revision: 2, Phase: v1.PhaseRunning, Ready: true, IP: "10.89.0.6", Port: 8080, StartedAt: testNow.Add(-2 * time.Minute)},
				{Name: "web-2-ccccc", Revision: 2, Phase: v1.PhaseBackoff, IP: "", Restarts: 3,
					LastExit: &v1.ExitInfo{Code: 1, Reason: "Error", At: testNow.Add(-45 * time.Second)}},
			},
			Conditions: []v1.Condition{
				{Type: v1.ConditionAvailable, Status: true, Reason: "MinimumReplicasAvailable"},
				{Type: v1.ConditionProgressing, Status: true, Reason: "RollingUpdate", Message: "2 of 3 ready"},
			},
		},
	}
	web.Metadata.Generation = 2
	web.Metadata.Labels = map[string]string{"app": "shop", "tier": "front"}

	api := &v1.Service{
		TypeMeta: tm(v1.KindService),
		Metadata: meta("staging", "api", 5*time.Hour+12*time.Minute),
		Spec: v1.ServiceSpec{Replicas: ptr[int32](1), Template: v1.Template{Image: "registry.local/api:v7", Port: 9000,
			Resources: v1.Resources{CPU: "500m", Memory: "256Mi", Pids: 1024}}},
		Status: v1.ServiceStatus{ObservedGeneration: 1, Revision: 1, ImageDigest: digest124, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1},
	}

	inst := func(name string, ago time.Duration, st v1.InstanceStatus) *v1.Instance {
		return &v1.Instance{TypeMeta: tm(v1.KindInstance), Metadata: meta("default", name, ago),
			Spec: v1.InstanceSpec{Owner: "web", OwnerKind: v1.KindService, Revision: 2}, Status: st}
	}
	rev := func(n int64, image, digest, cause string, ago time.Duration) *v1.Revision {
		return &v1.Revision{TypeMeta: tm(v1.KindRevision), Metadata: meta("default", v1.RevisionName("web", n), ago),
			Spec: v1.RevisionSpec{Owner: "web", OwnerKind: v1.KindService, Number: n, Image: image, ImageDigest: digest,
				Template: v1.Template{Image: image, Port: 8080}, ChangeCause: cause}}
	}
	event := func(name, typ, reason, msg string, ago time.Duration) *v1.Event {
		return &v1.Event{TypeMeta: tm(v1.KindEvent), Metadata: meta("default", name, ago),
			Object: "Service/web", Type: typ, Reason: reason, Message: msg, Time: testNow.Add(-ago)}
	}
	f.seed(
		&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "default", 4*24*time.Hour), Status: v1.EnvironmentStatus{Subnet: "10.89.0.0/24", Bridge: "berth0"}},
		&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "staging", 2*time.Hour), Spec: v1.EnvironmentSpec{AllowFrom: []string{"default"}}, Status: v1.EnvironmentStatus{Subnet: "10.89.1.0/24", Bridge: "berth1"}},
		web, api,
		inst("web-2-aaaaa", 3*time.Minute, web.Status.Instances[0]),
		inst("web-2-bbbbb", 2*time.Minute, web.Status.Instances[1]),
		inst("web-2-ccccc", 90*time.Second, web.Status.Instances[2]),
		rev(1, "nginx:1.24", digest124, "apply", 4*24*time.Hour),
		rev(2, "nginx:1.25", digest125, "apply", 3*time.Minute+20*time.Second),
		event("web.1", "Normal", "RevisionCreated", "created revision 2 (nginx:1.25)", 3*time.Minute+20*time.Second),
		event("web.2", "Normal", "ScalingUp", "started instance web-2-ccccc", 90*time.Second),
		event("web.3", "Warning", "BackOff", "instance web-2-ccccc exited with code 1; restarting in 40s", 45*time.Second),
	)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestTablesGolden(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	f.images.set(
		v1.Image{Name: "docker.io/library/nginx:1.25", Digest: digest125, Size: 67_300_000},
		v1.Image{Name: "registry.local/api:v7", Digest: digest124, Size: 8_912},
	)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"get_services", []string{"get", "services"}},
		{"get_services_all", []string{"get", "svc", "-A"}},
		{"get_services_wide", []string{"get", "service", "-o", "wide"}},
		{"get_service_name", []string{"get", "svc/web", "-o", "name"}},
		{"get_instances", []string{"get", "inst"}},
		{"get_revisions", []string{"get", "rev"}},
		{"get_environments", []string{"get", "env"}},
		{"get_events", []string{"get", "events"}},
		{"describe_service", []string{"describe", "service", "web"}},
		{"rollout_history", []string{"rollout", "history", "web"}},
		{"image_ls", []string{"image", "ls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, f, tc.args...)
			mustSucceed(t, r)
			checkGolden(t, tc.name, r.stdout)
		})
	}
}

func TestGetEmptyListSaysSoOnStderr(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	r := run(t, f, "get", "services", "-e", "dev")
	mustSucceed(t, r)
	if r.stdout != "" || r.stderr != "No resources found in dev environment.\n" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	// Machines asked for JSON get an empty List, not a sentence.
	r = run(t, f, "get", "services", "-o", "json")
	mustSucceed(t, r)
	var l v1.List
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || l.Kind != "List" || len(l.Items) != 0 {
		t.Errorf("want an empty List, got %q (%v)", r.stdout, err)
	}
}

func TestGetUnknownKindIsUsageError(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	r := run(t, f, "get", "deployments")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2", r.code)
	}
	for _, want := range []string{`"deployments"`, "services (svc)", "environments (env)", "events (ev)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if len(f.Requests()) != 0 {
		t.Errorf("a usage error sent requests: %v", f.Requests())
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const envDev = `apiVersion: berth.dev/v1
kind: Environment
metadata:
  name: dev
`

const svcWeb = `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
  environment: dev
spec:
  image: nginx:1.25
  replicas: 2
`

func TestApplyDirectoryWithBadDocumentSendsNothing(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	dir := writeFiles(t, map[string]string{
		"1-env.yaml": envDev,
		// Document 2 has a field no Service has: a decode error.
		"2-services.yaml": svcWeb + "---\n" + strings.Replace(svcWeb, "name: web", "name: api", 1) + "  replica: 3\n",
		// Document 3 decodes but fails validation (after an empty document
		// and a good one), so its number must still be right.
		"3-more.yml": "---\n" + strings.Replace(svcWeb, "name: web", "name: db", 1) + "---\n# nothing here\n---\n" +
			strings.Replace(svcWeb, "replicas: 2", "replicas: -1", 1),
		"README.md": "not a manifest",
	})
	r := run(t, f, "apply", "-f", dir)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	if reqs := f.Requests(); len(reqs) != 0 {
		t.Fatalf("apply sent %d requests despite a bad document: %v", len(reqs), reqs)
	}
	want2 := "error: " + filepath.Join(dir, "2-services.yaml") + " (document 2): "
	want3 := "error: " + filepath.Join(dir, "3-more.yml") + " (document 3): spec.replicas: "
	if !strings.Contains(r.stderr, want2) || !strings.Contains(r.stderr, "replica") {
		t.Errorf("stderr lacks %q:\n%s", want2, r.stderr)
	}
	if !strings.Contains(r.stderr, want3) {
		t.Errorf("stderr lacks %q:\n%s", want3, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
}

func TestApplyEnvironmentsFirstThenUnchangedThenConfigured(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	// The service sorts first; the environment must still go first.
	dir := writeFiles(t, map[string]string{"a-web.yaml": svcWeb, "b-env.json": `{"apiVersion":"berth.dev/v1","kind":"Environment","metadata":{"name":"dev"}}`})
	r := run(t, f, "apply", "-f", dir)
	mustSucceed(t, r)
	if want := "environment/dev created\nservice/web created\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	reqs := f.Requests()
	if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "PUT /api/v1/environments/dev") ||
		!strings.HasPrefix(reqs[1], "PUT /api/v1/environments/dev/services/web") {
		t.Errorf("requests: %v", reqs)
	}

	r = run(t, f, "apply", "-f", dir)
	mustSucceed(t, r)
	if want := "environment/dev unchanged\nservice/web unchanged\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	r = runStdin(t, f, strings.Replace(svcWeb, "replicas: 2", "replicas: 4", 1), "apply", "-f", "-")
	mustSucceed(t, r)
	if want := "service/web configured\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	r = runStdin(t, f, strings.Replace(svcWeb, "replicas: 2", "replicas: 5", 1), "apply", "-f", "-", "--dry-run")
	mustSucceed(t, r)
	if want := "service/web configured (dry run)\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	var svc v1.Service
	mustSucceed(t, getJSON(t, f, &svc, "get", "svc", "web", "-e", "dev"))
	if *svc.Spec.Replicas != 4 || svc.Metadata.Generation != 2 {
		t.Errorf("stored replicas %d generation %d, want 4 and 2 (dry run must not store)", *svc.Spec.Replicas, svc.Metadata.Generation)
	}
}

func TestApplyEnvironmentFlag(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	f.seed(&v1.Environment{TypeMeta: tm(v1.KindEnvironment), Metadata: meta("", "qa", time.Hour)})
	noEnv := strings.Replace(svcWeb, "  environment: dev\n", "", 1)
	r := runStdin(t, f, noEnv, "apply", "-f", "-", "-e", "qa")
	mustSucceed(t, r)
	if reqs := f.Requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "PUT /api/v1/environments/qa/services/web") {
		t.Errorf("requests: %v", reqs)
	}
	// A manifest that names another environment than -e is a mistake.
	r = runStdin(t, f, svcWeb, "apply", "-f", "-", "-e", "qa")
	if r.code != 3 || !strings.Contains(r.stderr, "<stdin> (document 1): metadata.environment") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	// The server's refusal (missing environment) is reported per object.
	r = runStdin(t, f, svcWeb, "apply", "-f", "-")
	if r.code != 5 || !strings.Contains(r.stderr, "error: service/web: metadata.environment: ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func getJSON(t *testing.T, f *testAPI, into any, args ...string) result {
	t.Helper()
	r := run(t, f, append(args, "-o", "json")...)
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), into); err != nil {
			t.Fatalf("decode %q: %v", r.stdout, err)
		}
	}
	return r
}

func TestOutputJSONAndYAMLRoundTrip(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	var got v1.Service
	mustSucceed(t, getJSON(t, f, &got, "get", "svc", "web"))
	var stored v1.Service
	f.get(v1.KindService, "default", "web", &stored)
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(stored)
	if !bytes.Equal(a, b) {
		t.Fatalf("-o json is not the stored object:\n%s\n%s", a, b)
	}
	if got.Status.ReadyReplicas != 2 || len(got.Status.Instances) != 3 {
		t.Errorf("status missing from -o json: %+v", got.Status)
	}

	// What get prints, apply takes back, unchanged: one object, a List,
	// in JSON and in YAML.
	for _, args := range [][]string{
		{"get", "svc", "web", "-o", "json"},
		{"get", "svc", "web", "-o", "yaml"},
		{"get", "svc", "-o", "json"},
		{"get", "svc", "-A", "-o", "yaml"},
		{"get", "env", "-o", "yaml"},
	} {
		r := run(t, f, args...)
		mustSucceed(t, r)
		back := runStdin(t, f, r.stdout, "apply", "-f", "-")
		mustSucceed(t, back)
		for _, line := range strings.Split(strings.TrimSpace(back.stdout), "\n") {
			if !strings.HasSuffix(line, " unchanged") {
				t.Errorf("%v re-applied: %q", args, back.stdout)
			}
		}
	}
}

func TestExitCodes(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	for kind, code := range map[string]int{
		v1.ErrInvalid: 3, v1.ErrTooLarge: 3, v1.ErrUnauthorized: 4, v1.ErrForbidden: 4,
		v1.ErrNotFound: 5, v1.ErrConflict: 6, v1.ErrUnavailable: 7, v1.ErrInternal: 1,
	} {
		f.mu.Lock()
		f.failWith = map[string]*v1.Error{"GET /api/v1/environments/default/services/web": {Kind: kind, Message: "forced " + kind}}
		f.mu.Unlock()
		r := run(t, f, "get", "svc", "web")
		if r.code != code || !strings.Contains(r.stderr, "error: forced "+kind) {
			t.Errorf("%s: exit %d (want %d), stderr %q", kind, r.code, code, r.stderr)
		}
		if got := ExitCode(fmt.Errorf("wrapped: %w", v1.Errorf(kind, "x"))); got != code {
			t.Errorf("ExitCode(%s) = %d, want %d", kind, got, code)
		}
	}

	if r := run(t, f, "get", "svc", "nope"); r.code != 5 {
		t.Errorf("missing service: exit %d", r.code)
	}
	if r := runCtx(context.Background(), t, f.URL(), "", newSyncBuffer(), "--token", "wrong", "get", "svc"); r.code != 4 {
		t.Errorf("wrong token: exit %d, %s", r.code, r.stderr)
	}

	down := newTestAPI(t)
	addr := down.URL()
	down.srv.Close()
	r := runCtx(context.Background(), t, addr, "", newSyncBuffer(), "get", "svc")
	if r.code != 7 || !strings.Contains(r.stderr, addr) || !strings.Contains(r.stderr, "berth server") {
		t.Errorf("server down: exit %d, stderr %q", r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"get"},
		{"get", "svc", "web", "extra"},
		{"get", "svc", "web", "-A"},
		{"apply"},
		{"frobnicate"},
		{"get", "svc", "--no-such-flag"},
		{"get", "svc", "-o", "xml"},
		{"rollout", "status"},
	} {
		if r := run(t, f, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, r.code, r.stderr)
		}
	}
	if got := ExitCode(nil); got != 0 {
		t.Errorf("ExitCode(nil) = %d", got)
	}
}

func TestLogsFollowStreams(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	f.writeLog("default", "web", "web-2-aaaaa", "listening on :8080")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newSyncBuffer()
	done := make(chan result, 1)
	go func() {
		done <- runCtx(ctx, t, f.URL(), "", out, "logs", "web", "-f", "--tail", "10", "--since", "5m", "--timestamps")
	}()
	out.waitContains(t, "listening on :8080")
	// A line that appears after the command started arrives while it
	// runs, from an instance that started since, too.
	f.writeLog("default", "web", "web-2-bbbbb", "GET / 200")
	out.waitContains(t, "GET / 200")
	if !strings.Contains(out.String(), "[web-2-bbbbb] ") {
		t.Errorf("the new instance's line is not prefixed with its name:\n%s", out.String())
	}

	reqs := f.Requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0], "follow=1") || !strings.Contains(reqs[0], "tail=10") ||
		!strings.Contains(reqs[0], "since=5m") || !strings.Contains(reqs[0], "timestamps=1") {
		t.Errorf("request: %v", reqs)
	}
	// Ctrl-C ends a follow without an error.
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("exit %d after cancel: %v", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f did not stop when its context ended")
	}
}

func TestLogsWithoutFollowEnds(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	f.writeLog("default", "web", "web-2-aaaaa", "a", "b")
	r := run(t, f, "logs", "web", "--instance", "web-2-aaaaa")
	mustSucceed(t, r)
	if r.stdout != "a\nb\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if reqs := f.Requests(); !strings.Contains(reqs[0], "instance=web-2-aaaaa") || strings.Contains(reqs[0], "follow") || strings.Contains(reqs[0], "tail") {
		t.Errorf("request %v", reqs)
	}
}

// rolloutSteps plays a rollout of 3 replicas forward one step per read.
func rolloutSteps() func(*v1.Service) {
	steps := []v1.ServiceStatus{
		{ObservedGeneration: 0},
		{ObservedGeneration: 1, Revision: 1, Replicas: 1, UpdatedReplicas: 1},
		{ObservedGeneration: 1, Revision: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 1},
		{ObservedGeneration: 1, Revision: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 1},
		{ObservedGeneration: 1, Revision: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 2},
		{ObservedGeneration: 1, Revision: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3},
	}
	i := 0
	return func(svc *v1.Service) {
		svc.Status = steps[min(i, len(steps)-1)]
		i++
	}
}

func TestApplyWaitPollsUntilReady(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	f.onGetService = rolloutSteps()
	r := runStdin(t, f, envDev+"---\n"+strings.Replace(svcWeb, "replicas: 2", "replicas: 3", 1), "apply", "-f", "-", "--wait")
	mustSucceed(t, r)
	want := "Waiting for service/web: waiting for the controller to see generation 1 (it has seen 0)…\n" +
		"Waiting for service/web: 1 of 3 replicas updated to revision 1…\n" +
		"Waiting for service/web: 1 of 3 updated replicas ready…\n" +
		"Waiting for service/web: 2 of 3 updated replicas ready…\n"
	if r.stderr != want {
		t.Errorf("progress on stderr:\n%s\nwant (each line once, only on change):\n%s", r.stderr, want)
	}
}

func TestApplyWaitTimesOut(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	f.onGetService = func(svc *v1.Service) {
		svc.Status = v1.ServiceStatus{ObservedGeneration: 1, Revision: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 1,
			Instances: []v1.InstanceStatus{{Name: "web-1-xyz", Phase: v1.PhaseBackoff, LastExit: &v1.ExitInfo{Code: 137, Reason: "OOMKilled"}}}}
	}
	r := runStdin(t, f, envDev+"---\n"+strings.Replace(svcWeb, "replicas: 2", "replicas: 3", 1), "apply", "-f", "-", "--wait", "--timeout", "100ms")
	if r.code != 8 {
		t.Fatalf("exit %d, want 8; stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"timed out after 100ms waiting for service/web", "1 of 3 updated replicas ready", "web-1-xyz is Backoff, last exit OOMKilled (137)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestRolloutStatusAndUndo(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	f.onGetService = func(svc *v1.Service) { svc.Status.ReadyReplicas = svc.Status.UpdatedReplicas }
	r := run(t, f, "rollout", "status", "web")
	mustSucceed(t, r)
	if r.stdout != "service \"web\" successfully rolled out\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	f.onGetService = nil

	r = run(t, f, "rollout", "undo", "web")
	mustSucceed(t, r)
	if r.stdout != "service/web rolled back\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	var svc v1.Service
	mustSucceed(t, getJSON(t, f, &svc, "get", "svc", "web"))
	if svc.Spec.Image != "nginx:1.24" {
		t.Errorf("after undo image %q, want nginx:1.24", svc.Spec.Image)
	}
	if r := run(t, f, "rollout", "undo", "web", "--to-revision", "9"); r.code != 5 {
		t.Errorf("undo to a missing revision: exit %d", r.code)
	}
}

func TestDelete(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	seedShop(f)
	r := run(t, f, "delete", "svc", "web")
	mustSucceed(t, r)
	if r.stdout != "service \"web\" deleted\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if r := run(t, f, "get", "svc", "web"); r.code != 5 {
		t.Errorf("get after delete: exit %d", r.code)
	}

	dir := writeFiles(t, map[string]string{"a.yaml": envDev + "---\n" + svcWeb})
	mustSucceed(t, run(t, f, "apply", "-f", dir))
	r = run(t, f, "delete", "-f", dir)
	mustSucceed(t, r)
	if want := "service/web deleted\nenvironment/dev deleted\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", -time.Second: "0s", -5 * time.Second: "<invalid>", 45 * time.Second: "45s", 119 * time.Second: "119s",
		3 * time.Minute: "3m", 3*time.Minute + 20*time.Second: "3m20s", 42 * time.Minute: "42m",
		2 * time.Hour: "120m", 5*time.Hour + 12*time.Minute: "5h12m", 20 * time.Hour: "20h",
		4 * 24 * time.Hour: "4d", 50 * time.Hour: "2d2h", 30 * 24 * time.Hour: "30d", 3 * 365 * 24 * time.Hour: "3y",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestApplyOutputFormats(t *testing.T) {
	isolateConfig(t)
	f := newTestAPI(t)
	r := runStdin(t, f, envDev+"---\n"+svcWeb, "apply", "-f", "-", "-o", "name")
	mustSucceed(t, r)
	if r.stdout != "environment/dev\nservice/web\n" {
		t.Errorf("-o name: %q", r.stdout)
	}
	var svc v1.Service
	r = runStdin(t, f, svcWeb, "apply", "-f", "-", "-o", "json")
	mustSucceed(t, r)
	if err := json.Unmarshal([]byte(r.stdout), &svc); err != nil || svc.Metadata.UID == "" || svc.Metadata.Generation != 1 {
		t.Errorf("-o json printed %q (%v)", r.stdout, err)
	}
}
