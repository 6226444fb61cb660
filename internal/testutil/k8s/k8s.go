package k8s

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The environment the helper reads.
const (
	// EnvKubeconfig names the admin kubeconfig of a running cluster to use
	// instead of starting one (for example STATE_DIR/admin.kubeconfig of a
	// cluster .ci/run started with scripts/k8s/up.sh).
	EnvKubeconfig = "BERTH_KUBECONFIG"
	// EnvRequire, when set, turns every reason to skip into a failure.
	EnvRequire = "BERTH_REQUIRE_K8S"
	// EnvStateDir overrides DefaultStateDir.
	EnvStateDir = "BERTH_K8S_DIR"
)

// DefaultStateDir is where the helper starts its cluster. It is a known
// path, not a temp dir, so a cluster left running by a killed test binary
// is found there by the next run, reused, and stopped at its end. It is
// short: containerd's socket lives under it.
const DefaultStateDir = "/tmp/berth-k8s-test"

// Kube is a running cluster that tests may use.
type Kube struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// KubectlPath is a kubectl of the cluster's version.
	KubectlPath string
	// StateDir is up.sh's state directory, "" when the cluster is not one
	// of up.sh's.
	StateDir string
	// ContainerdSocket is the cluster's own containerd (namespace k8s.io),
	// "" when unknown.
	ContainerdSocket string

	owned bool     // started here, so stopped here
	lock  *os.File // held while an owned cluster runs
}

// scriptsDir is scripts/k8s of this source tree.
func scriptsDir() string {
	_, self, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "..", "scripts", "k8s")
}

