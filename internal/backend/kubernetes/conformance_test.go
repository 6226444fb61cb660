package kubernetes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"berth.dev/berth/internal/backend/backendtest"
	"berth.dev/berth/internal/backend/kubernetes"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/testutil/k8s"
	"berth.dev/berth/internal/testutil/testimage"
)

func TestMain(m *testing.M) { os.Exit(k8s.Main(m)) }

// The kubernetes backend on a real single-node cluster (etcd, the API
// server, scheduler, controller manager, a kubelet and containerd) passes
// the same conformance suite as the local backend. The echo image is
// pushed to a registry on loopback, which the node pulls from by digest,
// as it pulls from Berth's built-in registry.
func TestConformanceOnACluster(t *testing.T) {
	kube := k8s.Cluster(t)
	ref, digest := pushEcho(t)
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := make([]byte, 3)
	rand.Read(b)
	prefix := "bt" + hex.EncodeToString(b) + "-"
	kb, err := kubernetes.New(kubernetes.Config{
		Kubeconfig: kube.Kubeconfig, NamespacePrefix: prefix,
		ImageRef: func(image, digest string) string { return ref + "@" + digest },
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { kb.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		// Whatever a failed run left: its namespaces.
		out, _ := kube.Kubectl(context.Background(), "get", "ns", "-o", "name")
		for _, ns := range strings.Fields(out) {
			if strings.HasPrefix(ns, "namespace/"+prefix) {
				kube.Kubectl(context.Background(), "delete", ns, "--wait=false")
			}
		}
	})
	if err := kb.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, backendtest.Harness{Backend: kb, Store: st, Image: ref, Digest: digest, Timeout: 3 * time.Minute})
}

// pushEcho serves a registry on loopback for the test's life and pushes
// the echo test image to it; it returns the repository and the digest.
func pushEcho(t *testing.T) (repo, digest string) {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.New(registry.Config{Dir: filepath.Join(dir, "registry"), AnonymousPull: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	tar, err := testimage.Build(context.Background(), dir, "berth.test/echo:v1", testimage.Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo = ln.Addr().String() + "/berth-test/echo"
	tag, err := name.ParseReference(repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo, d.String()
}
