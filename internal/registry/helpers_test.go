package registry

import (
	"log/slog"
	"net/http/httptest"
	"testing"
)

const testToken = "s3cret-token"

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newTestRegistry starts a registry with token auth on a loopback server.
func newTestRegistry(t testing.TB, mutate func(*Config)) (*Registry, *httptest.Server) {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), Authorizer: TokenAuthorizer(testToken), Logger: testLogger(t)}
	if mutate != nil {
		mutate(&cfg)
	}
	reg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return reg, srv
}