// builtBinDir returns the directory of already built binaries, or "".
func builtBinDir() string {
	out, err := exec.Command(filepath.Join(scriptsDir(), "built.sh")).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Missing says why a cluster cannot be had here, or "" when it can: there
// is $BERTH_KUBECONFIG and a kubectl, or root and built binaries.
func Missing() string {
	if os.Getenv(EnvKubeconfig) != "" {
		if kubectl() == "" {
			return "no kubectl: run scripts/k8s/build.sh or put kubectl on PATH"
		}
		return ""
	}
	if os.Geteuid() != 0 {
		return "starting a Kubernetes cluster needs root (or set " + EnvKubeconfig + " to a running one)"
	}
	if builtBinDir() == "" {
		return "the Kubernetes binaries are not built: run scripts/k8s/build.sh (~25 min cold on 2 cores), " +
			"or set " + EnvKubeconfig + " to a running cluster's kubeconfig"
	}
	return ""
}

func kubectl() string {
	if bin := builtBinDir(); bin != "" {
		return filepath.Join(bin, "kubectl")
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	return ""
}

// Find returns the cluster $BERTH_KUBECONFIG names, after checking that its
// API server answers; nil and no error when the variable is unset.
func Find(ctx context.Context) (*Kube, error) {
	kc := os.Getenv(EnvKubeconfig)
	if kc == "" {
		return nil, nil
	}
	k := &Kube{Kubeconfig: kc, KubectlPath: kubectl()}
	if k.KubectlPath == "" {
		return nil, errors.New("k8s: no kubectl: run scripts/k8s/build.sh or put kubectl on PATH")
	}
	dir := filepath.Dir(kc)
	if sock := filepath.Join(dir, "containerd", "containerd.sock"); exists(sock) {
		k.StateDir, k.ContainerdSocket = dir, sock
	}
	if _, err := k.Kubectl(ctx, "get", "--raw", "/readyz"); err != nil {
		return nil, fmt.Errorf("k8s: the cluster of %s=%s does not answer: %w", EnvKubeconfig, kc, err)
	}
	return k, nil
}

// Start starts a cluster in stateDir (DefaultStateDir or $BERTH_K8S_DIR
// when "") with scripts/k8s/up.sh, whose progress goes to log. One cluster
// runs on a host at a time (its ports are fixed), so Start first waits for
// the lock that a cluster started by another test binary holds until Stop.
// A cluster already running in stateDir is adopted.
func Start(ctx context.Context, stateDir string, log io.Writer) (*Kube, error) {
	if stateDir == "" {
		stateDir = os.Getenv(EnvStateDir)
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	lock, err := acquire(ctx, strings.TrimRight(stateDir, "/")+".lock")
	if err != nil {
		return nil, err
	}
	k := &Kube{StateDir: stateDir, ContainerdSocket: filepath.Join(stateDir, "containerd", "containerd.sock"), owned: true, lock: lock}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(scriptsDir(), "up.sh"), stateDir)
	cmd.Stdout, cmd.Stderr = &stdout, log
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		// up.sh stops what it started when it fails; this only releases
		// the lock (and catches an up.sh killed by ctx).
		_ = k.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("k8s: scripts/k8s/up.sh %s: %w", stateDir, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	k.Kubeconfig = lines[len(lines)-1]
	k.KubectlPath = kubectl()
	return k, nil
}

// Stop stops a cluster Start started (scripts/k8s/down.sh: by its recorded
// pids only) and releases the host's cluster lock. It does nothing to a
// cluster Find found.
func (k *Kube) Stop(ctx context.Context) error {
	if !k.owned {
		return nil
	}
	defer func() {
		if k.lock != nil {
			k.lock.Close()
			k.lock = nil
		}
	}()
	out, err := exec.CommandContext(ctx, filepath.Join(scriptsDir(), "down.sh"), k.StateDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("k8s: scripts/k8s/down.sh %s: %w: %s", k.StateDir, err, out)
	}
	return nil
}

// acquire takes an exclusive flock on path, polling until ctx ends. The
// kernel releases it if the process dies.
func acquire(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("k8s: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("k8s: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("k8s: waiting for %s (another test binary's cluster): %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Kubectl runs kubectl with the cluster's admin kubeconfig and returns its
// standard output; a failure carries its standard error.
func (k *Kube) Kubectl(ctx context.Context, args ...string) (string, error) {
	return k.KubectlInput(ctx, nil, args...)
}

// KubectlInput is Kubectl with stdin (e.g. for `apply -f -`).
func (k *Kube) KubectlInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.KubectlPath, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// ImportImage imports an image tarball (docker-save or OCI layout, e.g.
// from testimage.Build) into the cluster's containerd, where pods with
// imagePullPolicy Never or IfNotPresent find it by its tag. Only for a
// cluster up.sh started; others should pull from a registry.
func (k *Kube) ImportImage(ctx context.Context, tarball string) error {
	if k.ContainerdSocket == "" {
		return errors.New("k8s: this cluster's containerd is unknown: push the image to a registry on 127.0.0.1 instead")
	}
	out, err := exec.CommandContext(ctx, "ctr", "-a", k.ContainerdSocket, "-n", "k8s.io", "images", "import", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("k8s: ctr images import %s: %w: %s", tarball, err, out)
	}
	return nil
}

// Namespace creates a namespace with a fresh name for t and deletes it,
// and what runs in it, when t ends.
func (k *Kube) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "t-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := k.Kubectl(ctx, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := k.Kubectl(ctx, "delete", "namespace", ns, "--wait=true", "--timeout=90s"); err != nil {
			t.Errorf("deleting namespace %s: %v", ns, err)
		}
	})
	return ns
}

var shared struct {
	mu      sync.Mutex
	managed bool // Main runs the package's tests
	done    bool // a first Cluster call under Main has run
	kube    *Kube
	err     error
}

// Main runs a package's tests (call it from TestMain) and, when one of
// them asked Cluster for a cluster that was started for it, stops that
// cluster after the last. The cluster is started lazily, so tests that do
// not need it do not wait for it.
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.managed = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	k := shared.kube
	shared.mu.Unlock()
	if k != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := k.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Cluster returns a cluster for t: the one $BERTH_KUBECONFIG names, or one
// started with scripts/k8s/up.sh. Under Main, the package's tests share one
// cluster, stopped after the last test; otherwise each call starts one and
// stops it when t ends. It skips t when a cluster cannot be had here (see
// Missing), unless $BERTH_REQUIRE_K8S is set, which makes that a failure.
func Cluster(t testing.TB) *Kube {
	t.Helper()
	if why := Missing(); why != "" {
		if os.Getenv(EnvRequire) != "" || os.Getenv("BERTH_NO_SKIP") != "" {
			t.Fatalf("%s or BERTH_NO_SKIP is set, but: %s", EnvRequire, why)
		}
		t.Skip("skipping: " + why)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.managed && shared.done {
		if shared.err != nil {
			t.Fatal(shared.err)
		}
		return shared.kube
	}
	k, err := get(t)
	if shared.managed {
		shared.done, shared.kube, shared.err = true, k, err
		if err != nil {
			shared.kube = nil
		}
	} else if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := k.Stop(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func get(t testing.TB) (*Kube, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if k, err := Find(ctx); k != nil || err != nil {
		return k, err
	}
	w := logWriter(t)
	defer w.Close()
	return Start(ctx, "", w)
}

// logWriter sends up.sh's progress to t's log, line by line.
func logWriter(t testing.TB) io.WriteCloser {
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		io.Copy(io.Discard, r)
	}()
	return &pipeCloser{w, done}
}

type pipeCloser struct {
	*io.PipeWriter
	done chan struct{}
}

func (p *pipeCloser) Close() error {
	err := p.PipeWriter.Close()
	<-p.done
	return err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
