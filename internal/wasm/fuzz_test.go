package wasm

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"berth.dev/berth/internal/wasm/wasmtest"
)

// FuzzLoad feeds the loader (compile and check) bytes a user could push as
// a module: it must refuse or accept them, never panic or hang, and what
// it accepts must instantiate or fail cleanly within a deadline.
func FuzzLoad(f *testing.F) {
	for _, seed := range [][]byte{
		wasmtest.Hello(), wasmtest.Trap(), wasmtest.Loop(), wasmtest.Library(),
		[]byte("\x00asm\x01\x00\x00\x00"), []byte("\x00asm"), {},
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	h, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A runtime per module, as the host has one per function.
		rt := wazero.NewRuntimeWithConfig(ctx, h.runtimeConfig(16))
		defer rt.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		// The data splitter reads the same bytes first, by hand.
		if stripped, image, ok := splitData(b); ok && (len(stripped) >= len(b) || image == nil) {
			t.Fatalf("split %d bytes into %d and an image of %d", len(b), len(stripped), len(image))
		}
		compiled, err := checkModule(ctx, rt, b)
		if err != nil {
			return
		}
		defer compiled.Close(ctx)
		ictx, cancel := context.WithTimeout(ctx, 200e6)
		defer cancel()
		mod, _ := rt.InstantiateModule(ictx, compiled, wazero.NewModuleConfig().WithName(""))
		if mod != nil {
			mod.Close(ctx)
		}
	})
}
