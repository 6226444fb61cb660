package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store"
)

// node is the capacity the admission tests run against: 2 cores, 4Gi.
var node = apiserver.NodeCapacity{CPUMillis: 2000, MemoryBytes: 4 << 30}

func withNode(c *apiserver.Config) { c.Capacity = node }

func manifest(kind string, spec map[string]any) string {
	b, _ := json.Marshal(map[string]any{"apiVersion": v1.APIVersion, "kind": kind, "spec": spec})
	return string(b)
}

func storedResources(t *testing.T, body string) v1.Resources {
	t.Helper()
	var out struct {
		Object struct {
			Spec struct {
				Resources v1.Resources `json:"resources"`
			} `json:"spec"`
		} `json:"object"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return out.Object.Spec.Resources
}

// A workload without limits gets its environment's defaults (or the
// built-in ones) written into its stored spec: what runs is what the quota
// counts, and a re-apply of the same manifest changes nothing.
func TestAdmissionWritesDefaultLimits(t *testing.T) {
	s := newScopedServer(t, withNode)
	s.must(token, "PUT", "/api/v1/environments/dev", manifest(v1.KindEnvironment, map[string]any{
		"limits": map[string]any{"default": map[string]any{"cpu": "250m", "memory": "128Mi"}, "max": map[string]any{"pids": 512}}}), 201)
	for _, tc := range []struct {
		path string
		body string
		want v1.Resources
	}{
		{"/api/v1/environments/dev/services/web", manifest(v1.KindService, map[string]any{"image": "nginx:1.27"}),
			v1.Resources{CPU: "250m", Memory: "128Mi", Pids: 512}},
		{"/api/v1/environments/dev/services/db", manifest(v1.KindService, map[string]any{"image": "nginx:1.27", "resources": map[string]any{"memory": "1Gi"}}),
			v1.Resources{CPU: "250m", Memory: "1Gi", Pids: 512}},
		{"/api/v1/environments/dev/functions/resize", manifest(v1.KindFunction, map[string]any{"image": "nginx:1.27"}),
			v1.Resources{CPU: "250m", Memory: "128Mi", Pids: 512}},
		{"/api/v1/environments/default/services/web", manifest(v1.KindService, map[string]any{"image": "nginx:1.27"}),
			v1.Resources{CPU: v1.DefaultCPU, Memory: v1.DefaultMemory, Pids: v1.DefaultPids}},
	} {
		if got := storedResources(t, s.must(token, "PUT", tc.path, tc.body, 201)); got != tc.want {
			t.Errorf("%s: stored resources %+v, want %+v", tc.path, got, tc.want)
		}
		if out := s.must(token, "PUT", tc.path, tc.body, 200); !strings.Contains(out, `"result":"unchanged"`) {
			t.Errorf("%s: re-apply of the same manifest: %s", tc.path, out)
		}
		if got := storedResources(t, `{"object":`+s.must(token, "GET", tc.path, "", 200)+`}`); got != tc.want {
			t.Errorf("%s: GET shows resources %+v, want %+v", tc.path, got, tc.want)
		}
	}
	// A change of the environment's defaults rolls nothing by itself: the
	// stored specs stay as they were until their next apply.
	s.must(token, "PUT", "/api/v1/environments/dev", manifest(v1.KindEnvironment, map[string]any{
		"limits": map[string]any{"default": map[string]any{"cpu": "100m"}}}), 200)
	if got := storedResources(t, `{"object":`+s.must(token, "GET", "/api/v1/environments/dev/services/web", "", 200)+`}`); got.CPU != "250m" {
		t.Errorf("after the defaults changed, the stored service has %+v", got)
	}
	out := s.must(token, "PUT", "/api/v1/environments/dev/services/web", manifest(v1.KindService, map[string]any{"image": "nginx:1.27"}), 200)
	if got := storedResources(t, out); !strings.Contains(out, `"result":"configured"`) || got.CPU != "100m" || got.Pids != v1.DefaultPids {
		t.Errorf("re-apply after the defaults changed: %s", out)
	}
}

func TestAdmissionRefusals(t *testing.T) {
	s := newScopedServer(t, withNode)
	s.must(token, "PUT", "/api/v1/environments/dev", manifest(v1.KindEnvironment, map[string]any{
		"quota":  map[string]any{"memory": "1Gi"},
		"limits": map[string]any{"default": map[string]any{"memory": "128Mi"}, "max": map[string]any{"cpu": "1", "memory": "512Mi"}}}), 201)
	svc := func(spec map[string]any) string {
		spec["image"] = "nginx:1.27"
		return manifest(v1.KindService, spec)
	}
	res := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		path  string
		body  string
		code  int
		field string
		msg   string
	}{
		{"cpu beyond the node", "default/services/big", svc(res("resources", res("cpu", "100000"))), 400,
			"spec.resources.cpu", "100000 cores per instance is more than this node has, 2 cores"},
		{"memory beyond the node", "default/services/big", svc(res("resources", res("memory", "900Ti"))), 400,
			"spec.resources.memory", "900Ti of memory per instance is more than this node has, 4Gi"},
		{"replicas beyond the node's memory", "default/services/big", svc(res("replicas", 1000)), 400,
			"spec.replicas", "1000 replicas × 256Mi of memory = 250Gi, more than this node has, 4Gi; lower replicas or resources.memory"},
		{"function at max scale beyond the node's memory", "default/functions/big",
			manifest(v1.KindFunction, res("image", "nginx:1.27", "scale", res("max", 20), "resources", res("memory", "512Mi"))), 400,
			"spec.scale.max", "20 instances at scale.max × 512Mi of memory = 10Gi, more than this node has, 4Gi"},
		{"all of the node's memory", "default/services/fits", svc(res("replicas", 4, "resources", res("memory", "1Gi"))), 201, "", ""},
		{"cpu limits may add up past the node", "default/services/busy", svc(res("replicas", 8, "resources", res("cpu", "2"))), 201, "", ""},
		{"above the environment's max", "dev/services/web", svc(res("resources", res("cpu", "1500m"))), 400,
			"spec.resources.cpu", `1500m per instance is above the most environment "dev" allows, 1`},
		{"within the quota with the defaults", "dev/services/web", svc(res("replicas", 6)), 201, "", ""},
		{"the defaults count against the quota", "dev/services/api", svc(res("replicas", 3)), 400,
			"spec.resources", `quota exceeded in environment "dev": memory 1.12Gi requested (768Mi in use + 384Mi for service/api), quota 1Gi`},
		{"pids out of range", "dev/services/api", svc(res("resources", res("pids", 8))), 400, "spec.resources.pids", "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.call(token, "PUT", "/api/v1/environments/"+tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if tc.field == "" {
				return
			}
			var st v1.Status
			json.Unmarshal([]byte(body), &st)
			if st.Error.Kind != v1.ErrInvalid || st.Error.Field != tc.field || !strings.Contains(st.Error.Message, tc.msg) {
				t.Fatalf("got %+v\nwant field %s and …%s…", st.Error, tc.field, tc.msg)
			}
		})
	}
	// A stack is admitted as its workloads would be one by one.
	b, _ := json.Marshal(v1.StackDeployRequest{Manifests: []v1.StackManifest{{File: "big.yaml",
		Content: "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: big}\nspec: {image: nginx, resources: {cpu: \"64\"}}\n"}}})
	code, body := s.call(token, "POST", "/api/v1/environments/default/stacks/shop", string(b))
	if code != 400 || !strings.Contains(body, `"file":"big.yaml"`) || !strings.Contains(body, "64 cores per instance is more than this node has") {
		t.Fatalf("stack beyond the node: %d %s", code, body)
	}
	b, _ = json.Marshal(v1.StackDeployRequest{Manifests: []v1.StackManifest{{File: "ok.yaml",
		Content: "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: small}\nspec: {image: nginx}\n"}}})
	s.must(token, "POST", "/api/v1/environments/dev/stacks/shop", string(b), 200)
	if got := storedResources(t, `{"object":`+s.must(token, "GET", "/api/v1/environments/dev/services/small", "", 200)+`}`); got.Memory != "128Mi" {
		t.Errorf("a stack's service got %+v, want the environment's default memory", got)
	}
}

// An environment's own admin may change its allowFrom and labels, but not
// its quota or limits, nor create an environment: raising its own share
// of the node is an admin-of-all-environments' call.
func TestOnlyFullAdminSetsQuota(t *testing.T) {
	s := newScopedServer(t)
	withQuota := func(cpu string, extra map[string]any) string {
		spec := map[string]any{"quota": map[string]any{"cpu": cpu}}
		for k, v := range extra {
			spec[k] = v
		}
		return manifest(v1.KindEnvironment, spec)
	}
	s.must(token, "PUT", "/api/v1/environments/dev", withQuota("2", nil), 201)
	var tok v1.Token
	json.Unmarshal([]byte(s.must(token, "POST", "/api/v1/tokens", `{"name":"dev-admin","environments":["dev"],"role":"admin"}`, 201)), &tok)
	quota := func() string {
		var e v1.Environment
		json.Unmarshal([]byte(s.must(token, "GET", "/api/v1/environments/dev", "", 200)), &e)
		if e.Spec.Quota == nil {
			return "<none>"
		}
		return e.Spec.Quota.CPU
	}
	for _, tc := range []struct {
		name, path, body, msg string
	}{
		{"raise the quota", "dev", withQuota("64", nil), `may not change spec.quota of environment "dev"`},
		{"drop the quota", "dev", manifest(v1.KindEnvironment, map[string]any{}), "may not change spec.quota"},
		{"set limits", "dev", withQuota("2", map[string]any{"limits": map[string]any{"max": map[string]any{"cpu": "8"}}}), "may not change spec.limits"},
	} {
		code, body := s.call(tok.Secret, "PUT", "/api/v1/environments/"+tc.path, tc.body)
		var st v1.Status
		json.Unmarshal([]byte(body), &st)
		if code != http.StatusForbidden || st.Error.Kind != v1.ErrForbidden || !strings.Contains(st.Error.Message, tc.msg) ||
			!strings.Contains(st.Error.Message, `token "dev-admin" (role admin, environments dev)`) ||
			!strings.Contains(st.Error.Message, "only an admin token for all environments") {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
		if q := quota(); q != "2" {
			t.Fatalf("%s: quota is now %s", tc.name, q)
		}
	}
	// Creating an environment is out of its reach: a token names only
	// environments that exist (and loses them when they are deleted).
	if code, body := s.call(tok.Secret, "PUT", "/api/v1/environments/qa", manifest(v1.KindEnvironment, map[string]any{})); code != http.StatusForbidden {
		t.Errorf("create an environment: %d %s", code, body)
	}
	s.must(token, "GET", "/api/v1/environments/qa", "", 404)
	// Its other fields are its own, with the quota as it is.
	s.must(tok.Secret, "PUT", "/api/v1/environments/dev", withQuota("2", map[string]any{"allowFrom": []string{"staging"}}), 200)
	s.must(token, "PUT", "/api/v1/environments/dev", withQuota("64", nil), 200)
	if q := quota(); q != "64" {
		t.Fatalf("admin of all environments set the quota to 64; it is %s", q)
	}
}

// A rollback to a revision made before limits were written at apply gets
// the environment's defaults, as an apply would.
func TestRollbackGetsDefaultLimits(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web"
	e.apply(path, service("web", "nginx:2"), http.StatusCreated, "created")
	seed(t, e.store, revision("web", 1, "nginx:1"))
	var svc v1.Service
	key := store.Key{Kind: v1.KindService, Environment: "default", Name: "web"}
	if err := store.Get(t.Context(), e.store, key, &svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.Revision = 2
	if err := store.Update(t.Context(), e.store, &svc); err != nil {
		t.Fatal(err)
	}
	r := e.do(http.MethodPost, path+"/rollback", map[string]int64{"toRevision": 1})
	e.expect(r, http.StatusOK, "", "")
	got := decodeService(t, r.body)
	want := v1.Resources{CPU: v1.DefaultCPU, Memory: v1.DefaultMemory, Pids: v1.DefaultPids}
	if got.Spec.Image != "nginx:1" || got.Spec.Resources != want {
		t.Errorf("after rollback: image %s resources %+v, want nginx:1 with %+v", got.Spec.Image, got.Spec.Resources, want)
	}
}
