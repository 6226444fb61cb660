package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/logs"
)

const token = "s3cret-token"

type env struct {
	t      *testing.T
	url    string
	store  store.Store
	logDir string
	images *memImages
}

type options struct {
	noDefaultEnv bool
	images       *memImages
	invocations  apiserver.Invocations
	maxPayload   int64
	// executions builds what runs workflow executions, on the test's store.
	executions func(store.Store) apiserver.Executions
	// wrapStore, if set, wraps the store the API server is given.
	wrapStore func(store.Store) store.Store
}

func newEnv(t *testing.T, opts options) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if !opts.noDefaultEnv {
		if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	if opts.images == nil {
		opts.images = &memImages{}
	}
	logDir := filepath.Join(dir, "logs")
	var executions apiserver.Executions
	if opts.executions != nil {
		executions = opts.executions(st)
	}
	var apiStore store.Store = st
	if opts.wrapStore != nil {
		apiStore = opts.wrapStore(st)
	}
	srv := apiserver.New(apiserver.Config{
		Store:  apiStore,
		Token:  token,
		Images: opts.images,
		Logs:   dirLogs(logDir),

		Invocations:     opts.invocations,
		MaxPayloadBytes: opts.maxPayload,
		Executions:      executions,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, url: ts.URL, store: st, logDir: logDir, images: opts.images}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errorBody(t *testing.T) v1.ErrorBody {
	t.Helper()
	var st v1.Status
	if err := json.Unmarshal(r.body, &st); err != nil || st.Error.Kind == "" {
		t.Fatalf("status %d: body is not a JSON error: %q", r.status, r.body)
	}
	return st.Error
}

func (e *env) doAs(tok, method, path string, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	return e.doAs(token, method, path, r)
}

// expect fails unless the answer has the status; for errors it also checks
// the JSON error's kind and, when given, its field.
func (e *env) expect(r response, status int, kind, field string) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if kind == "" {
		return
	}
	got := r.errorBody(e.t)
	if got.Kind != kind || got.Field != field {
		e.t.Fatalf("error kind %q field %q, want kind %q field %q (message %q)", got.Kind, got.Field, kind, field, got.Message)
	}
}

type applied struct {
	Result string          `json:"result"`
	Object json.RawMessage `json:"object"`
}

func (e *env) apply(path string, body any, wantStatus int, wantResult string) json.RawMessage {
	e.t.Helper()
	r := e.do(http.MethodPut, path, body)
	e.expect(r, wantStatus, "", "")
	var a applied
	if err := json.Unmarshal(r.body, &a); err != nil {
		e.t.Fatalf("apply answer %s: %v", r.body, err)
	}
	if a.Result != wantResult {
		e.t.Fatalf("apply result %q, want %q", a.Result, wantResult)
	}
	return a.Object
}

func service(name, image string) *v1.Service {
	return &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     v1.ServiceSpec{Template: v1.Template{Image: image}},
	}
}

func environment(name string) *v1.Environment {
	return &v1.Environment{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment},
		Metadata: v1.ObjectMeta{Name: name},
	}
}

func decodeService(t *testing.T, b []byte) *v1.Service {
	t.Helper()
	var s v1.Service
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("decode service %s: %v", b, err)
	}
	return &s
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, options{})
	for _, tc := range []struct{ name, tok, path string }{
		{"no token", "", "/api/v1/environments"},
		{"wrong token", "nope", "/api/v1/environments"},
		{"token with a suffix", token + "x", "/api/v1/environments"},
		{"no token, unknown path", "", "/api/v1/nothing/here/at/all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doAs(tc.tok, http.MethodGet, tc.path, nil)
			e.expect(r, http.StatusUnauthorized, v1.ErrUnauthorized, "")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
			}
		})
	}
	r := e.doAs("", http.MethodGet, "/healthz", nil)
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ok" {
		t.Errorf("/healthz without token: %d %q, want 200 ok", r.status, r.body)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments", nil), http.StatusOK, "", "")

	// A server started without a token admits nobody.
	srv := apiserver.New(apiserver.Config{Store: e.store})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/environments", nil)
	req.Header.Set("Authorization", "Bearer ")
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("empty configured token: status %d, want 401", rec.Code)
	}
}

