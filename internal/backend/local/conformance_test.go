package local_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"berth.dev/berth/internal/backend/backendtest"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/network/fake"
	"berth.dev/berth/internal/runtime/mock"
	"berth.dev/berth/internal/store/bolt"
)

// The local backend on the mock runtime and the fake network passes the
// backend conformance suite without root, in seconds.
func TestConformanceOnMockRuntime(t *testing.T) {
	h := mockBackend(t)
	backendtest.Run(t, h.harness)
}

type mockHarness struct {
	harness backendtest.Harness
	backend *local.Backend
	driver  *mock.Driver
	network *fake.Network
}

// option changes the local backend's config before it starts.
type option func(*local.Config)

func withSecrets(s local.Secrets) option { return func(c *local.Config) { c.Secrets = s } }
func withDrainer(d local.Drainer) option { return func(c *local.Config) { c.Drainer = d } }

func readAll(res *http.Response) string {
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func mockBackend(t *testing.T, opts ...option) mockHarness {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	drv := mock.New()
	nw := fake.New(0)
	cfg := local.Config{
		Store: st, Driver: drv, Network: nw,
		LogDir: filepath.Join(dir, "logs"), VolumeDir: filepath.Join(dir, "volumes"), StateDir: filepath.Join(dir, "run"),
		BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	b := local.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		drv.Close()
		st.Close()
	})
	if err := b.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return mockHarness{
		harness: backendtest.Harness{Backend: b, Store: st, Image: "berth.test/echo:v1",
			Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001", Timeout: 20 * time.Second},
		backend: b, driver: drv, network: nw,
	}
}
