package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/logs"
)

// testAPI is the real API server on a bbolt store in a temp dir, as the
// composition root builds it, with doubles only for what needs root or
// runs workloads: the node's images, the invocation path, the workflow
// engine's executions and the trace store (canned, for golden output). Controllers
// are absent: tests store what they would have written (seed), or play
// them forward on each read of a workload (onGetService, onGetFunction).
type testAPI struct {
	t      *testing.T
	srv    *httptest.Server
	store  store.Store
	logDir string
	images *nodeImages
	invoke *invocations
	execs  *executions
	traces *traceSource

	mu       sync.Mutex
	requests []string // "METHOD path?query"
	// failWith makes the next request to "METHOD path" fail with the
	// error, answered as the server answers errors.
	failWith map[string]*v1.Error
	// onGetService, when set, changes the stored service before each read
	// of it: a stand-in for the controller making progress.
	onGetService func(svc *v1.Service)
	// onGetFunction is onGetService for functions.
	onGetFunction func(fn *v1.Function)
}

const testToken = "s3cret"

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &testAPI{t: t, store: st, logDir: filepath.Join(dir, "logs"),
		images: &nodeImages{}, invoke: &invocations{}, execs: newExecutions(), traces: &traceSource{}}
	api := apiserver.New(apiserver.Config{
		Store: st, Token: testToken, Logs: dirLogs(f.logDir),
		Images: f.images, Invocations: f.invoke, Executions: f.execs, Traces: f.traces,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	f.srv = httptest.NewServer(f.observe(api.Handler()))
	// Registered after the store's close would be wrong: cleanups run in
	// reverse, so the server stops first.
	t.Cleanup(func() { st.Close() })
	t.Cleanup(f.srv.Close)
	return f
}

func (f *testAPI) URL() string { return f.srv.URL }

// observe records each request, answers forced failures, and lets a
// controller stand-in move a workload before it is read.
func (f *testAPI) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		forced := f.failWith[r.Method+" "+r.URL.Path]
		delete(f.failWith, r.Method+" "+r.URL.Path)
		onService, onFunction := f.onGetService, f.onGetFunction
		f.mu.Unlock()
		if forced != nil {
			status, _ := v1.HTTPStatus(forced.Kind)
			writeJSON(w, status, v1.Status{Error: v1.ErrorBody{Kind: forced.Kind, Message: forced.Message, Field: forced.Field}})
			return
		}
		if r.Method == http.MethodGet {
			seg := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/environments/"), "/")
			if len(seg) == 3 && seg[1] == "services" && onService != nil {
				f.progress(store.Key{Kind: v1.KindService, Environment: seg[0], Name: seg[2]}, &v1.Service{},
					func(o v1.Object) { onService(o.(*v1.Service)) })
			}
			if len(seg) == 3 && seg[1] == "functions" && onFunction != nil {
				f.progress(store.Key{Kind: v1.KindFunction, Environment: seg[0], Name: seg[2]}, &v1.Function{},
					func(o v1.Object) { onFunction(o.(*v1.Function)) })
			}
		}
		next.ServeHTTP(w, r)
	})
}

// progress writes what change does to the stored object, as a controller's
// status update would.
func (f *testAPI) progress(key store.Key, obj v1.Object, change func(v1.Object)) {
	ctx := context.Background()
	if err := store.Get(ctx, f.store, key, obj); err != nil {
		return // not there: the API answers NotFound
	}
	change(obj)
	if err := store.Update(ctx, f.store, obj); err != nil {
		f.t.Errorf("controller stand-in: update %s: %v", key, err)
	}
}

func (f *testAPI) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// seed stores objects as they are, metadata included, the way the store
// would hold them after the API and the controllers wrote them.
func (f *testAPI) seed(objs ...v1.Object) {
	f.t.Helper()
	for _, obj := range objs {
		v1.SetDefaults(obj)
		md := obj.GetMetadata()
		rv := md.ResourceVersion
		md.ResourceVersion = 0 // the record's revision, never stored
		b, err := json.Marshal(obj)
		md.ResourceVersion = rv
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.store.Create(context.Background(), store.KeyOf(obj), b); err != nil {
			f.t.Fatalf("seed %s: %v", store.KeyOf(obj), err)
		}
	}
}

// get reads a stored object, as the API serves it.
func (f *testAPI) get(kind, env, name string, into v1.Object) {
	f.t.Helper()
	if err := store.Get(context.Background(), f.store, store.Key{Kind: kind, Environment: env, Name: name}, into); err != nil {
		f.t.Fatal(err)
	}
}