func TestApplyLifecycle(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web"

	svc := decodeService(t, e.apply(path, service("web", "nginx:1.27"), http.StatusCreated, "created"))
	if svc.Metadata.Generation != 1 || svc.Metadata.UID == "" || svc.Metadata.ResourceVersion == 0 ||
		svc.Metadata.CreationTimestamp.IsZero() || svc.Metadata.Environment != "default" {
		t.Fatalf("created metadata = %+v, want generation 1, uid, resourceVersion, creation time, environment default", svc.Metadata)
	}
	if svc.Spec.Replicas == nil || *svc.Spec.Replicas != 1 || svc.Spec.Port != 8080 {
		t.Errorf("created spec not defaulted: %+v", svc.Spec)
	}
	uid, rv := svc.Metadata.UID, svc.Metadata.ResourceVersion

	// The same manifest again, with a default spelled out, changes nothing.
	same := service("web", "nginx:1.27")
	same.Spec.Port = 8080
	svc = decodeService(t, e.apply(path, same, http.StatusOK, "unchanged"))
	if svc.Metadata.ResourceVersion != rv || svc.Metadata.Generation != 1 {
		t.Errorf("unchanged apply wrote: resourceVersion %d→%d generation %d", rv, svc.Metadata.ResourceVersion, svc.Metadata.Generation)
	}

	// The controller reports status; a client's status is ignored.
	var stored v1.Service
	if err := store.Get(t.Context(), e.store, store.KeyOf(svc), &stored); err != nil {
		t.Fatal(err)
	}
	stored.Status = v1.ServiceStatus{ReadyReplicas: 1, Revision: 1}
	if err := store.Update(t.Context(), e.store, &stored); err != nil {
		t.Fatal(err)
	}
	changed := service("web", "nginx:1.28")
	changed.Status.ReadyReplicas = 99
	svc = decodeService(t, e.apply(path, changed, http.StatusOK, "configured"))
	if svc.Metadata.Generation != 2 || svc.Metadata.UID != uid || svc.Status.ReadyReplicas != 1 || svc.Status.Revision != 1 {
		t.Errorf("after a spec change: generation %d uid %q status %+v; want generation 2, same uid, the controller's status",
			svc.Metadata.Generation, svc.Metadata.UID, svc.Status)
	}

	// Labels alone are a change, but not of the spec.
	labelled := service("web", "nginx:1.28")
	labelled.Metadata.Labels = map[string]string{"team": "shop"}
	svc = decodeService(t, e.apply(path, labelled, http.StatusOK, "configured"))
	if svc.Metadata.Generation != 2 || svc.Metadata.Labels["team"] != "shop" {
		t.Errorf("labels-only change: generation %d labels %v; want generation 2 and the label", svc.Metadata.Generation, svc.Metadata.Labels)
	}

	// dryRun answers the would-be result and writes nothing.
	dry := service("web", "nginx:1.29")
	dry.Metadata.Labels = labelled.Metadata.Labels
	svc = decodeService(t, e.apply(path+"?dryRun=1", dry, http.StatusOK, "configured"))
	if svc.Metadata.Generation != 3 || svc.Spec.Image != "nginx:1.29" {
		t.Errorf("dry run answer: generation %d image %q", svc.Metadata.Generation, svc.Spec.Image)
	}
	e.apply("/api/v1/environments/default/services/new?dryRun=1", service("new", "nginx"), http.StatusCreated, "created")
	got := decodeService(t, e.do(http.MethodGet, path, nil).body)
	if got.Spec.Image != "nginx:1.28" || got.Metadata.Generation != 2 {
		t.Errorf("after dry run the stored service is %q generation %d, want nginx:1.28 generation 2", got.Spec.Image, got.Metadata.Generation)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/services/new", nil), http.StatusNotFound, v1.ErrNotFound, "")

	// get -o json shows status as stored.
	if got.Status.ReadyReplicas != 1 {
		t.Errorf("GET lost the status: %+v", got.Status)
	}
}

func TestApplyEnvironment(t *testing.T) {
	e := newEnv(t, options{})
	env := environment("staging")
	env.Spec.AllowFrom = []string{"default"}
	e.apply("/api/v1/environments/staging", env, http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging", env, http.StatusOK, "unchanged")
	env.Spec.AllowFrom = nil
	obj := e.apply("/api/v1/environments/staging", env, http.StatusOK, "configured")
	var got v1.Environment
	json.Unmarshal(obj, &got)
	if got.Metadata.Generation != 2 {
		t.Errorf("generation %d, want 2", got.Metadata.Generation)
	}

	var list v1.List
	r := e.do(http.MethodGet, "/api/v1/environments", nil)
	e.expect(r, http.StatusOK, "", "")
	if err := json.Unmarshal(r.body, &list); err != nil || list.Kind != "List" || list.APIVersion != v1.APIVersion || len(list.Items) != 2 {
		t.Fatalf("environments list %s (err %v), want a List of default and staging", r.body, err)
	}
}

func TestApplyErrors(t *testing.T) {
	e := newEnv(t, options{})
	svcPath := "/api/v1/environments/default/services/web"
	inStaging := service("web", "nginx")
	inStaging.Metadata.Environment = "staging"
	noImage := service("web", "")
	envInEnv := environment("dev")
	envInEnv.Metadata.Environment = "default"

	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		kind       string
		field      string
	}{
		{"unknown field", svcPath, `{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"image":"nginx","replica":2}}`,
			400, v1.ErrInvalid, "spec.replica"},
		{"wrong type", svcPath, `{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"image":"nginx","replicas":"two"}}`,
			400, v1.ErrInvalid, "spec.replicas"},
		{"malformed JSON", svcPath, `{"apiVersion":`, 400, v1.ErrInvalid, ""},
		{"empty body", svcPath, ``, 400, v1.ErrInvalid, ""},
		{"kind does not match path", svcPath, environment("web"), 400, v1.ErrInvalid, "kind"},
		{"name does not match path", svcPath, service("api", "nginx"), 400, v1.ErrInvalid, "metadata.name"},
		{"environment does not match path", svcPath, inStaging, 400, v1.ErrInvalid, "metadata.environment"},
		{"missing environment", "/api/v1/environments/staging/services/web", service("web", "nginx"), 404, v1.ErrNotFound, "metadata.environment"},
		{"invalid spec", svcPath, noImage, 400, v1.ErrInvalid, "spec.image"},
		{"invalid name", "/api/v1/environments/default/services/Web_1", service("Web_1", "nginx"), 400, v1.ErrInvalid, "metadata.name"},
		{"environment inside an environment", "/api/v1/environments/dev", envInEnv, 400, v1.ErrInvalid, "metadata.environment"},
		{"platform kind", "/api/v1/environments/default/revisions/web-1", `{}`, 405, v1.ErrInvalid, ""},
		{"unknown plural", "/api/v1/environments/default/widgets/web", service("web", "nginx"), 404, v1.ErrNotFound, ""},
		{"environments are not scoped", "/api/v1/environments/default/environments/x", environment("x"), 404, v1.ErrNotFound, ""},
		{"POST is not apply", svcPath + "?x", service("web", "nginx"), 405, v1.ErrInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPut
			if strings.HasPrefix(tc.name, "POST") {
				method = http.MethodPost
			}
			r := e.do(method, tc.path, tc.body)
			e.expect(r, tc.status, tc.kind, tc.field)
			if strings.Contains(tc.name, "missing environment") {
				if msg := r.errorBody(t).Message; !strings.Contains(msg, `"staging" not found`) || !strings.Contains(msg, "berth apply") {
					t.Errorf("message %q should say the environment is missing and how to create it", msg)
				}
			}
			if tc.name == "unknown plural" {
				if msg := r.errorBody(t).Message; !strings.Contains(msg, "services") || !strings.Contains(msg, "environments") {
					t.Errorf("message %q should name the known kinds", msg)
				}
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	// Nothing was written by any of them.
	e.expect(e.do(http.MethodGet, svcPath, nil), http.StatusNotFound, v1.ErrNotFound, "")
}

func TestOversizedBody(t *testing.T) {
	e := newEnv(t, options{})
	big := service("web", "nginx")
	big.Spec.Env = []v1.EnvVar{{Name: "PAD", Value: strings.Repeat("x", 5<<20)}}
	r := e.do(http.MethodPut, "/api/v1/environments/default/services/web", big)
	e.expect(r, http.StatusRequestEntityTooLarge, v1.ErrTooLarge, "")

	// Without a Content-Length the limit still holds.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, e.url+"/api/v1/environments/default/services/web",
		io.MultiReader(strings.NewReader(`{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"`), strings.NewReader(strings.Repeat("x", 5<<20))))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized body: status %d, want 413", resp.StatusCode)
	}

	// Image imports may be far larger.
	e.expect(e.do(http.MethodPost, "/api/v1/images/import", bytes.Repeat([]byte{'t'}, 5<<20)), http.StatusOK, "", "")
	if e.images.imported != 5<<20 {
		t.Errorf("import read %d bytes, want %d", e.images.imported, 5<<20)
	}
}

func TestCompareAndSwap(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web"
	first := decodeService(t, e.apply(path, service("web", "nginx:1"), http.StatusCreated, "created"))

	// Someone else writes in between.
	e.apply(path, service("web", "nginx:2"), http.StatusOK, "configured")

	stale := service("web", "nginx:3")
	stale.Metadata.ResourceVersion = first.Metadata.ResourceVersion
	e.expect(e.do(http.MethodPut, path, stale), http.StatusConflict, v1.ErrConflict, "")
	// Even when the spec would be unchanged, a stale version is refused.
	stale.Spec.Image = "nginx:2"
	e.expect(e.do(http.MethodPut, path, stale), http.StatusConflict, v1.ErrConflict, "")

	cur := decodeService(t, e.do(http.MethodGet, path, nil).body)
	fresh := service("web", "nginx:3")
	fresh.Metadata.ResourceVersion = cur.Metadata.ResourceVersion
	svc := decodeService(t, e.apply(path, fresh, http.StatusOK, "configured"))
	if svc.Metadata.Generation != 3 {
		t.Errorf("generation %d, want 3", svc.Metadata.Generation)
	}

	// A version on an object that does not exist cannot match.
	ghost := service("ghost", "nginx")
	ghost.Metadata.ResourceVersion = 7
	e.expect(e.do(http.MethodPut, "/api/v1/environments/default/services/ghost", ghost), http.StatusConflict, v1.ErrConflict, "")
}

func TestDefaultEnvironmentCreatedOnApply(t *testing.T) {
	e := newEnv(t, options{noDefaultEnv: true})
	e.apply("/api/v1/environments/default/services/web?dryRun=1", service("web", "nginx"), http.StatusCreated, "created")
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.apply("/api/v1/environments/default/services/web", service("web", "nginx"), http.StatusCreated, "created")
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default", nil), http.StatusOK, "", "")
}

func TestDeleteRules(t *testing.T) {
	e := newEnv(t, options{})
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/default/services/web", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/nope", nil), http.StatusNotFound, v1.ErrNotFound, "")

	e.apply("/api/v1/environments/staging", environment("staging"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/services/api", service("api", "nginx"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/services/web", service("web", "nginx"), http.StatusCreated, "created")

	r := e.do(http.MethodDelete, "/api/v1/environments/staging", nil)
	e.expect(r, http.StatusConflict, v1.ErrConflict, "")
	if msg := r.errorBody(t).Message; !strings.Contains(msg, "api, web") {
		t.Errorf("conflict message %q should list the services", msg)
	}
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/default", nil), http.StatusConflict, v1.ErrConflict, "")
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/staging/revisions/web-1", nil), http.StatusMethodNotAllowed, v1.ErrInvalid, "")

	for _, name := range []string{"api", "web"} {
		r := e.do(http.MethodDelete, "/api/v1/environments/staging/services/"+name, nil)
		e.expect(r, http.StatusOK, "", "")
		if got := decodeService(t, r.body); got.Metadata.Name != name {
			t.Errorf("delete answered %q, want the deleted service %q", got.Metadata.Name, name)
		}
	}
	e.expect(e.do(http.MethodDelete, "/api/v1/environments/staging", nil), http.StatusOK, "", "")
	e.expect(e.do(http.MethodGet, "/api/v1/environments/staging", nil), http.StatusNotFound, v1.ErrNotFound, "")
}

func seed(t *testing.T, st store.Store, objs ...v1.Object) {
	t.Helper()
	for _, obj := range objs {
		if err := store.Create(t.Context(), st, obj); err != nil {
			t.Fatalf("seed %s: %v", store.KeyOf(obj), err)
		}
	}
}

func revision(owner string, n int64, image string) *v1.Revision {
	tmpl := v1.Template{Image: image}
	v1.DefaultTemplate(&tmpl)
	return &v1.Revision{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindRevision},
		Metadata: v1.ObjectMeta{Name: v1.RevisionName(owner, n), Environment: "default"},
		Spec: v1.RevisionSpec{Owner: owner, OwnerKind: v1.KindService, Number: n, Image: image,
			ImageDigest: "sha256:" + strings.Repeat(fmt.Sprint(n%10), 64), Template: tmpl, Hash: v1.TemplateHash(tmpl)},
	}
}

