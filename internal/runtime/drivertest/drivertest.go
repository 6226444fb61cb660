package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/testutil"
)

// Env is what the suite needs from the test that runs it.
type Env struct {
	// ImageTar is a docker-save or OCI tarball of the echo test image
	// (testimage.Build), tagged ImageName.
	ImageTar  string
	ImageName string
	// LogDir receives the containers' logs.
	LogDir string
	// NetNS returns the path of a fresh network namespace with loopback up,
	// removed by the test's cleanup; nil skips the HTTP checks.
	NetNS func(t *testing.T) string
	// Reopen returns a second, independent Driver on the same runtime (a
	// new Berth process, as far as the driver can tell); nil skips the
	// takeover check.
	Reopen func(t *testing.T) runtime.Driver
}

// Timeouts generous enough for a loaded 2-core CI machine.
const (
	waitTimeout = 30 * time.Second
	echoPort    = "8080"
)

type suite struct {
	d     runtime.Driver
	env   Env
	pfx   string
	exits *exitLog
}

// Run runs the conformance suite against d.
func Run(t *testing.T, d runtime.Driver, env Env) {
	if env.ImageTar == "" || env.ImageName == "" || env.LogDir == "" {
		t.Fatal("drivertest: Env needs ImageTar, ImageName and LogDir")
	}
	b := make([]byte, 3)
	rand.Read(b)
	s := &suite{d: d, env: env, pfx: "dt" + hex.EncodeToString(b)}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := d.Exits(ctx)
	if err != nil {
		t.Fatalf("Exits: %v", err)
	}
	s.exits = newExitLog(ch)

	// Everything below needs the image.
	if !t.Run("ImportAndResolve", s.importAndResolve) {
		return
	}
	t.Run("MissingImage", s.missingImage)
	t.Run("RunAndLog", s.runAndLog)
	t.Run("StopHonoursSIGTERM", s.stopGraceful)
	t.Run("StopKillsAfterGrace", s.stopKills)
	t.Run("ExitCodeReported", s.exitCode)
	t.Run("OOMKillReported", s.oomKill)
	t.Run("PidsLimitStopsForkBomb", s.pidsLimit)
	t.Run("CapabilitiesDropped", s.capsDropped)
	t.Run("FreezeAndThaw", s.freezeThaw)
	t.Run("DuplicateCreateConflicts", s.duplicate)
	t.Run("DeleteIsIdempotent", s.deleteIdempotent)
	t.Run("NewDriverTakesOver", s.takeover)
	t.Run("RemoveImage", s.removeImage)
}

func (s *suite) id(name string) string { return s.pfx + "-" + name }

func (s *suite) spec(name string) runtime.ContainerSpec {
	id := s.id(name)
	return runtime.ContainerSpec{
		ID:      id,
		Image:   s.env.ImageName,
		LogPath: filepath.Join(s.env.LogDir, id+".log"),
		Labels:  map[string]string{"berth.dev/test": name},
	}
}

