package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func writeConfig(t *testing.T, dir, addr, token string) string {
	t.Helper()
	path := filepath.Join(dir, "client.json")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(Config{Addr: addr, Token: token, Gateway: "127.0.0.1:8080"})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := writeConfig(t, filepath.Join(dir, "explicit"), "http://explicit:1", "explicit-token")
	home := writeConfig(t, filepath.Join(dir, "home"), "http://home:1", "home-token")
	system := writeConfig(t, filepath.Join(dir, "system"), "http://system:1", "system-token")
	missing := filepath.Join(dir, "missing.json")

	for _, tc := range []struct {
		name        string
		env         map[string]string
		paths       []string
		addr, token string
	}{
		{"nothing", nil, []string{missing}, DefaultAddr, ""},
		{"system file", nil, []string{missing, system}, "http://system:1", "system-token"},
		{"home before system", nil, []string{home, system}, "http://home:1", "home-token"},
		{"BERTH_CONFIG before home", map[string]string{"BERTH_CONFIG": explicit}, []string{home}, "http://explicit:1", "explicit-token"},
		{"env before files", map[string]string{"BERTH_ADDR": "http://env:1", "BERTH_TOKEN": "env-token"}, []string{home}, "http://env:1", "env-token"},
		// Each field comes from the first place that sets it.
		{"env addr, file token", map[string]string{"BERTH_ADDR": "http://env:1"}, []string{home}, "http://env:1", "home-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return tc.env[k] }, tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Addr != tc.addr || cfg.Token != tc.token {
				t.Errorf("got %q %q, want %q %q", cfg.Addr, cfg.Token, tc.addr, tc.token)
			}
		})
	}

	// An explicit BERTH_CONFIG that cannot be read is an error, not a
	// silent fallback to another server.
	if _, err := loadConfig(func(k string) string {
		if k == "BERTH_CONFIG" {
			return missing
		}
		return ""
	}, []string{home}); err == nil {
		t.Error("missing BERTH_CONFIG accepted")
	}
}

func TestErrorsDecodeToKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"kind":"Unauthorized","message":"bad token"}}`)
			return
		}
		if r.URL.RawPath == "/api/v1/images/registry.local:5000%2Fapp@sha256:abc" {
			// The ref travels as one path segment.
			w.WriteHeader(200)
			return
		}
		switch r.URL.Path {
		case "/api/v1/environments/default/services/web":
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"kind":"Invalid","message":"must be positive","field":"spec.replicas"}}`)
		default:
			w.WriteHeader(502)
			io.WriteString(w, "<html>bad gateway</html>")
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := New(Config{Addr: strings.TrimPrefix(srv.URL, "http://"), Token: "tok"})

	var svc v1.Service
	err := c.Get(ctx, v1.KindService, "default", "web", &svc)
	var ve *v1.Error
	if !errors.As(err, &ve) || ve.Kind != v1.ErrInvalid || ve.Field != "spec.replicas" || ve.Message != "must be positive" {
		t.Errorf("got %#v", err)
	}
	// A body that is not an API error still has the status's kind.
	if _, err := c.List(ctx, v1.KindService, "default"); v1.KindOf(err) != v1.ErrUnavailable {
		t.Errorf("502: kind %s (%v)", v1.KindOf(err), err)
	}
	if err := c.RemoveImage(ctx, "registry.local:5000/app@sha256:abc"); err != nil {
		t.Errorf("remove image: %v", err)
	}

	anon := New(Config{Addr: srv.URL})
	err = anon.Health(ctx)
	if v1.KindOf(err) != v1.ErrUnauthorized || !strings.Contains(err.Error(), "BERTH_TOKEN") {
		t.Errorf("no token: %v", err)
	}
}

func TestServerDownIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	err := New(Config{Addr: addr}).Health(context.Background())
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "berth server") {
		t.Errorf("got %v", err)
	}

	// A cancelled caller is not an absent server.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(Config{Addr: addr}).Health(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestApplyAndImages(t *testing.T) {
	var gotBody map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "PUT" && r.URL.Path == "/api/v1/environments/dev":
			if r.URL.Query().Get("dryRun") != "1" {
				w.WriteHeader(400)
				return
			}
			json.NewDecoder(r.Body).Decode(&gotBody)
			io.WriteString(w, `{"result":"created","object":{"kind":"Environment","metadata":{"name":"dev","uid":"u1"}}}`)
		case r.Method == "POST" && r.URL.Path == "/api/v1/images/import":
			if r.Header.Get("Content-Type") != "application/x-tar" {
				w.WriteHeader(400)
				return
			}
			b, _ := io.ReadAll(r.Body)
			json.NewEncoder(w).Encode([]v1.Image{{Name: "app:1", Digest: "sha256:" + string(b)}})
		case r.Method == "POST" && r.URL.Path == "/api/v1/images/pull":
			io.WriteString(w, `{"name":"nginx:1.25","digest":"sha256:d"}`)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := New(Config{Addr: srv.URL})

	env := &v1.Environment{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: "dev"}}
	res, stored, err := c.Apply(ctx, env, true)
	if err != nil || res != ResultCreated || !strings.Contains(string(stored), `"uid":"u1"`) {
		t.Fatalf("apply: %q %s %v", res, stored, err)
	}
	if gotBody["kind"] != "Environment" {
		t.Errorf("sent %v", gotBody)
	}
	imgs, err := c.ImportImage(ctx, strings.NewReader("tarbytes"))
	if err != nil || len(imgs) != 1 || imgs[0].Digest != "sha256:tarbytes" {
		t.Errorf("import: %v %v", imgs, err)
	}
	img, err := c.PullImage(ctx, "nginx:1.25")
	if err != nil || img.Digest != "sha256:d" {
		t.Errorf("pull: %v %v", img, err)
	}
}