func TestRevisionsAndRollback(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web"
	e.apply(path, service("web", "nginx:10"), http.StatusCreated, "created")
	seed(t, e.store, revision("web", 10, "nginx:10"), revision("web", 2, "nginx:2"), revision("web", 3, "nginx:3"),
		revision("web", 1, "nginx:1"), revision("webber", 1, "other"))

	// The controller is at revision 10.
	var svc v1.Service
	if err := store.Get(t.Context(), e.store, store.Key{Kind: v1.KindService, Environment: "default", Name: "web"}, &svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.Revision = 10
	replicas := int32(3)
	svc.Spec.Replicas = &replicas
	if err := store.Update(t.Context(), e.store, &svc); err != nil {
		t.Fatal(err)
	}

	r := e.do(http.MethodGet, path+"/revisions", nil)
	e.expect(r, http.StatusOK, "", "")
	var list v1.List
	json.Unmarshal(r.body, &list)
	var numbers []int64
	for _, item := range list.Items {
		var rev v1.Revision
		json.Unmarshal(item, &rev)
		numbers = append(numbers, rev.Spec.Number)
	}
	if fmt.Sprint(numbers) != "[1 2 3 10]" {
		t.Errorf("revisions %v, want [1 2 3 10] (this service's, by number)", numbers)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/services/nope/revisions", nil), http.StatusNotFound, v1.ErrNotFound, "")

	e.expect(e.do(http.MethodPost, path+"/rollback", map[string]int64{"toRevision": 10}), http.StatusConflict, v1.ErrConflict, "")
	e.expect(e.do(http.MethodPost, path+"/rollback", map[string]int64{"toRevision": 7}), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodPost, path+"/rollback", `{"toRevision": 1, "extra": true}`), http.StatusBadRequest, v1.ErrInvalid, "")
	e.expect(e.do(http.MethodPost, "/api/v1/environments/default/services/nope/rollback", nil), http.StatusNotFound, v1.ErrNotFound, "")

	// No body: the revision before the current one, 3.
	r = e.do(http.MethodPost, path+"/rollback", nil)
	e.expect(r, http.StatusOK, "", "")
	got := decodeService(t, r.body)
	if got.Spec.Image != "nginx:3" || got.Metadata.Generation != 2 || got.Spec.Replicas == nil || *got.Spec.Replicas != 3 {
		t.Errorf("after rollback: image %q generation %d replicas %v; want nginx:3, generation 2, replicas kept at 3",
			got.Spec.Image, got.Metadata.Generation, got.Spec.Replicas)
	}
	stored := decodeService(t, e.do(http.MethodGet, path, nil).body)
	if stored.Spec.Image != "nginx:3" || stored.Status.Revision != 10 {
		t.Errorf("stored after rollback: image %q status.revision %d", stored.Spec.Image, stored.Status.Revision)
	}

	// An explicit revision.
	r = e.do(http.MethodPost, path+"/rollback", map[string]int64{"toRevision": 1})
	e.expect(r, http.StatusOK, "", "")
	if got := decodeService(t, r.body); got.Spec.Image != "nginx:1" || got.Metadata.Generation != 3 {
		t.Errorf("rollback to 1: image %q generation %d", got.Spec.Image, got.Metadata.Generation)
	}
}

func TestEventsAndLists(t *testing.T) {
	e := newEnv(t, options{})
	e.apply("/api/v1/environments/staging", environment("staging"), http.StatusCreated, "created")
	ev := func(name, object string, sec int) *v1.Event {
		return &v1.Event{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEvent},
			Metadata: v1.ObjectMeta{Name: name, Environment: "default"},
			Object:   object, Type: "Normal", Reason: "Test", Message: name,
			Time: time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC),
		}
	}
	seed(t, e.store, ev("a", "Service/web", 30), ev("b", "Service/web", 10), ev("c", "Service/api", 20), ev("d", "Service/web", 20))

	names := func(r response) string {
		t.Helper()
		e.expect(r, http.StatusOK, "", "")
		var list v1.List
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, item := range list.Items {
			var m struct {
				Metadata v1.ObjectMeta `json:"metadata"`
			}
			json.Unmarshal(item, &m)
			out = append(out, m.Metadata.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(e.do(http.MethodGet, "/api/v1/environments/default/events", nil)); got != "b,c,d,a" {
		t.Errorf("events %s, want b,c,d,a (by time)", got)
	}
	if got := names(e.do(http.MethodGet, "/api/v1/environments/default/events?object=Service/web", nil)); got != "b,d,a" {
		t.Errorf("events of Service/web %s, want b,d,a", got)
	}

	e.apply("/api/v1/environments/default/services/web", service("web", "nginx"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/staging/services/api", service("api", "nginx"), http.StatusCreated, "created")
	if got := names(e.do(http.MethodGet, "/api/v1/services", nil)); got != "web,api" {
		t.Errorf("services in all environments %s, want web,api", got)
	}
	if got := names(e.do(http.MethodGet, "/api/v1/environments/staging/services", nil)); got != "api" {
		t.Errorf("services in staging %s, want api", got)
	}
	if got := names(e.do(http.MethodGet, "/api/v1/environments/nowhere/services", nil)); got != "" {
		t.Errorf("services in a missing environment %s, want none", got)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/widgets", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodGet, "/elsewhere", nil), http.StatusNotFound, v1.ErrNotFound, "")
}

// memImages is an image store in memory: enough to see the HTTP side of
// the image endpoints.
type memImages struct {
	mu       sync.Mutex
	imported int64
	images   []v1.Image
	panicOn  string
	access   images.Access // of the last call that carried one
}

func (m *memImages) Import(ctx context.Context, a images.Access, r io.Reader) ([]v1.Image, error) {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.imported, m.access = n, a
	img := v1.Image{Name: fmt.Sprintf("imported:%d", n), Digest: "sha256:abc", Size: n}
	m.images = append(m.images, img)
	return []v1.Image{img}, nil
}

func (m *memImages) List(ctx context.Context, a images.Access) ([]v1.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.access = a
	if m.panicOn == "List" {
		panic("image store exploded")
	}
	return append([]v1.Image(nil), m.images...), nil
}

func (m *memImages) Pull(ctx context.Context, ref string) (v1.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if strings.Contains(ref, "missing") {
		return v1.Image{}, fmt.Errorf("pull %s: %w", ref, v1.NotFound("no such image in the registry"))
	}
	img := v1.Image{Name: ref, Digest: "sha256:def"}
	m.images = append(m.images, img)
	return img, nil
}

func (m *memImages) Remove(ctx context.Context, a images.Access, ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.access = a
	for i, img := range m.images {
		if img.Name == ref {
			m.images = append(m.images[:i], m.images[i+1:]...)
			return nil
		}
	}
	return v1.NotFound("image %q not found", ref)
}

func TestImages(t *testing.T) {
	e := newEnv(t, options{})
	r := e.do(http.MethodGet, "/api/v1/images", nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("empty image list: %d %s, want 200 []", r.status, r.body)
	}
	r = e.do(http.MethodPost, "/api/v1/images/pull", map[string]string{"ref": "docker.io/library/nginx:latest"})
	e.expect(r, http.StatusOK, "", "")
	r = e.do(http.MethodPost, "/api/v1/images/pull", map[string]string{"ref": "docker.io/library/missing:1"})
	e.expect(r, http.StatusNotFound, v1.ErrNotFound, "")
	if msg := r.errorBody(t).Message; msg != "pull docker.io/library/missing:1: no such image in the registry" {
		t.Errorf("wrapped error message %q should keep the context", msg)
	}
	e.expect(e.do(http.MethodPost, "/api/v1/images/pull", `{}`), http.StatusBadRequest, v1.ErrInvalid, "ref")
	e.expect(e.do(http.MethodDelete, "/api/v1/images/"+strings.ReplaceAll("docker.io/library/nginx:latest", "/", "%2F"), nil), http.StatusNoContent, "", "")
	e.expect(e.do(http.MethodDelete, "/api/v1/images/docker.io%2Flibrary%2Fnginx:latest", nil), http.StatusNotFound, v1.ErrNotFound, "")
}

func TestPanicsAreRecovered(t *testing.T) {
	e := newEnv(t, options{images: &memImages{panicOn: "List"}})
	r := e.do(http.MethodGet, "/api/v1/images", nil)
	e.expect(r, http.StatusInternalServerError, v1.ErrInternal, "")
	if strings.Contains(string(r.body), "exploded") {
		t.Errorf("the panic value leaked to the client: %s", r.body)
	}
	// The server keeps serving.
	e.expect(e.do(http.MethodGet, "/api/v1/environments", nil), http.StatusOK, "", "")
}

func writeLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web/logs"
	e.apply("/api/v1/environments/default/services/web", service("web", "nginx"), http.StatusCreated, "created")

	// A service that has logged nothing yet has no lines; no service and no
	// logs is a typo.
	r := e.do(http.MethodGet, path, nil)
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("service without logs: %d %q, want 200 and nothing", r.status, r.body)
	}
	e.expect(e.do(http.MethodGet, "/api/v1/environments/default/services/nope/logs?follow=1", nil), http.StatusNotFound, v1.ErrNotFound, "")
	e.expect(e.do(http.MethodGet, path+"?since=yesterday", nil), http.StatusBadRequest, v1.ErrInvalid, "since")
	e.expect(e.do(http.MethodGet, path+"?tail=-3", nil), http.StatusBadRequest, v1.ErrInvalid, "tail")
	e.expect(e.do(http.MethodGet, path+"?instance=..", nil), http.StatusBadRequest, v1.ErrInvalid, "instance")

	dir := logs.Dir(e.logDir, "default", "web")
	writeLog(t, filepath.Join(dir, "web-a.log"),
		"2026-11-28T08:23:19.000000000Z stdout F one",
		"2026-11-28T08:23:21.000000000Z stdout P tw",
		"2026-11-28T08:23:21.500000000Z stdout F o")
	writeLog(t, filepath.Join(dir, "web-b.log"), "2026-11-28T08:23:20.000000000Z stderr F from b")

	r = e.do(http.MethodGet, path, nil)
	e.expect(r, http.StatusOK, "", "")
	if got, want := string(r.body), "[web-a] one\n[web-b] from b\n[web-a] two\n"; got != want {
		t.Errorf("logs:\n%s\nwant:\n%s", got, want)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	r = e.do(http.MethodGet, path+"?instance=web-a&tail=1&timestamps=1", nil)
	if got, want := string(r.body), "2026-11-28T08:23:21.5Z two\n"; got != want {
		t.Errorf("one instance, tail 1, timestamps: %q, want %q", got, want)
	}
	r = e.do(http.MethodGet, path+"?since=2026-11-28T08:23:20Z", nil)
	if got, want := string(r.body), "[web-b] from b\n[web-a] two\n"; got != want {
		t.Errorf("since: %q, want %q", got, want)
	}
	r = e.do(http.MethodGet, path+"?since=5m", nil)
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("since 5m of 2026 logs: %d %q, want nothing", r.status, r.body)
	}
	e.expect(e.do(http.MethodGet, path+"?instance=web-z", nil), http.StatusNotFound, v1.ErrNotFound, "")
}

func TestLogsFollowOverHTTP(t *testing.T) {
	e := newEnv(t, options{})
	e.apply("/api/v1/environments/default/services/web", service("web", "nginx"), http.StatusCreated, "created")
	dir := logs.Dir(e.logDir, "default", "web")
	writeLog(t, filepath.Join(dir, "web-a.log"), "2026-11-28T08:23:19.000000000Z stdout F before")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/v1/environments/default/services/web/logs?follow=1&tail=1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("follow: status %d", resp.StatusCode)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok || got != want {
				t.Fatalf("next line %q (open %v), want %q", got, ok, want)
			}
		case <-ctx.Done():
			t.Fatalf("no line %q before the deadline", want)
		}
	}
	next("[web-a] before")
	writeLog(t, filepath.Join(dir, "web-a.log"), "2026-11-28T08:23:20.000000000Z stdout F appended")
	next("[web-a] appended")
	writeLog(t, filepath.Join(dir, "web-b.log"), "2026-11-28T08:23:21.000000000Z stdout F new instance")
	next("[web-b] new instance")

	// The client going away ends the stream on the server; the server
	// then closes cleanly (httptest's Close waits for handlers).
	cancel()
	for range lines {
	}
}

// dirLogs reads logs from a directory as the local backend does.
type dirLogs string

func (d dirLogs) Logs(ctx context.Context, q logs.Query, w io.Writer) error {
	return logs.Read(ctx, string(d), q, w)
}

// failingTxn fails every transaction of more than one op while fail is
// set, as a store that errs at the last write of a stack deploy would.
type failingTxn struct {
	store.Store
	fail atomic.Bool
}

func (f *failingTxn) Txn(ctx context.Context, ops []store.Op) ([]uint64, error) {
	if f.fail.Load() && len(ops) > 1 {
		return nil, errors.New("disk full")
	}
	return f.Store.Txn(ctx, ops)
}

// A stack deploy is all or nothing: when its write fails, no object of
// it is applied or deleted and no revision is recorded.
func TestStackDeployIsATransaction(t *testing.T) {
	var f *failingTxn
	e := newEnv(t, options{wrapStore: func(s store.Store) store.Store { f = &failingTxn{Store: s}; return f }})
	deploy := func(manifests ...string) response {
		req := v1.StackDeployRequest{}
		for i, m := range manifests {
			req.Manifests = append(req.Manifests, v1.StackManifest{File: fmt.Sprintf("m%d.yaml", i), Content: m})
		}
		b, _ := json.Marshal(req)
		return e.do(http.MethodPost, "/api/v1/environments/default/stacks/shop", b)
	}
	web := func(replicas int) string {
		return fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: nginx, replicas: %d}\n", replicas)
	}
	topic := func(name string) string {
		return "apiVersion: berth.dev/v1\nkind: Topic\nmetadata: {name: " + name + "}\n"
	}
	if r := deploy(web(1), topic("old")); r.status != 200 {
		t.Fatalf("first deploy: %d %s", r.status, r.body)
	}
	f.fail.Store(true)
	// Changes web, adds topic new, removes topic old: none of it may land.
	r := deploy(web(3), topic("new"))
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "nothing was applied") {
		t.Fatalf("failed deploy: %d %s, want 503 saying nothing was applied", r.status, r.body)
	}
	f.fail.Store(false)
	if got := e.do(http.MethodGet, "/api/v1/environments/default/services/web", nil); !strings.Contains(string(got.body), `"replicas":1`) {
		t.Errorf("web after the failed deploy: %s", got.body)
	}
	if got := e.do(http.MethodGet, "/api/v1/environments/default/topics/new", nil); got.status != 404 {
		t.Errorf("topic new after the failed deploy: %d", got.status)
	}
	if got := e.do(http.MethodGet, "/api/v1/environments/default/topics/old", nil); got.status != 200 {
		t.Errorf("topic old after the failed deploy: %d", got.status)
	}
	var st v1.Stack
	json.Unmarshal(e.do(http.MethodGet, "/api/v1/environments/default/stacks/shop", nil).body, &st)
	if st.Status.Revision != 1 || len(st.Status.History) != 1 {
		t.Errorf("stack after the failed deploy: revision %d, %d in history; want 1 and 1", st.Status.Revision, len(st.Status.History))
	}
	if r := deploy(web(3), topic("new")); r.status != 200 {
		t.Fatalf("deploy once the store works: %d %s", r.status, r.body)
	}
	if got := e.do(http.MethodGet, "/api/v1/environments/default/topics/old", nil); got.status != 404 {
		t.Errorf("topic old after the second deploy: %d, want deleted", got.status)
	}
}

