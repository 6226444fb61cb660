package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/secrets"
	"berth.dev/berth/internal/store/bolt"
)

func TestAllowedTable(t *testing.T) {
	viewer := apiserver.Principal{Name: "v", Role: v1.RoleViewer, Environments: []string{"dev"}}
	deployer := apiserver.Principal{Name: "ci", Role: v1.RoleDeployer, Environments: []string{"dev"}}
	envAdmin := apiserver.Principal{Name: "a", Role: v1.RoleAdmin, Environments: []string{"dev"}}
	super := apiserver.Principal{Name: "root", Role: v1.RoleAdmin, Environments: []string{"*"}}
	allViewer := apiserver.Principal{Name: "all", Role: v1.RoleViewer, Environments: []string{"*"}}
	const (
		ok   = true
		deny = false
	)
	for _, tc := range []struct {
		p      apiserver.Principal
		method string
		path   string
		want   bool
	}{
		{viewer, "GET", "/api/v1/environments/dev/services/web", ok},
		{viewer, "GET", "/api/v1/environments/dev/services", ok},
		{viewer, "GET", "/api/v1/environments/staging/services/web", deny},
		{viewer, "PUT", "/api/v1/environments/dev/services/web", deny},
		{viewer, "GET", "/api/v1/environments/dev/services/web/logs", deny},
		{viewer, "GET", "/api/v1/environments", ok},
		{viewer, "GET", "/api/v1/services", ok},
		{viewer, "GET", "/api/v1/environments/dev", ok},
		{viewer, "GET", "/api/v1/traces", deny},
		{allViewer, "GET", "/api/v1/environments/prod/services/web", ok},
		{allViewer, "PUT", "/api/v1/environments/prod/services/web", deny},
		{deployer, "PUT", "/api/v1/environments/dev/services/web", ok},
		{deployer, "DELETE", "/api/v1/environments/dev/functions/f", ok},
		{deployer, "POST", "/api/v1/environments/dev/functions/f/invoke", ok},
		{deployer, "POST", "/api/v1/environments/dev/topics/t/messages", ok},
		{deployer, "POST", "/api/v1/environments/dev/workflows/w/executions", ok},
		{deployer, "GET", "/api/v1/environments/dev/services/web/logs", ok},
		{deployer, "PUT", "/api/v1/environments/dev/secrets/db", ok},
		{deployer, "POST", "/api/v1/environments/dev/stacks/shop", ok},
		{deployer, "PUT", "/api/v1/environments/staging/services/web", deny},
		{deployer, "GET", "/api/v1/environments/staging/services/web", deny},
		{deployer, "PUT", "/api/v1/environments/dev", deny},
		{deployer, "DELETE", "/api/v1/environments/dev", deny},
		{deployer, "POST", "/api/v1/tokens", deny},
		{deployer, "GET", "/api/v1/tokens", deny},
		{deployer, "POST", "/api/v1/images/pull", ok},
		{deployer, "DELETE", "/api/v1/images/x", ok}, // the image service checks the repository
		{viewer, "DELETE", "/api/v1/images/x", deny},
		{viewer, "POST", "/api/v1/images/tag", deny},
		{viewer, "POST", "/api/v1/images/pull", deny},
		{envAdmin, "PUT", "/api/v1/environments/dev", ok},
		{envAdmin, "PUT", "/api/v1/environments/new", deny},
		{envAdmin, "POST", "/api/v1/tokens", deny},
		{super, "PUT", "/api/v1/environments/new", ok},
		{super, "POST", "/api/v1/tokens", ok},
		{super, "DELETE", "/api/v1/tokens/ci", ok},
	} {
		err := apiserver.Allowed(tc.p, tc.method, tc.path)
		if (err == nil) != tc.want {
			t.Errorf("%s (%s in %v) %s %s: err = %v, want allowed=%v", tc.p.Name, tc.p.Role, tc.p.Environments, tc.method, tc.path, err, tc.want)
		}
		if err != nil && v1.KindOf(err) != v1.ErrForbidden {
			t.Errorf("%s %s: kind %s, want Forbidden", tc.method, tc.path, v1.KindOf(err))
		}
	}
}

