package apiserver_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/store/bolt"
)

// imageServer is an API server with role tokens over a real store, and the
// registry authorizer the composition root builds over the same tokens.
type imageServer struct {
	*scopedServer
	images  *memImages
	regAuth func(*http.Request, string, bool) error
}

func newImageServer(t *testing.T, envs ...string) *imageServer {
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	auth := apiserver.NewRoleAuthorizer(token, st)
	mem := &memImages{}
	srv := apiserver.New(apiserver.Config{
		Store: st, Authorizer: auth, Images: mem,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	s := &imageServer{
		scopedServer: &scopedServer{t: t, url: ts.URL, dir: dir}, images: mem,
		regAuth: auth.RegistryAuthorizer(images.NewOwners(images.StoreEnvironments(st))),
	}
	for _, env := range envs {
		s.must(token, "PUT", "/api/v1/environments/"+env, `{"apiVersion":"berth.dev/v1","kind":"Environment"}`, 201)
	}
	return s
}

func (m *memImages) lastAccess() images.Access {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.access
}

func (s *imageServer) token(name, role string, envs ...string) string {
	b, _ := json.Marshal(map[string]any{"name": name, "environments": envs, "role": role})
	var tok v1.Token
	json.Unmarshal([]byte(s.must(token, "POST", "/api/v1/tokens", string(b), 201)), &tok)
	return tok.Secret
}

// The image endpoints hand the image service what the caller's token may
// do with repositories, so the service can refuse writes outside them.
func TestImageCallsCarryTheTokensAccess(t *testing.T) {
	s := newImageServer(t, "dev", "staging")
	deployer := s.token("ci", v1.RoleDeployer, "dev")
	viewer := s.token("look", v1.RoleViewer, "dev", "staging")

	s.must(deployer, "POST", "/api/v1/images/import", "tar bytes", 200)
	if a := s.images.lastAccess(); a.Admin || !slices.Equal(a.Write, []string{"dev"}) || !slices.Equal(a.Read, []string{"dev"}) {
		t.Fatalf("deployer's access: %+v", a)
	}
	s.must(viewer, "GET", "/api/v1/images", "", 200)
	if a := s.images.lastAccess(); a.Admin || len(a.Write) != 0 || !slices.Equal(a.Read, []string{"dev", "staging"}) {
		t.Fatalf("viewer's access: %+v", a)
	}
	s.must(viewer, "POST", "/api/v1/images/import", "tar bytes", 403)
	s.must(token, "DELETE", "/api/v1/images/imported:9", "", 204)
	if a := s.images.lastAccess(); !a.Admin {
		t.Fatalf("admin's access: %+v", a)
	}
}

// The registry's own API (/v2/) follows the same rules: a token pushes
// only into repositories of its environments, reads those and the shared
// ones, and a refusal is ErrDenied (403), not a request for credentials.
func TestRegistryAuthorizerFollowsOwnership(t *testing.T) {
	s := newImageServer(t, "dev", "staging")
	deployer := s.token("ci", v1.RoleDeployer, "dev")
	viewer := s.token("look", v1.RoleViewer, "dev")
	allDeployer := s.token("all", v1.RoleDeployer, "*")
	ask := func(secret, repo string, push bool) error {
		r := httptest.NewRequestWithContext(t.Context(), "GET", "/v2/", nil)
		if secret != "" {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		return s.regAuth(r, repo, push)
	}
	for _, c := range []struct {
		who, secret, repo string
		push              bool
		want              string // "ok", "denied" or "unauthenticated"
	}{
		{"deployer", deployer, "dev/app", true, "ok"},
		{"deployer", deployer, "dev/app", false, "ok"},
		{"deployer", deployer, "staging/app", true, "denied"},
		{"deployer", deployer, "staging/app", false, "denied"},
		{"deployer", deployer, "app", true, "denied"},
		{"deployer", deployer, "app", false, "ok"},
		{"deployer", deployer, "nosuchenv/app", false, "ok"}, // shared: no environment by that name
		{"deployer", deployer, "", false, "ok"},
		{"viewer", viewer, "dev/app", true, "denied"},
		{"viewer", viewer, "dev/app", false, "ok"},
		{"deployer of all", allDeployer, "staging/app", true, "ok"},
		{"deployer of all", allDeployer, "app", true, "denied"},
		{"admin", token, "app", true, "ok"},
		{"nobody", "", "app", false, "unauthenticated"},
		{"a wrong token", "berth_nope", "dev/app", false, "unauthenticated"},
	} {
		err := ask(c.secret, c.repo, c.push)
		got := "ok"
		switch {
		case errors.Is(err, registry.ErrDenied):
			got = "denied"
		case err != nil:
			got = "unauthenticated"
		}
		if got != c.want {
			t.Errorf("%s, %s push=%v: %v (%s), want %s", c.who, c.repo, c.push, err, got, c.want)
		}
		if got == "denied" && c.secret == deployer && c.push && !strings.Contains(err.Error(), "dev/app") {
			t.Errorf("%s: the refusal should say where the token may push: %v", c.repo, err)
		}
	}
}
