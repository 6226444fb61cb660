// Package e2e tests Berth from the outside: the built binary, its CLI and
// HTTP API, a private containerd, real CNI networks and real containers.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/testutil/k8s"
	"berth.dev/berth/internal/testutil/testimage"
)

// Set up once by TestMain.
var (
	berthBin   string
	socket     string
	imageV1    string // tarball of berth.test/echo:v1
	imageV2    string // tarball of berth.test/echo:v2
	skipReason string
	// nextPool hands each server its own subnet pool and bridge names so
	// servers in one run (and a real server on the machine) never clash.
	nextPool = 0
)

const (
	echoV1 = "berth.test/echo:v1"
	echoV2 = "berth.test/echo:v2"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := testutil.MissingPrerequisites(); reason != "" {
		skipReason = reason
		return m.Run()
	}
	work, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)

	berthBin = filepath.Join(work, "berth")
	build := exec.Command("go", "build", "-o", berthBin, "../cmd/berth")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build berth:", err)
		return 1
	}
	ctx := context.Background()
	if imageV1, err = testimage.Build(ctx, work, echoV1, testimage.Options{Version: "v1"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if imageV2, err = testimage.Build(ctx, work, echoV2, testimage.Options{Version: "v2"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sock, stop, err := testutil.StartContainerd(filepath.Join(work, "ctrd"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start containerd:", err)
		return 1
	}
	defer stop()
	socket = sock
	// k8s.Main shares one test cluster among the kubernetes scenarios (or
	// uses $BERTH_KUBECONFIG's).
	return k8s.Main(m)
}

func requireSystem(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		testutil.Skip(t, skipReason)
	}
}

// server is a berth server process under test.
type server struct {
	t       *testing.T
	dataDir string
	pool    string
	ns      string
	bridges string
	gwAddr  string
	cmd     *exec.Cmd
	client  *client.Client
	gateway string
	logFile string
	// extraArgs go to `berth server`; a kubernetes backend's server has
	// kube (its cluster) and nsPrefix (its namespaces) too.
	extraArgs []string
	kube      *k8s.Kube
	nsPrefix  string
	// apiAddr is where the API listens: a free port at first, the same
	// one after a restart (clients, and the registry address the
	// cluster's nodes pull from, keep working).
	apiAddr string
}

// startServer starts `berth server` on a fresh data dir, its gateway on
// loopback.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0")
}

// startServerOn starts a server whose gateway listens on gatewayAddr.
func startServerOn(t *testing.T, gatewayAddr string) *server {
	t.Helper()
	return startServerWith(t, gatewayAddr)
}

// startServerArgs starts a server with extra `berth server` flags.
func startServerArgs(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerWith(t, "127.0.0.1:0", extra...)
}

func startServerWith(t *testing.T, gatewayAddr string, extra ...string) *server {
	t.Helper()
	requireSystem(t)
	nextPool++
	s := &server{
		t:       t,
		dataDir: t.TempDir(),
		// 25 pools, reused in turn: servers of earlier tests are gone
		// (their bridges removed) when a pool comes round again.
		pool: fmt.Sprintf("10.%d.0.0/16", 230+nextPool%25),
		ns:   fmt.Sprintf("e2e%d-%d", os.Getpid(), nextPool),
		// Fixed width: no server's prefix may be a prefix of another's.
		bridges:   fmt.Sprintf("b%dx%02d", os.Getpid()%10000, nextPool),
		gwAddr:    gatewayAddr,
		extraArgs: extra,
	}
	s.start()
	t.Cleanup(func() { s.shutdown() })
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	os.Remove(filepath.Join(s.dataDir, "client.json"))
	if s.apiAddr == "" {
		s.apiAddr = "127.0.0.1:0"
	}
	s.logFile = filepath.Join(s.dataDir, "server.log")
	lf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	args := []string{"server",
		"--data-dir", s.dataDir,
		"--api", s.apiAddr,
		"--gateway", s.gwAddr,
		"--log-level", "debug",
		// Every trace recorded (the default samples 1% of new ones): the
		// tests read traces of requests they made.
		"--trace-sample-ratio", "1",
	}
	if s.kube == nil {
		args = append(args,
			"--containerd-socket", socket,
			"--containerd-namespace", s.ns,
			"--subnet-pool", s.pool,
			"--bridge-prefix", s.bridges,
		)
	}
	s.cmd = exec.Command(berthBin, args...)
	s.cmd.Args = append(s.cmd.Args, s.extraArgs...)
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func(c *exec.Cmd) { exited <- c.Wait() }(s.cmd)
	cfgPath := filepath.Join(s.dataDir, "client.json")
	testutil.WaitForState(t, 60*time.Second, "server to write client.json", func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("server exited early: %v\n%s", err, s.logs())
		default:
		}
		_, err := os.Stat(cfgPath)
		return err == nil, fmt.Sprint(err)
	})
	var cc struct{ Addr, Token, Gateway string }
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cc); err != nil {
		t.Fatal(err)
	}
	s.gateway = cc.Gateway
	s.apiAddr = strings.TrimPrefix(cc.Addr, "http://")
	s.client = client.New(client.Config{Addr: cc.Addr, Token: cc.Token})
	testutil.WaitForState(t, 30*time.Second, "server healthy", func() (bool, string) {
		err := s.client.Health(context.Background())
		return err == nil, fmt.Sprint(err)
	})
}

