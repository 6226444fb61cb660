package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// fakeAPI is an in-memory server that speaks docs/api.md: it stores what is
// PUT, answers GETs from what it stores, keeps revisions and events, and
// streams logs. Controllers are absent: tests write status themselves,
// or through onGetService to play a rollout forward.
type fakeAPI struct {
	t     *testing.T
	srv   *httptest.Server
	token string
	now   time.Time

	mu       sync.Mutex
	objects  map[string]json.RawMessage // plural/env/name
	requests []string                   // "METHOD path?query"
	uid      int
	// onGetService, when set, may change a stored service each time it is
	// read: a stand-in for the controller making progress.
	onGetService func(svc *v1.Service)
	// onGetFunction is onGetService for functions.
	onGetFunction func(fn *v1.Function)
	// failWith makes the next request to "METHOD path" fail with the error.
	failWith  map[string]*v1.Error
	logText   string
	logFollow chan string
	images    []v1.Image
	// invocations are the asynchronous invocations the fake knows, by id;
	// invoked and published record what reached it.
	invocations map[string]v1.Invocation
	invoked     []invokeCall
	published   []string
}

type invokeCall struct {
	fn, body, contentType, callback string
	header                          http.Header
	async                           bool
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{
		t:       t,
		token:   "s3cret",
		now:     testNow,
		objects: map[string]json.RawMessage{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /api/v1/environments", f.auth(f.listEnvironments))
	mux.HandleFunc("GET /api/v1/environments/{name}", f.auth(f.getObject))
	mux.HandleFunc("PUT /api/v1/environments/{name}", f.auth(f.putObject))
	mux.HandleFunc("DELETE /api/v1/environments/{name}", f.auth(f.deleteObject))
	mux.HandleFunc("GET /api/v1/environments/{env}/{plural}", f.auth(f.listObjects))
	mux.HandleFunc("GET /api/v1/{plural}", f.auth(f.listObjects))
	mux.HandleFunc("GET /api/v1/environments/{env}/{plural}/{name}", f.auth(f.getObject))
	mux.HandleFunc("PUT /api/v1/environments/{env}/{plural}/{name}", f.auth(f.putObject))
	mux.HandleFunc("DELETE /api/v1/environments/{env}/{plural}/{name}", f.auth(f.deleteObject))
	mux.HandleFunc("GET /api/v1/environments/{env}/services/{name}/revisions", f.auth(f.revisions("services")))
	mux.HandleFunc("POST /api/v1/environments/{env}/services/{name}/rollback", f.auth(f.rollback("services")))
	mux.HandleFunc("GET /api/v1/environments/{env}/functions/{name}/revisions", f.auth(f.revisions("functions")))
	mux.HandleFunc("POST /api/v1/environments/{env}/functions/{name}/rollback", f.auth(f.rollback("functions")))
	mux.HandleFunc("POST /api/v1/environments/{env}/functions/{name}/invoke", f.auth(f.invoke))
	mux.HandleFunc("POST /api/v1/environments/{env}/functions/{name}/invocations", f.auth(f.invoke))
	mux.HandleFunc("GET /api/v1/environments/{env}/invocations/{id}", f.auth(f.getInvocation))
	mux.HandleFunc("POST /api/v1/environments/{env}/topics/{name}/messages", f.auth(f.publish))
	mux.HandleFunc("GET /api/v1/environments/{env}/services/{name}/logs", f.auth(f.logs))
	mux.HandleFunc("GET /api/v1/images", f.auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, http.StatusOK, append([]v1.Image{}, f.images...))
	}))
	mux.HandleFunc("DELETE /api/v1/images/{ref}", f.auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, img := range f.images {
			if img.Name == r.PathValue("ref") {
				f.images = append(f.images[:i], f.images[i+1:]...)
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		writeError(w, v1.NotFound("image %q not found", r.PathValue("ref")))
	}))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) URL() string { return f.srv.URL }

func (f *fakeAPI) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		forced := f.failWith[r.Method+" "+r.URL.Path]
		delete(f.failWith, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		if forced != nil {
			writeError(w, forced)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			writeError(w, v1.Errorf(v1.ErrUnauthorized, "missing or wrong bearer token"))
			return
		}
		h(w, r)
	}
}

func (f *fakeAPI) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func statusOf(kind string) int {
	switch kind {
	case v1.ErrInvalid:
		return 400
	case v1.ErrUnauthorized:
		return 401
	case v1.ErrForbidden:
		return 403
	case v1.ErrNotFound:
		return 404
	case v1.ErrConflict:
		return 409
	case v1.ErrTooLarge:
		return 413
	case v1.ErrUnavailable:
		return 503
	}
	return 500
}