// racingStatus writes a controller's status to a service once, right
// after the API server has read it: the write the apply must not lose to.
type racingStatus struct {
	store.Store
	armed atomic.Bool
}

func (r *racingStatus) Get(ctx context.Context, key store.Key) (store.Record, error) {
	rec, err := r.Store.Get(ctx, key)
	if err == nil && key.Kind == v1.KindService && r.armed.CompareAndSwap(true, false) {
		var svc v1.Service
		if err := store.Get(ctx, r.Store, key, &svc); err == nil {
			svc.Status.ReadyReplicas++
			_ = store.Update(ctx, r.Store, &svc)
		}
	}
	return rec, err
}

// An apply without a resourceVersion is not refused because a controller
// wrote the object's status between the server's read and its write: it
// applies to the new record, and the status written stays.
func TestApplyOutlastsAStatusWrite(t *testing.T) {
	var r *racingStatus
	e := newEnv(t, options{wrapStore: func(s store.Store) store.Store { r = &racingStatus{Store: s}; return r }})
	path := "/api/v1/environments/default/services/web"
	e.apply(path, service("web", "nginx:1.27"), http.StatusCreated, "created")
	r.armed.Store(true)
	svc := decodeService(t, e.apply(path, service("web", "nginx:1.28"), http.StatusOK, "configured"))
	if r.armed.Load() {
		t.Fatal("the status write did not happen: the test tests nothing")
	}
	if svc.Spec.Image != "nginx:1.28" || svc.Status.ReadyReplicas != 1 {
		t.Fatalf("after the apply: image %q, ready %d; want nginx:1.28 and the controller's status kept", svc.Spec.Image, svc.Status.ReadyReplicas)
	}
}