// kill9 kills the server process the hard way.
func (s *server) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Process.Wait()
}

// shutdown stops the server and removes what it ran, so the next test
// starts clean: services are deleted and their containers stopped first.
func (s *server) shutdown() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		objs, _ := s.client.List(ctx, kind, "")
		for _, raw := range objs {
			var o struct{ Metadata v1.ObjectMeta }
			if json.Unmarshal(raw, &o) == nil {
				_ = s.client.Delete(ctx, kind, o.Metadata.Environment, o.Metadata.Name)
			}
		}
	}
	{
		var left []json.RawMessage
		for ctx.Err() == nil {
			insts, err := s.client.List(ctx, v1.KindInstance, "")
			if err != nil || len(insts) == 0 {
				left = nil
				break
			}
			left = insts
			time.Sleep(100 * time.Millisecond)
		}
		if len(left) > 0 {
			// What a deleted workload leaves behind is a bug, and its
			// network namespaces would fail the test's cleanup with
			// "device or resource busy" and no word of why.
			var names []string
			for _, raw := range left {
				var i v1.Instance
				if json.Unmarshal(raw, &i) == nil {
					names = append(names, fmt.Sprintf("%s/%s (%s, standby %v, draining %v: %s)", i.Metadata.Environment, i.Metadata.Name,
						i.Status.Phase, i.Spec.Standby, i.Spec.Draining, i.Status.Message))
				}
			}
			s.t.Errorf("instances still there 60s after their workloads were deleted: %s", strings.Join(names, "; "))
		}
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
	}
	if s.t.Failed() {
		keep := filepath.Join(os.TempDir(), "berth-e2e-"+strings.ReplaceAll(s.t.Name(), "/", "_")+".log")
		if b, err := os.ReadFile(s.logFile); err == nil && os.WriteFile(keep, b, 0o644) == nil {
			s.t.Logf("whole server log kept at %s", keep)
		}
		s.t.Logf("server log (tail):\n%s", s.logs())
	}
	// The bridges and host rules this server made (a real server's stay,
	// as they should).
	if s.bridges != "" {
		testutil.RemoveHostNetwork(s.bridges)
	}
	// A cluster keeps what a server made there: its namespaces go.
	if s.kube != nil {
		for _, ns := range s.namespaces() {
			s.kube.Kubectl(context.Background(), "delete", "namespace", ns, "--wait=false")
		}
	}
}

func (s *server) logs() string {
	b, _ := os.ReadFile(s.logFile)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// berth runs the CLI against this server and returns stdout, stderr and the
// exit code.
func (s *server) berth(stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.run("", stdin, args...)
}

// mustBerth runs the CLI and fails the test on a non-zero exit.
func (s *server) mustBerth(stdin string, args ...string) string {
	s.t.Helper()
	return s.mustRun("", stdin, args...)
}

// run runs the CLI in dir ("" for the test's own) with stdin.
func (s *server) run(dir, stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(s.dataDir, "client.json"), "BERTH_ADDR=", "BERTH_TOKEN=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("berth %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (s *server) mustRun(dir, stdin string, args ...string) string {
	s.t.Helper()
	out, errOut, code := s.run(dir, stdin, args...)
	if code != 0 {
		s.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s\nserver log:\n%s", strings.Join(args, " "), code, out, errOut, s.logs())
	}
	return out
}

func (s *server) service(env, name string) *v1.Service {
	s.t.Helper()
	var svc v1.Service
	if err := s.client.Get(context.Background(), v1.KindService, env, name, &svc); err != nil {
		s.t.Fatalf("get service %s: %v", name, err)
	}
	return &svc
}

// gatewayGet sends a request through the gateway to NAME.ENV.
func (s *server) gatewayGet(host, path string) (int, string, error) {
	return s.gatewayGetWith(httpClient, host, path)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// longClient waits for answers that include a cold start on a cluster.
var longClient = &http.Client{Timeout: 2 * time.Minute}

// gatewayGetWith is gatewayGet with another client.
func (s *server) gatewayGetWith(c *http.Client, host, path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.gateway+path, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

// direct sends a request straight to an instance, bypassing the gateway.
func direct(method, ip string, port int32, path string) (int, string, error) {
	req, _ := http.NewRequest(method, fmt.Sprintf("http://%s%s", net.JoinHostPort(ip, fmt.Sprint(port)), path), nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