func writeError(w http.ResponseWriter, err error) {
	e := &v1.Error{Kind: v1.ErrInternal, Message: err.Error()}
	if ve, ok := err.(*v1.Error); ok {
		e = ve
	}
	writeJSON(w, statusOf(e.Kind), v1.Status{Error: v1.ErrorBody{Kind: e.Kind, Message: e.Message, Field: e.Field}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func key(plural, env, name string) string { return plural + "/" + env + "/" + name }

// seed stores objects as they are, the way a real server's store would
// hold them after controllers ran.
func (f *fakeAPI) seed(objs ...v1.Object) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, obj := range objs {
		plural, err := pluralOf(obj.GetTypeMeta().Kind)
		if err != nil {
			f.t.Fatal(err)
		}
		// A real server stores objects defaulted.
		v1.SetDefaults(obj)
		meta := obj.GetMetadata()
		env := meta.Environment
		if plural == "environments" {
			env = ""
		}
		b, err := json.Marshal(obj)
		if err != nil {
			f.t.Fatal(err)
		}
		f.objects[key(plural, env, meta.Name)] = b
	}
}

func pluralOf(kind string) (string, error) {
	for _, k := range kinds {
		if k.Kind == kind || k.Plural == kind {
			return k.Plural, nil
		}
	}
	return "", v1.NotFound("the server has no resource type %q", kind)
}

func (f *fakeAPI) pathKey(r *http.Request) (plural, env, name string) {
	plural, env, name = r.PathValue("plural"), r.PathValue("env"), r.PathValue("name")
	if plural == "" {
		plural = "environments"
	}
	return plural, env, name
}

func (f *fakeAPI) getObject(w http.ResponseWriter, r *http.Request) {
	plural, env, name := f.pathKey(r)
	if _, err := pluralOf(plural); err != nil {
		writeError(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw, ok := f.objects[key(plural, env, name)]
	if !ok {
		writeError(w, v1.NotFound("%s %q not found in environment %q", plural, name, env))
		return
	}
	if plural == "services" && f.onGetService != nil {
		var svc v1.Service
		json.Unmarshal(raw, &svc)
		f.onGetService(&svc)
		raw, _ = json.Marshal(&svc)
		f.objects[key(plural, env, name)] = raw
	}
	if plural == "functions" && f.onGetFunction != nil {
		var fn v1.Function
		json.Unmarshal(raw, &fn)
		f.onGetFunction(&fn)
		raw, _ = json.Marshal(&fn)
		f.objects[key(plural, env, name)] = raw
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
}

func (f *fakeAPI) list(plural, env string, match func(json.RawMessage) bool) []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, plural+"/") && (env == "" || strings.HasPrefix(k, plural+"/"+env+"/")) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	items := []json.RawMessage{}
	for _, k := range keys {
		if match == nil || match(f.objects[k]) {
			items = append(items, f.objects[k])
		}
	}
	return items
}

func (f *fakeAPI) listEnvironments(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, v1.List{APIVersion: v1.APIVersion, Kind: "List", Items: f.list("environments", "", nil)})
}

func (f *fakeAPI) listObjects(w http.ResponseWriter, r *http.Request) {
	plural, env, _ := f.pathKey(r)
	if _, err := pluralOf(plural); err != nil || plural == "environments" {
		writeError(w, v1.NotFound("no such path"))
		return
	}
	var match func(json.RawMessage) bool
	if obj := r.URL.Query().Get("object"); plural == "events" && obj != "" {
		match = func(raw json.RawMessage) bool {
			var e v1.Event
			json.Unmarshal(raw, &e)
			return e.Object == obj
		}
	}
	items := f.list(plural, env, match)
	if plural == "events" {
		sort.SliceStable(items, func(i, j int) bool {
			var a, b v1.Event
			json.Unmarshal(items[i], &a)
			json.Unmarshal(items[j], &b)
			return a.Time.Before(b.Time)
		})
	}
	writeJSON(w, 200, v1.List{APIVersion: v1.APIVersion, Kind: "List", Items: items})
}

// putObject applies as docs/api.md says: defaults, validation, the
// environment must exist, status and server fields are kept, generation
// moves with spec.
func (f *fakeAPI) putObject(w http.ResponseWriter, r *http.Request) {
	plural, env, name := f.pathKey(r)
	body, _ := io.ReadAll(r.Body)
	var obj v1.Object
	switch plural {
	case "environments":
		obj = &v1.Environment{}
	case "services":
		obj = &v1.Service{}
	case "functions":
		obj = &v1.Function{}
	case "topics":
		obj = &v1.Topic{}
	default:
		writeError(w, v1.Invalid("%s cannot be applied", plural))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		writeError(w, v1.Invalid("%v", err))
		return
	}
	meta := obj.GetMetadata()
	if meta.Name != name {
		writeError(w, v1.FieldError("metadata.name", "%q differs from the path's %q", meta.Name, name))
		return
	}
	if plural != "environments" {
		if meta.Environment != "" && meta.Environment != env {
			writeError(w, &v1.Error{Kind: v1.ErrNotFound, Field: "metadata.environment", Message: "differs from the path"})
			return
		}
		meta.Environment = env
	}
	v1.SetDefaults(obj)
	if err := v1.Validate(obj); err != nil {
		writeError(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn, ok := obj.(*v1.Function); ok {
		for i, tr := range fn.Spec.Triggers {
			if _, ok := f.objects[key("topics", env, tr.Topic)]; tr.Topic != "" && !ok {
				writeError(w, v1.FieldError(fmt.Sprintf("spec.triggers[%d].topic", i),
					"topic %q not found in environment %q; create it with a Topic manifest", tr.Topic, env))
				return
			}
		}
	}
	if plural != "environments" {
		if _, ok := f.objects[key("environments", "", env)]; !ok {
			writeError(w, &v1.Error{Kind: v1.ErrNotFound, Field: "metadata.environment", Message: fmt.Sprintf("environment %q not found", env)})
			return
		}
	}
	k := key(plural, env, name)
	result := "created"
	if old, ok := f.objects[k]; ok {
		var prev struct {
			Metadata v1.ObjectMeta   `json:"metadata"`
			Spec     json.RawMessage `json:"spec"`
			Status   json.RawMessage `json:"status"`
		}
		json.Unmarshal(old, &prev)
		newSpec, _ := json.Marshal(specOf(obj))
		pm := prev.Metadata
		meta.UID, meta.CreationTimestamp, meta.Generation = pm.UID, pm.CreationTimestamp, pm.Generation
		meta.ResourceVersion = pm.ResourceVersion
		result = "unchanged"
		if !bytes.Equal(bytes.TrimSpace(prev.Spec), newSpec) {
			meta.Generation++
			result = "configured"
		} else if !reflect.DeepEqual(pm.Labels, meta.Labels) {
			result = "configured"
		}
		if svc, ok := obj.(*v1.Service); ok && len(prev.Status) > 0 {
			json.Unmarshal(prev.Status, &svc.Status)
		}
		if fn, ok := obj.(*v1.Function); ok && len(prev.Status) > 0 {
			json.Unmarshal(prev.Status, &fn.Status)
		}
	} else {
		f.uid++
		meta.UID = fmt.Sprintf("uid-%d", f.uid)
		meta.CreationTimestamp = f.now
		meta.Generation = 1
	}
	if r.URL.Query().Get("dryRun") != "1" && result != "unchanged" {
		meta.ResourceVersion++
		b, _ := json.Marshal(obj)
		f.objects[k] = b
	}
	stored, _ := json.Marshal(obj)
	writeJSON(w, 200, map[string]any{"result": result, "object": json.RawMessage(stored)})
}

func specOf(obj v1.Object) any {
	switch o := obj.(type) {
	case *v1.Environment:
		return o.Spec
	case *v1.Service:
		return o.Spec
	case *v1.Function:
		return o.Spec
	case *v1.Topic:
		return o.Spec
	}
	return nil
}

func (f *fakeAPI) deleteObject(w http.ResponseWriter, r *http.Request) {
	plural, env, name := f.pathKey(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(plural, env, name)
	if _, ok := f.objects[k]; !ok {
		writeError(w, v1.NotFound("%s %q not found", plural, name))
		return
	}
	delete(f.objects, k)
	w.WriteHeader(http.StatusOK)
}

func (f *fakeAPI) revisions(plural string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, name := r.PathValue("env"), r.PathValue("name")
		f.mu.Lock()
		_, ok := f.objects[key(plural, env, name)]
		f.mu.Unlock()
		if !ok {
			writeError(w, v1.NotFound("%s %q not found", plural, name))
			return
		}
		kind := v1.KindService
		if plural == "functions" {
			kind = v1.KindFunction
		}
		items := f.list("revisions", env, func(raw json.RawMessage) bool {
			var rev v1.Revision
			json.Unmarshal(raw, &rev)
			return rev.Spec.Owner == name && rev.Spec.OwnerKind == kind
		})
		sort.SliceStable(items, func(i, j int) bool {
			var a, b v1.Revision
			json.Unmarshal(items[i], &a)
			json.Unmarshal(items[j], &b)
			return a.Spec.Number < b.Spec.Number
		})
		writeJSON(w, 200, v1.List{APIVersion: v1.APIVersion, Kind: "List", Items: items})
	}
}

func (f *fakeAPI) rollback(plural string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, name := r.PathValue("env"), r.PathValue("name")
		var body struct {
			ToRevision int64 `json:"toRevision"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, v1.Invalid("%v", err))
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		raw, ok := f.objects[key(plural, env, name)]
		if !ok {
			writeError(w, v1.NotFound("%s %q not found", plural, name))
			return
		}
		var obj v1.Object = &v1.Service{}
		if plural == "functions" {
			obj = &v1.Function{}
		}
		json.Unmarshal(raw, obj)
		var tmpl *v1.Template
		var current int64
		switch o := obj.(type) {
		case *v1.Service:
			tmpl, current = &o.Spec.Template, o.Status.Revision
		case *v1.Function:
			tmpl, current = &o.Spec.Template, o.Status.Revision
		}
		to := body.ToRevision
		if to == 0 {
			to = current - 1
		}
		revRaw, ok := f.objects[key("revisions", env, v1.RevisionName(name, to))]
		if !ok {
			writeError(w, &v1.Error{Kind: v1.ErrNotFound, Field: "toRevision", Message: fmt.Sprintf("revision %d of %q not found", to, name)})
			return
		}
		var rev v1.Revision
		json.Unmarshal(revRaw, &rev)
		*tmpl = rev.Spec.Template
		obj.GetMetadata().Generation++
		b, _ := json.Marshal(obj)
		f.objects[key(plural, env, name)] = b
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

// invoke plays a function that answers its body upper-cased, or, when the
// body is "fail", a 500 with a message; asynchronously it queues an
// invocation and answers its id.
func (f *fakeAPI) invoke(w http.ResponseWriter, r *http.Request) {
	env, name := r.PathValue("env"), r.PathValue("name")
	body, _ := io.ReadAll(r.Body)
	async := strings.HasSuffix(r.URL.Path, "/invocations")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.objects[key("functions", env, name)]; !ok {
		writeError(w, v1.NotFound("function %q not found in environment %q", name, env))
		return
	}
	f.invoked = append(f.invoked, invokeCall{fn: name, body: string(body), contentType: r.Header.Get("Content-Type"),
		callback: r.Header.Get("X-Callback-Url"), header: r.Header.Clone(), async: async})
	if async {
		id := fmt.Sprintf("inv-%d", len(f.invoked))
		if f.invocations == nil {
			f.invocations = map[string]v1.Invocation{}
		}
		f.invocations[id] = v1.Invocation{ID: id, Environment: env, Function: name, Source: "async", Status: v1.InvocationPending, Created: f.now}
		w.Header().Set("Location", "/api/v1/environments/"+env+"/invocations/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
		return
	}
	w.Header().Set("X-Berth-Origin", "function")
	if string(body) == "fail" {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "something broke")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(bytes.ToUpper(body))
}

func (f *fakeAPI) getInvocation(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv, ok := f.invocations[r.PathValue("id")]
	if !ok || inv.Environment != r.PathValue("env") {
		writeError(w, v1.NotFound("invocation %q not found", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (f *fakeAPI) publish(w http.ResponseWriter, r *http.Request) {
	env, name := r.PathValue("env"), r.PathValue("name")
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.objects[key("topics", env, name)]; !ok {
		writeError(w, v1.NotFound("topic %q not found in environment %q", name, env))
		return
	}
	f.published = append(f.published, name+":"+string(body))
	writeJSON(w, http.StatusAccepted, map[string]string{"id": fmt.Sprintf("msg-%d", len(f.published))})
}

// logs writes logText at once, then, with follow, every line sent on
// logFollow until the client goes away or logFollow closes.
func (f *fakeAPI) logs(w http.ResponseWriter, r *http.Request) {
	env, name := r.PathValue("env"), r.PathValue("name")
	f.mu.Lock()
	_, ok := f.objects[key("services", env, name)]
	text, follow := f.logText, f.logFollow
	f.mu.Unlock()
	if !ok {
		writeError(w, v1.NotFound("service %q not found", name))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(200)
	io.WriteString(w, text)
	w.(http.Flusher).Flush()
	if r.URL.Query().Get("follow") != "1" || follow == nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case line, ok := <-follow:
			if !ok {
				return
			}
			io.WriteString(w, line)
			w.(http.Flusher).Flush()
		}
	}
}