// create makes and starts spec's container and deletes it at cleanup.
func (s *suite) run(t *testing.T, spec runtime.ContainerSpec) {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.d.Delete(context.Background(), spec.ID); err != nil {
			t.Errorf("cleanup Delete(%s): %v", spec.ID, err)
		}
	})
	if err := s.d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.d.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func (s *suite) importAndResolve(t *testing.T) {
	ctx := context.Background()
	f, err := os.Open(s.env.ImageTar)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := s.d.ImportImage(ctx, f)
	if err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if len(imgs) == 0 {
		t.Fatal("ImportImage returned no image")
	}
	img, err := s.d.ResolveImage(ctx, s.env.ImageName)
	if err != nil {
		t.Fatalf("ResolveImage(%s): %v", s.env.ImageName, err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") {
		t.Errorf("digest = %q", img.Digest)
	}
	if len(img.Entrypoint) == 0 || img.Entrypoint[0] != "/echo" {
		t.Errorf("entrypoint = %q, want the image config's", img.Entrypoint)
	}
	if !contains(img.Env, "PORT="+echoPort) {
		t.Errorf("env = %q, want the image config's", img.Env)
	}
	again, err := s.d.ResolveImage(ctx, s.env.ImageName)
	if err != nil || again.Digest != img.Digest {
		t.Errorf("second resolve: %v digest %q, want %q", err, again.Digest, img.Digest)
	}
	// A revision pins name@digest; that must resolve to the same image.
	named, err := reference.ParseNormalizedNamed(s.env.ImageName)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := s.d.ResolveImage(ctx, named.Name()+"@"+img.Digest)
	if err != nil || pinned.Digest != img.Digest {
		t.Errorf("ResolveImage(name@digest): %v digest %q, want %q", err, pinned.Digest, img.Digest)
	}
	list, err := s.d.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	found := false
	for _, l := range list {
		found = found || l.Digest == img.Digest
	}
	if !found {
		t.Errorf("ListImages does not list the imported image: %+v", list)
	}
}

func (s *suite) missingImage(t *testing.T) {
	ctx := context.Background()
	const missing = "berth.test/no-such-image:v0"
	if _, err := s.d.ResolveImage(ctx, missing); !v1.IsNotFound(err) {
		t.Errorf("ResolveImage(missing) = %v, want NotFound", err)
	}
	spec := s.spec("missing")
	spec.Image = missing
	err := s.d.Create(ctx, spec)
	if !v1.IsNotFound(err) || !strings.Contains(err.Error(), "no-such-image") {
		t.Errorf("Create with missing image = %v, want NotFound naming the image", err)
	}
	if _, err := s.d.Inspect(ctx, spec.ID); !v1.IsNotFound(err) {
		t.Errorf("failed Create left a container behind: Inspect = %v", err)
	}
}

func (s *suite) runAndLog(t *testing.T) {
	ctx := context.Background()
	spec := s.spec("run")
	spec.Env = []string{"BERTH_REVISION=r7", "EXTRA=1"}
	spec.Hostname = "web-1"
	spec.MemoryLimit = 64 << 20
	spec.CPUMillis = 500
	var nsPath string
	if s.env.NetNS != nil {
		nsPath = s.env.NetNS(t)
		spec.NetNSPath = nsPath
	}
	t.Cleanup(func() { _ = s.d.Delete(context.Background(), spec.ID) })

	t0 := time.Now()
	if err := s.d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	tCreate := time.Since(t0)
	st, err := s.d.Inspect(ctx, spec.ID)
	if err != nil || st.Status != runtime.StatusCreated {
		t.Errorf("after Create: %+v %v, want created", st, err)
	}
	t1 := time.Now()
	if err := s.d.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tStart := time.Since(t1)
	waitLog(t, spec.LogPath, "listening on :"+echoPort)
	t.Logf("timing: create %v, start %v, start→listening logged %v (total %v)",
		tCreate.Round(time.Millisecond), tStart.Round(time.Millisecond),
		time.Since(t1).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	st, err = s.d.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if st.Status != runtime.StatusRunning || st.Pid == 0 {
		t.Errorf("Inspect = %+v, want running with a pid", st)
	}
	if st.Labels["berth.dev/test"] != "run" {
		t.Errorf("labels = %v", st.Labels)
	}
	if sr, ok := s.d.(runtime.StatsReader); ok {
		stats, err := sr.Stats(ctx, spec.ID)
		if err != nil {
			t.Errorf("Stats: %v", err)
		} else if stats.MemoryBytes == 0 || stats.CPUUsageNanos == 0 {
			t.Errorf("Stats = %+v, want some memory and CPU used", stats)
		}
	}

	if nsPath == "" {
		t.Log("no network namespace given: skipping the HTTP checks")
		return
	}
	c := nsClient(nsPath)
	base := "http://127.0.0.1:" + echoPort
	code, body, err := get(c, base+"/")
	if err != nil || code != 200 {
		t.Fatalf("GET /: %d %v", code, err)
	}
	var info map[string]string
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("GET / body %q: %v", body, err)
	}
	if info["hostname"] != "web-1" || info["revision"] != "r7" {
		t.Errorf("GET / = %v, want hostname web-1 and revision r7", info)
	}
	if _, body, _ := get(c, base+"/env"); !strings.Contains(body, "EXTRA=1") || !strings.Contains(body, "PORT="+echoPort) {
		t.Errorf("env lacks spec env or image env:\n%s", body)
	}
	if _, body, _ := get(c, base+"/file?path=/etc/hosts"); !strings.Contains(body, "web-1") {
		t.Errorf("/etc/hosts does not name the hostname:\n%s", body)
	}
	if _, _, err := get(c, base+"/log?msg=hello-from-the-container"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, spec.LogPath, "hello-from-the-container")

	// An in-flight request finishes during a graceful stop.
	type res struct {
		code int
		err  error
	}
	inflight := make(chan res, 1)
	go func() {
		code, _, err := get(c, base+"/sleep?ms=1500")
		inflight <- res{code, err}
	}()
	testutil.WaitFor(t, waitTimeout, "the sleep request to arrive", func() bool {
		_, _, err := get(c, base+"/ready")
		return err == nil
	})
	if err := s.d.Stop(ctx, spec.ID, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if r := <-inflight; r.err != nil || r.code != 200 {
		t.Errorf("in-flight request during stop: %d %v", r.code, r.err)
	}
}

func (s *suite) stopGraceful(t *testing.T) {
	ctx := context.Background()
	spec := s.spec("stop")
	s.run(t, spec)
	waitLog(t, spec.LogPath, "listening on")
	t0 := time.Now()
	if err := s.d.Stop(ctx, spec.ID, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("Stop took %v: SIGTERM not delivered or not honoured", d)
	}
	st, err := s.d.Inspect(ctx, spec.ID)
	if err != nil || st.Status != runtime.StatusStopped || st.ExitCode != 0 || st.OOMKilled {
		t.Errorf("after Stop: %+v %v, want stopped with code 0", st, err)
	}
	waitLog(t, spec.LogPath, "shutting down")
	if e := s.exits.wait(t, spec.ID); e.Code != 0 || e.OOMKilled {
		t.Errorf("exit = %+v, want code 0", e)
	}
	// Stopping a stopped task is fine.
	if err := s.d.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.d.Stop(ctx, s.id("never-created"), time.Second); err != nil {
		t.Errorf("Stop of a missing container: %v", err)
	}
}

func (s *suite) stopKills(t *testing.T) {
	ctx := context.Background()
	spec := s.spec("stubborn")
	var c *http.Client
	if s.env.NetNS != nil {
		spec.NetNSPath = s.env.NetNS(t)
		c = nsClient(spec.NetNSPath)
	}
	s.run(t, spec)
	waitLog(t, spec.LogPath, "listening on")
	grace := time.Duration(0)
	if c != nil {
		// On SIGTERM the echo server waits for in-flight requests; one
		// that lasts a minute outlives the grace period.
		go get(c, "http://127.0.0.1:"+echoPort+"/sleep?ms=60000")
		waitLog(t, spec.LogPath, "sleeping 60000 ms")
		grace = time.Second
	}
	t0 := time.Now()
	if err := s.d.Stop(ctx, spec.ID, grace); err != nil {
		t.Fatalf("Stop(grace %v): %v", grace, err)
	}
	if d := time.Since(t0); d < grace || d > grace+10*time.Second {
		t.Errorf("Stop(grace %v) took %v", grace, d)
	}
	if e := s.exits.wait(t, spec.ID); e.Code != 137 {
		t.Errorf("exit = %+v, want 137 (SIGKILL)", e)
	}
}

func (s *suite) exitCode(t *testing.T) {
	ctx := context.Background()
	// Args replace the image's cmd and keep its entrypoint.
	spec := s.spec("exit3")
	spec.Args = []string{"-exit", "3"}
	s.run(t, spec)
	if e := s.exits.wait(t, spec.ID); e.Code != 3 || e.OOMKilled || e.At.IsZero() {
		t.Errorf("exit = %+v, want code 3 with a time", e)
	}
	st, err := s.d.Inspect(ctx, spec.ID)
	if err != nil || st.Status != runtime.StatusStopped || st.ExitCode != 3 {
		t.Errorf("Inspect = %+v %v, want stopped with code 3", st, err)
	}
	waitLog(t, spec.LogPath, "exiting with 3")

	// Command replaces the entrypoint.
	spec = s.spec("exit5")
	spec.Command = []string{"/echo", "-exit", "5"}
	s.run(t, spec)
	if e := s.exits.wait(t, spec.ID); e.Code != 5 {
		t.Errorf("exit = %+v, want code 5", e)
	}
}

func (s *suite) oomKill(t *testing.T) {
	ctx := context.Background()
	spec := s.spec("oom")
	spec.MemoryLimit = 32 << 20
	spec.Args = []string{"-hog-mb", "100"}
	s.run(t, spec)
	e := s.exits.wait(t, spec.ID)
	if !e.OOMKilled || e.Code != 137 {
		t.Errorf("exit = %+v, want OOM-killed with 137", e)
	}
	st, err := s.d.Inspect(ctx, spec.ID)
	if err != nil || !st.OOMKilled {
		t.Errorf("Inspect = %+v %v, want OOMKilled", st, err)
	}
}

// pidsLimit: a fork bomb in a container stops at the container's pids
// limit (fork fails with EAGAIN) instead of filling the node's process
// table.
func (s *suite) pidsLimit(t *testing.T) {
	const limit, tries = 64, 500
	spec := s.spec("pids")
	spec.PidsLimit = limit
	// Should the limit not hold, the memory limit still keeps the bomb
	// from hurting the machine the suite runs on.
	spec.MemoryLimit = 256 << 20
	spec.Args = []string{"-fork-bomb", strconv.Itoa(tries)}
	s.run(t, spec)
	e := s.exits.wait(t, spec.ID)
	out := waitLog(t, spec.LogPath, "fork bomb: ")
	_, line, _ := strings.Cut(out, "fork bomb: ")
	line, _, _ = strings.Cut(line, "\n")
	var started int
	if _, err := fmt.Sscanf(line, "%d started", &started); err != nil || e.Code != 0 {
		t.Fatalf("exit %+v, log:\n%s", e, out)
	}
	if started >= limit || !strings.Contains(line, "resource temporarily unavailable") {
		t.Errorf("with a pids limit of %d, the bomb reports: %s", limit, line)
	}
	t.Logf("pids limit %d: %s", limit, line)
}

// Capability bits (linux/capability.h) that a workload must not have.
var forbiddenCaps = map[string]uint{
	"NET_RAW": 13, "NET_ADMIN": 12, "SYS_ADMIN": 21, "SYS_PTRACE": 19,
	"SYS_MODULE": 16, "MKNOD": 27, "SYS_CHROOT": 18, "AUDIT_WRITE": 29,
}

func (s *suite) capsDropped(t *testing.T) {
	spec := s.spec("caps")
	spec.Args = []string{"-print-caps"}
	s.run(t, spec)
	if e := s.exits.wait(t, spec.ID); e.Code != 0 {
		t.Fatalf("exit = %+v", e)
	}
	out := waitLog(t, spec.LogPath, "NoNewPrivs")
	for _, field := range []string{"CapEff", "CapBnd"} {
		v := statusField(out, field)
		mask, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			t.Fatalf("%s = %q in log:\n%s", field, v, out)
		}
		for name, bit := range forbiddenCaps {
			if mask&(1<<bit) != 0 {
				t.Errorf("%s %s has CAP_%s", field, v, name)
			}
		}
		if mask&(1<<10) == 0 {
			t.Errorf("%s %s lacks CAP_NET_BIND_SERVICE, which web servers need", field, v)
		}
	}
	if v := statusField(out, "NoNewPrivs"); v != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", v)
	}
}

