package wasm

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"berth.dev/berth/internal/wasm/wasmtest"
)

// FuzzLoad feeds the loader bytes a user could push as a module: the
// host's own compile (size and structure checks, the data splitter, the
// bounded compilation) must refuse or accept them, never panic or hang,
// and what it accepts must instantiate or fail cleanly within a deadline.
func FuzzLoad(f *testing.F) {
	for _, seed := range [][]byte{
		wasmtest.Hello(), wasmtest.Trap(), wasmtest.Loop(), wasmtest.Library(),
		[]byte("\x00asm\x01\x00\x00\x00"), []byte("\x00asm"), {},
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	h, err := New(Config{CompileTimeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The data splitter reads the same bytes first, by hand.
		if stripped, image, ok := splitData(b); ok && (len(stripped) >= len(b) || image == nil) {
			t.Fatalf("split %d bytes into %d and an image of %d", len(b), len(stripped), len(image))
		}
		// A runtime per module, as the host has one per function.
		c, err := h.compile(ctx, b, 16)
		if err != nil {
			return
		}
		defer c.release(ctx)
		ictx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		mod, _ := c.rt.InstantiateModule(withMemory(ictx, c.image, nil), c.compiled, wazero.NewModuleConfig().WithName(""))
		if mod != nil {
			mod.Close(ctx)
		}
	})
}
