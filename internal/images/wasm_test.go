package images

import (
	"bytes"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/wasm/wasmtest"
)

// A Wasm artifact pushed as `berth build --runtime go-wasm` pushes it
// resolves without the node (no node runs it) and reads back as its
// module; a container image is refused as a module, saying why.
func TestWasmArtifacts(t *testing.T) {
	f := newFixture(t, fakeEnvironments{"dev": "", "prod": ""})
	ctx := t.Context()
	mod := wasmtest.Hello()
	var arc bytes.Buffer
	want, err := build.WriteWasmArtifact("dev/hello:v1", mod, &arc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.Push(ctx, FullAccess, bytes.NewReader(arc.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Digest != want {
		t.Fatalf("push answered %+v, want digest %s", got, want)
	}
	d, err := f.svc.ResolveImageIn(ctx, "dev", "dev/hello:v1")
	if err != nil || d != want {
		t.Fatalf("ResolveImageIn = %s, %v; want %s", d, err, want)
	}
	if len(f.node.pulls) != 0 || f.node.has(want) {
		t.Fatalf("the node was asked for a Wasm module: pulls %v", f.node.pulls)
	}
	b, err := f.svc.WasmModule(ctx, "dev", "dev/hello:v1", d, 1<<20)
	if err != nil || !bytes.Equal(b, mod) {
		t.Fatalf("WasmModule = %d bytes, %v; want the %d pushed", len(b), err, len(mod))
	}
	if _, err := f.svc.WasmModule(ctx, "dev", "dev/hello:v1", d, 10); !v1.IsInvalid(err) {
		t.Fatalf("a module over the size limit: %v, want Invalid", err)
	}
	if _, err := f.svc.WasmModule(ctx, "prod", "dev/hello:v1", d, 1<<20); !v1.IsNotFound(err) {
		t.Fatalf("another environment's module: %v, want NotFound", err)
	}

	img := randomImage(t)
	if _, err := f.svc.Push(ctx, FullAccess, bytes.NewReader(dockerSave(t, "dev/api:v1", img))); err != nil {
		t.Fatal(err)
	}
	r, _ := f.reg.Resolve(ctx, "dev/api", "v1")
	if _, err := f.svc.WasmModule(ctx, "dev", "dev/api:v1", r.Digest, 1<<20); !v1.IsInvalid(err) || !strings.Contains(err.Error(), "not a Wasm module") {
		t.Fatalf("a container image as a module: %v, want Invalid saying it is not a Wasm module", err)
	}
}