// writeLog appends lines to an instance's log, in the format the agent
// writes (CRI: TIMESTAMP STREAM F LINE), stamped now.
func (f *testAPI) writeLog(env, owner, instance string, lines ...string) {
	f.t.Helper()
	dir := logs.Dir(f.logDir, env, owner)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	fh, err := os.OpenFile(filepath.Join(dir, instance+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	for _, l := range lines {
		fmt.Fprintf(fh, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), l)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers err in the API's error shape, with its kind's status.
func writeError(w http.ResponseWriter, err error) {
	e := &v1.Error{Kind: v1.ErrInternal, Message: err.Error()}
	if ve, ok := err.(*v1.Error); ok {
		e = ve
	}
	status, _ := v1.HTTPStatus(e.Kind)
	writeJSON(w, status, v1.Status{Error: v1.ErrorBody{Kind: e.Kind, Message: e.Message, Field: e.Field}})
}

// nodeImages stands in for the node's containerd image store: what it is
// given is listed, what is removed is gone.
type nodeImages struct {
	mu     sync.Mutex
	images []v1.Image
}

var _ apiserver.ImageService = (*nodeImages)(nil)

func (n *nodeImages) set(imgs ...v1.Image) {
	n.mu.Lock()
	n.images = imgs
	n.mu.Unlock()
}

func (n *nodeImages) Import(ctx context.Context, _ images.Access, r io.Reader) ([]v1.Image, error) {
	return nil, v1.Unavailable("the test node imports no archives")
}

func (n *nodeImages) List(ctx context.Context, _ images.Access) ([]v1.Image, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]v1.Image(nil), n.images...), nil
}

func (n *nodeImages) Pull(ctx context.Context, ref string) (v1.Image, error) {
	return v1.Image{}, v1.Unavailable("the test node pulls nothing")
}

func (n *nodeImages) Remove(ctx context.Context, _ images.Access, ref string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, img := range n.images {
		if img.Name == ref {
			n.images = append(n.images[:i], n.images[i+1:]...)
			return nil
		}
	}
	return v1.NotFound("image %q not found", ref)
}

// invokeCall is one invocation that reached the functions.
type invokeCall struct {
	fn, body, contentType, callback string
	header                          http.Header
	async                           bool
}

// invocations stands in for the gateway and the queue: every function
// answers its body upper-cased, or 500 "something broke" for the body
// "fail"; an async invocation is stored Pending; a publish is kept.
type invocations struct {
	mu        sync.Mutex
	invoked   []invokeCall
	pending   map[string]v1.Invocation
	published []string
}

var _ apiserver.Invocations = (*invocations)(nil)

func (i *invocations) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	i.mu.Lock()
	i.invoked = append(i.invoked, invokeCall{fn: fn, body: string(body), contentType: header.Get("Content-Type"), header: header.Clone()})
	i.mu.Unlock()
	h := http.Header{"Content-Type": {"text/plain"}}
	if string(body) == "fail" {
		return http.StatusInternalServerError, h, []byte("something broke"), nil
	}
	return http.StatusOK, h, []byte(strings.ToUpper(string(body))), nil
}

func (i *invocations) Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.invoked = append(i.invoked, invokeCall{fn: fn, body: string(body), contentType: header.Get("Content-Type"),
		callback: callbackURL, header: header.Clone(), async: true})
	id := fmt.Sprintf("inv-%d", len(i.invoked))
	if i.pending == nil {
		i.pending = map[string]v1.Invocation{}
	}
	i.pending[id] = v1.Invocation{ID: id, Environment: env, Function: fn, Source: "async", Status: v1.InvocationPending, Created: testNow}
	return id, nil
}

func (i *invocations) Get(ctx context.Context, env, id string) (v1.Invocation, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	inv, ok := i.pending[id]
	if !ok || inv.Environment != env {
		return v1.Invocation{}, v1.NotFound("invocation %q not found in environment %q", id, env)
	}
	return inv, nil
}

func (i *invocations) Publish(ctx context.Context, env, topic string, body []byte, header http.Header) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, topic+":"+string(body))
	return fmt.Sprintf("msg-%d", len(i.published)), nil
}

func (i *invocations) last() invokeCall {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.invoked[len(i.invoked)-1]
}

// dirLogs reads logs from a directory as the local backend does.
type dirLogs string

func (d dirLogs) Logs(ctx context.Context, q logs.Query, w io.Writer) error {
	return logs.Read(ctx, string(d), q, w)
}