func (s *suite) duplicate(t *testing.T) {
	spec := s.spec("dup")
	t.Cleanup(func() { _ = s.d.Delete(context.Background(), spec.ID) })
	if err := s.d.Create(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if err := s.d.Create(context.Background(), spec); !v1.IsConflict(err) {
		t.Errorf("second Create = %v, want Conflict", err)
	}
}

func (s *suite) deleteIdempotent(t *testing.T) {
	ctx := context.Background()
	spec := s.spec("del")
	if err := s.d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := s.d.Start(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	// Delete of a running container kills it first.
	for i := 0; i < 2; i++ {
		if err := s.d.Delete(ctx, spec.ID); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := s.d.Delete(ctx, s.id("never-created")); err != nil {
		t.Errorf("Delete of a missing container: %v", err)
	}
	if _, err := s.d.Inspect(ctx, spec.ID); !v1.IsNotFound(err) {
		t.Errorf("Inspect after Delete = %v, want NotFound", err)
	}
	list, err := s.d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == spec.ID {
			t.Errorf("List still has %s", spec.ID)
		}
	}
	// The id is free again.
	if err := s.d.Create(ctx, spec); err != nil {
		t.Errorf("Create after Delete: %v", err)
	}
	if err := s.d.Delete(ctx, spec.ID); err != nil {
		t.Error(err)
	}
}

func (s *suite) takeover(t *testing.T) {
	if s.env.Reopen == nil {
		t.Skip("no Reopen in Env")
	}
	ctx := context.Background()
	spec := s.spec("takeover")
	s.run(t, spec)
	waitLog(t, spec.LogPath, "listening on")

	d2 := s.env.Reopen(t)
	list, err := d2.List(ctx)
	if err != nil {
		t.Fatalf("List on the new driver: %v", err)
	}
	var found *runtime.ContainerState
	for i := range list {
		if list[i].ID == spec.ID {
			found = &list[i]
		}
	}
	if found == nil || found.Status != runtime.StatusRunning || found.Labels["berth.dev/test"] != "takeover" {
		t.Fatalf("new driver sees %+v, want %s running with its labels", found, spec.ID)
	}
	if err := d2.Stop(ctx, spec.ID, 20*time.Second); err != nil {
		t.Fatalf("Stop on the new driver: %v", err)
	}
	waitLog(t, spec.LogPath, "shutting down")
	if st, err := s.d.Inspect(ctx, spec.ID); err != nil || st.Status != runtime.StatusStopped {
		t.Errorf("old driver sees %+v %v, want stopped", st, err)
	}
	if err := d2.Delete(ctx, spec.ID); err != nil {
		t.Errorf("Delete on the new driver: %v", err)
	}
}

func (s *suite) removeImage(t *testing.T) {
	ctx := context.Background()
	if err := s.d.RemoveImage(ctx, s.env.ImageName); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	if _, err := s.d.ResolveImage(ctx, s.env.ImageName); !v1.IsNotFound(err) {
		t.Errorf("ResolveImage after RemoveImage = %v, want NotFound", err)
	}
	if err := s.d.RemoveImage(ctx, s.env.ImageName); !v1.IsNotFound(err) {
		t.Errorf("second RemoveImage = %v, want NotFound", err)
	}
}

// waitLog polls the container's log until it contains want and returns it.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	return testutil.WaitForValue(t, waitTimeout, fmt.Sprintf("%q in %s", want, filepath.Base(path)), func() (string, bool) {
		b, _ := os.ReadFile(path)
		return string(b), strings.Contains(string(b), want)
	})
}

