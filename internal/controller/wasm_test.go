package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/wasm/wasmtest"
)

// modules is the registry's Wasm modules, by image reference.
type modules struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *modules) WasmModule(ctx context.Context, env, ref, digest string, max int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.m[ref]
	if !ok {
		return nil, v1.NotFound("no module %s", ref)
	}
	return b, nil
}

func (m *modules) set(ref string, b []byte) {
	m.mu.Lock()
	m.m[ref] = b
	m.mu.Unlock()
}

// A Wasm function gets no instances from the backend: the routes give it
// one in-process endpoint capped at concurrency × max, whose transport
// runs the module; a module that cannot run is said in the status; a
// switch to a container gives it to the backend again.
func TestWasmFunctionRunsInProcess(t *testing.T) {
	p := newPlane(t)
	p.images.set("w:1", "sha256:"+strings.Repeat("a", 64))
	p.modules.set("w:1", wasmtest.Respond("Content-Type: text/plain\n\nfrom wasm"))
	max, key := int32(4), store.Key{Kind: v1.KindFunction, Environment: "default", Name: "w"}
	p.create(&v1.Function{
		TypeMeta: tm(v1.KindFunction),
		Metadata: v1.ObjectMeta{Name: "w", Environment: "default", Generation: 1},
		Spec: v1.FunctionSpec{
			Runtime:  v1.RuntimeWasm,
			Template: v1.Template{Image: "w:1"}, Concurrency: 5,
			Scale: v1.FunctionScale{Max: &max},
		},
	})
	target := testutil.WaitForValue(t, 20*time.Second, "w in the table with its in-process endpoint", func() (gateway.Target, bool) {
		tg, ok := p.table.target("default", "w")
		return tg, ok && len(tg.Endpoints) == 1
	})
	if target.Concurrency != 20 || target.Endpoints[0].Transport == nil {
		t.Fatalf("target %+v, want concurrency 5 × 4 = 20 on an in-process endpoint", target)
	}
	res, err := target.Endpoints[0].Transport.RoundTrip(httptest.NewRequest("GET", "http://w.default.berth.localhost/", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "from wasm" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	ref := backend.Ref{Kind: v1.KindFunction, Environment: "default", Name: "w"}
	if insts := p.backend.Instances(ref); len(insts) != 0 {
		t.Fatalf("the backend runs %d instances of a Wasm function", len(insts))
	}
	testutil.WaitForState(t, 20*time.Second, "status WasmReady at generation 1", func() (bool, string) {
		fn, _ := get[v1.Function](p, key)
		return fn.Status.ObservedGeneration == 1 && hasCondition(fn.Status.Conditions, v1.ConditionProgressing, "WasmReady"), fmt.Sprintf("%+v", fn.Status)
	})

	// A new image that is no module: said in the status, the old revision
	// keeps serving.
	p.images.set("w:2", "sha256:"+strings.Repeat("b", 64))
	p.modules.set("w:2", []byte("not wasm"))
	update[v1.Function](p, key, func(f *v1.Function) { f.Spec.Image = "w:2" })
	testutil.WaitForState(t, 20*time.Second, "InvalidModule in the status", func() (bool, string) {
		fn, _ := get[v1.Function](p, key)
		return hasCondition(fn.Status.Conditions, v1.ConditionProgressing, "InvalidModule"), fmt.Sprintf("%+v", fn.Status.Conditions)
	})
	if rev, ok := p.wasm.Ready("default", "w"); !ok || rev != 1 {
		t.Fatalf("serving revision %d (%v), want 1 still", rev, ok)
	}

	// Back to a container: the host forgets it, the backend runs it.
	update[v1.Function](p, key, func(f *v1.Function) { f.Spec.Runtime = ""; f.Spec.Image = "w:1" })
	testutil.WaitForState(t, 20*time.Second, "the backend's standby, no Wasm", func() (bool, string) {
		_, wasmReady := p.wasm.Ready("default", "w")
		insts := p.backend.Instances(ref)
		return !wasmReady && len(insts) == 1, fmt.Sprintf("wasm %v, %d instances", wasmReady, len(insts))
	})
}