// /readyz, like Kubernetes', says whether the server takes traffic yet:
// 503 with the reason until Ready says so, without a token.
func TestReadyz(t *testing.T) {
	var ready atomic.Bool
	srv := apiserver.New(apiserver.Config{Ready: func() error {
		if !ready.Load() {
			return v1.Unavailable("the gateway has no routing table yet")
		}
		return nil
	}})
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec
	}
	if rec := get(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no routing table") {
		t.Fatalf("/readyz before ready: %d %q, want 503 with the reason", rec.Code, rec.Body.String())
	}
	ready.Store(true)
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("/readyz once ready: %d %q, want 200", rec.Code, rec.Body.String())
	}
}

// A stack deploy, likewise, is planned again when a controller's status
// write lands between its reads and its one transaction.
func TestStackDeployOutlastsAStatusWrite(t *testing.T) {
	var r *racingStatus
	e := newEnv(t, options{wrapStore: func(s store.Store) store.Store { r = &racingStatus{Store: s}; return r }})
	deploy := func(image string) response {
		req := v1.StackDeployRequest{Manifests: []v1.StackManifest{{File: "web.yaml",
			Content: "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: " + image + "}\n"}}}
		b, _ := json.Marshal(req)
		return e.do(http.MethodPost, "/api/v1/environments/default/stacks/shop", b)
	}
	if res := deploy("nginx:1.27"); res.status != http.StatusOK {
		t.Fatalf("first deploy: %d %s", res.status, res.body)
	}
	r.armed.Store(true)
	if res := deploy("nginx:1.28"); res.status != http.StatusOK {
		t.Fatalf("deploy while a status write lands: %d %s, want 200", res.status, res.body)
	}
	if r.armed.Load() {
		t.Fatal("the status write did not happen: the test tests nothing")
	}
	got := e.do(http.MethodGet, "/api/v1/environments/default/services/web", nil)
	if !strings.Contains(string(got.body), "nginx:1.28") || !strings.Contains(string(got.body), `"readyReplicas":1`) {
		t.Fatalf("web after the deploy: %s; want nginx:1.28 and the controller's status kept", got.body)
	}
}