// scopedServer is an API server with role tokens and secrets, as the
// composition root builds it.
type scopedServer struct {
	t   *testing.T
	url string
	dir string
}

func newScopedServer(t *testing.T, tweaks ...func(*apiserver.Config)) *scopedServer {
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	key, err := secrets.LoadOrCreateKey(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	box, _ := secrets.NewBox(key)
	cfg := apiserver.Config{
		Store: st, Authorizer: apiserver.NewRoleAuthorizer(token, st), Values: secrets.New(st, box),
		Images: &memImages{},
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	srv := apiserver.New(cfg)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &scopedServer{t: t, url: ts.URL, dir: dir}
}

func (s *scopedServer) call(tok, method, path, body string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequestWithContext(s.t.Context(), method, s.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *scopedServer) must(tok, method, path, body string, want int) string {
	s.t.Helper()
	code, out := s.call(tok, method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, code, out, want)
	}
	return out
}

func TestScopedTokens(t *testing.T) {
	s := newScopedServer(t)
	for _, env := range []string{"dev", "staging"} {
		s.must(token, "PUT", "/api/v1/environments/"+env, `{"apiVersion":"berth.dev/v1","kind":"Environment"}`, 201)
	}
	out := s.must(token, "POST", "/api/v1/tokens", `{"name":"ci","environments":["dev"],"role":"deployer"}`, 201)
	var tok v1.Token
	json.Unmarshal([]byte(out), &tok)
	if !strings.HasPrefix(tok.Secret, "berth_") || tok.Hash != "" {
		t.Fatalf("create answer: %s", out)
	}
	s.must(token, "POST", "/api/v1/tokens", `{"name":"ci","environments":["dev"],"role":"deployer"}`, 409)
	svc := `{"apiVersion":"berth.dev/v1","kind":"Service","spec":{"image":"nginx:1.27"}}`
	s.must(tok.Secret, "PUT", "/api/v1/environments/dev/services/web", svc, 201)
	code, body := s.call(tok.Secret, "PUT", "/api/v1/environments/staging/services/web", svc)
	if code != 403 || !strings.Contains(body, `environment \"staging\"`) || !strings.Contains(body, "deployer") {
		t.Fatalf("dev token on staging: %d %s", code, body)
	}
	s.must(tok.Secret, "GET", "/api/v1/environments/staging/services", "", 403)
	s.must(token, "PUT", "/api/v1/environments/staging/services/web", svc, 201)
	// -A lists only the token's environments.
	all := s.must(tok.Secret, "GET", "/api/v1/services", "", 200)
	if !strings.Contains(all, `"environment":"dev"`) || strings.Contains(all, `"staging"`) {
		t.Fatalf("list -A for a dev token: %s", all)
	}
	envs := s.must(tok.Secret, "GET", "/api/v1/environments", "", 200)
	if strings.Contains(envs, "staging") || !strings.Contains(envs, `"dev"`) {
		t.Fatalf("environments for a dev token: %s", envs)
	}
	// Only the hash is kept, and it is never sent.
	list := s.must(token, "GET", "/api/v1/tokens", "", 200)
	if strings.Contains(list, tok.Secret) || strings.Contains(list, apiserver.HashToken(tok.Secret)) {
		t.Fatalf("token list leaks: %s", list)
	}
	s.must(token, "DELETE", "/api/v1/tokens/ci", "", 200)
	s.must(tok.Secret, "GET", "/api/v1/environments/dev/services", "", 401)
}

func TestSecretsRedacted(t *testing.T) {
	s := newScopedServer(t)
	const value = "pa55-word-9d7c"
	out := s.must(token, "PUT", "/api/v1/environments/default/secrets/db", `{"data":{"password":"`+value+`"}}`, 201)
	for _, path := range []string{"/api/v1/environments/default/secrets/db", "/api/v1/environments/default/secrets", "/api/v1/secrets"} {
		out += s.must(token, "GET", path, "", 200)
	}
	if strings.Contains(out, value) || !strings.Contains(out, `{"name":"password","size":14}`) {
		t.Fatalf("answers: %s", out)
	}
	s.must(token, "PUT", "/api/v1/environments/nope/secrets/db", `{"data":{"a":"b"}}`, 404)
	s.must(token, "PUT", "/api/v1/environments/default/secrets/db", `{"data":{"bad/key":"b"}}`, 400)
	cfg := s.must(token, "PUT", "/api/v1/environments/default/configs/app", `{"data":{"mode":"fast"}}`, 201)
	if !strings.Contains(cfg, `"mode":"fast"`) {
		t.Fatalf("config answer: %s", cfg)
	}
}

func TestQuotaRefusesApply(t *testing.T) {
	s := newScopedServer(t)
	s.must(token, "PUT", "/api/v1/environments/dev", `{"apiVersion":"berth.dev/v1","kind":"Environment","spec":{"quota":{"cpu":"4","memory":"8Gi"}}}`, 201)
	svc := func(replicas int, mem string) string {
		b, _ := json.Marshal(map[string]any{"apiVersion": "berth.dev/v1", "kind": "Service",
			"spec": map[string]any{"image": "nginx:1.27", "replicas": replicas, "resources": map[string]any{"cpu": "250m", "memory": mem}}})
		return string(b)
	}
	s.must(token, "PUT", "/api/v1/environments/dev/services/db", svc(3, "2Gi"), 201)
	code, body := s.call(token, "PUT", "/api/v1/environments/dev/services/web", svc(5, "512Mi"))
	want := `quota exceeded in environment \"dev\": memory 8.5Gi requested (6Gi in use + 2.5Gi for service/web), quota 8Gi`
	if code != 400 || !strings.Contains(body, want) || !strings.Contains(body, `"field":"spec.resources"`) {
		t.Fatalf("over quota: %d %s", code, body)
	}
	s.must(token, "PUT", "/api/v1/environments/dev/services/web", svc(4, "512Mi"), 201)
	// Scaling an existing service counts it once, at its new size.
	s.must(token, "PUT", "/api/v1/environments/dev/services/db", svc(2, "2Gi"), 200)
}

func TestEnvironmentDeleteCascade(t *testing.T) {
	s := newScopedServer(t)
	s.must(token, "PUT", "/api/v1/environments/dev", `{"apiVersion":"berth.dev/v1","kind":"Environment"}`, 201)
	s.must(token, "PUT", "/api/v1/environments/dev/secrets/db", `{"data":{"a":"b"}}`, 201)
	code, body := s.call(token, "DELETE", "/api/v1/environments/dev", "")
	if code != 409 || !strings.Contains(body, "secrets: db") || !strings.Contains(body, "--cascade") {
		t.Fatalf("delete with a secret in it: %d %s", code, body)
	}
	s.must(token, "PUT", "/api/v1/environments/dev/services/web", `{"apiVersion":"berth.dev/v1","kind":"Service","spec":{"image":"nginx:1.27"}}`, 201)
	s.must(token, "DELETE", "/api/v1/environments/dev?cascade=true", "", 200)
	s.must(token, "GET", "/api/v1/environments/dev/services/web", "", 404)
	s.must(token, "GET", "/api/v1/environments/dev/secrets/db", "", 404)
}

func TestStackDeployAndRollback(t *testing.T) {
	s := newScopedServer(t)
	deploy := func(replicas string) v1.StackDeployResponse {
		req := v1.StackDeployRequest{Manifests: []v1.StackManifest{{File: "web.yaml", Content: "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: web}\nspec:\n  image: nginx:1.27\n  replicas: " + replicas + "\n"},
			{File: "topic.yaml", Content: "apiVersion: berth.dev/v1\nkind: Topic\nmetadata: {name: orders}\n"}}}
		b, _ := json.Marshal(req)
		var resp v1.StackDeployResponse
		json.Unmarshal([]byte(s.must(token, "POST", "/api/v1/environments/default/stacks/shop", string(b), 200)), &resp)
		return resp
	}
	if r := deploy("1"); r.Revision != 1 || r.Results["Service/web"] != "created" || r.Results["Topic/orders"] != "created" {
		t.Fatalf("first deploy: %+v", r)
	}
	if r := deploy("2"); r.Revision != 2 || r.Results["Service/web"] != "configured" || r.Results["Topic/orders"] != "unchanged" {
		t.Fatalf("second deploy: %+v", r)
	}
	s.must(token, "POST", "/api/v1/environments/default/stacks/shop/rollback", `{}`, 200)
	svc := s.must(token, "GET", "/api/v1/environments/default/services/web", "", 200)
	if !strings.Contains(svc, `"replicas":1`) {
		t.Fatalf("after rollback: %s", svc)
	}
	var st v1.Stack
	json.Unmarshal([]byte(s.must(token, "GET", "/api/v1/environments/default/stacks/shop", "", 200)), &st)
	if st.Status.Revision != 3 || st.Status.History[2].Cause != "rollback to revision 1" {
		t.Fatalf("history: %+v", st.Status)
	}
	// A bad manifest names its file and document, and nothing is applied.
	bad, _ := json.Marshal(v1.StackDeployRequest{Manifests: []v1.StackManifest{
		{File: "ok.yaml", Content: "apiVersion: berth.dev/v1\nkind: Topic\nmetadata: {name: new}\n"},
		{File: "bad.yaml", Content: "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: x}\nspec: {image: nginx, replicas: -1}\n"}}})
	code, body := s.call(token, "POST", "/api/v1/environments/default/stacks/shop", string(bad))
	if code != 400 || !strings.Contains(body, `"file":"bad.yaml"`) {
		t.Fatalf("bad manifest: %d %s", code, body)
	}
	s.must(token, "GET", "/api/v1/environments/default/topics/new", "", 404)
	_ = bytes.MinRead
}

// TestDeletedEnvironmentTakesItsTokens: tokens name environments by name,
// so deleting an environment revokes the tokens that were for it alone and
// takes it out of the others; an environment created again under the same
// name inherits none of them. A token cannot be made for an environment
// that does not exist.
func TestDeletedEnvironmentTakesItsTokens(t *testing.T) {
	s := newScopedServer(t)
	env := `{"apiVersion":"berth.dev/v1","kind":"Environment"}`
	for _, e := range []string{"dev", "staging"} {
		s.must(token, "PUT", "/api/v1/environments/"+e, env, 201)
	}
	secret := func(body string) string {
		var tok v1.Token
		json.Unmarshal([]byte(s.must(token, "POST", "/api/v1/tokens", body, 201)), &tok)
		return tok.Secret
	}
	ci := secret(`{"name":"ci","environments":["dev"],"role":"deployer"}`)
	both := secret(`{"name":"both","environments":["dev","staging"],"role":"deployer"}`)
	ops := secret(`{"name":"ops","environments":["*"],"role":"admin"}`)
	s.must(ci, "GET", "/api/v1/environments/dev/services", "", 200)

	s.must(token, "DELETE", "/api/v1/environments/dev?cascade=true", "", 200)
	s.must(token, "PUT", "/api/v1/environments/dev", env, 201)

	s.must(ci, "GET", "/api/v1/environments/dev/services", "", 401)
	s.must(both, "GET", "/api/v1/environments/dev/services", "", 403)
	s.must(both, "GET", "/api/v1/environments/staging/services", "", 200)
	s.must(ops, "GET", "/api/v1/environments/dev/services", "", 200)
	list := s.must(token, "GET", "/api/v1/tokens", "", 200)
	if strings.Contains(list, `"name":"ci"`) || !strings.Contains(list, `"environments":["staging"]`) {
		t.Errorf("tokens after the delete: %s", list)
	}
	s.must(token, "POST", "/api/v1/tokens", `{"name":"early","environments":["qa"],"role":"deployer"}`, 400)
}