// statusField finds "Field:\tvalue" in /proc/self/status output that may
// be wrapped in log-format prefixes.
func statusField(out, field string) string {
	i := strings.Index(out, field+":")
	if i < 0 {
		return ""
	}
	rest := out[i+len(field)+1:]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(rest)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// exitLog collects exits by container id so subtests can wait for theirs.
type exitLog struct {
	mu    sync.Mutex
	seen  map[string][]runtime.Exit
	added chan struct{}
}

func newExitLog(ch <-chan runtime.Exit) *exitLog {
	l := &exitLog{seen: map[string][]runtime.Exit{}, added: make(chan struct{})}
	go func() {
		for e := range ch {
			l.mu.Lock()
			l.seen[e.ID] = append(l.seen[e.ID], e)
			close(l.added)
			l.added = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *exitLog) wait(t *testing.T, id string) runtime.Exit {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		l.mu.Lock()
		es, added := l.seen[id], l.added
		l.mu.Unlock()
		if len(es) > 1 {
			t.Errorf("%d exits reported for %s, want one: %+v", len(es), id, es)
		}
		if len(es) > 0 {
			return es[0]
		}
		select {
		case <-added:
		case <-timeout:
			t.Fatalf("no exit reported for %s within %v", id, waitTimeout)
		}
	}
}

// freezeThaw: a frozen task answers nobody and reads frozen; thawed, the
// same process answers the request it held; a frozen task can be stopped.
func (s *suite) freezeThaw(t *testing.T) {
	fz, ok := s.d.(runtime.Freezer)
	if !ok {
		t.Skip("the driver is not a runtime.Freezer")
	}
	if s.env.NetNS == nil {
		t.Skip("no network namespace given")
	}
	ctx := context.Background()
	spec := s.spec("freeze")
	nsPath := s.env.NetNS(t)
	spec.NetNSPath = nsPath
	s.run(t, spec)
	c := nsClient(nsPath)
	base := "http://127.0.0.1:" + echoPort
	testutil.WaitFor(t, waitTimeout, "the echo server to answer", func() bool {
		code, _, err := get(c, base+"/ready")
		return err == nil && code == 200
	})
	before, _ := s.d.Inspect(ctx, spec.ID)
	if err := fz.Freeze(ctx, spec.ID); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	st, err := s.d.Inspect(ctx, spec.ID)
	if err != nil || st.Status != runtime.StatusRunning || !st.Frozen {
		t.Fatalf("after Freeze: %+v %v, want running and frozen", st, err)
	}
	type res struct {
		code int
		err  error
	}
	held := make(chan res, 1)
	go func() {
		code, _, err := get(c, base+"/")
		held <- res{code, err}
	}()
	select {
	case r := <-held:
		t.Fatalf("a frozen task answered: %d %v", r.code, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := fz.Thaw(ctx, spec.ID); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	if r := <-held; r.err != nil || r.code != 200 {
		t.Fatalf("the request held while frozen: %d %v", r.code, r.err)
	}
	st, _ = s.d.Inspect(ctx, spec.ID)
	if st.Frozen || st.Pid != before.Pid {
		t.Errorf("after Thaw: %+v, want the same process (pid %d), not frozen", st, before.Pid)
	}
	if err := fz.Thaw(ctx, spec.ID); err != nil {
		t.Errorf("second Thaw: %v", err)
	}
	// Stopping a frozen task must not hang on a signal it cannot take.
	if err := fz.Freeze(ctx, spec.ID); err != nil {
		t.Fatalf("Freeze again: %v", err)
	}
	if err := s.d.Stop(ctx, spec.ID, 5*time.Second); err != nil {
		t.Fatalf("Stop of a frozen task: %v", err)
	}
	if e := s.exits.wait(t, spec.ID); e.Code != 0 {
		t.Errorf("exit of a stopped frozen task = %+v, want code 0 (SIGTERM honoured)", e)
	}
}
