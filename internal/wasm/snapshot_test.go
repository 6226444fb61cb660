package wasm

import (
	"bytes"
	"testing"

	"berth.dev/berth/internal/wasm/wasmtest"
)

// splitData takes the data out of the modules it can prove it handles:
// the stripped module has no data section and the image holds every
// segment at its offset; anything else it leaves alone.
func TestSplitData(t *testing.T) {
	hello := wasmtest.Hello()
	stripped, image, ok := splitData(hello)
	if !ok {
		t.Fatal("the hello module's data was not split")
	}
	if bytes.Contains(stripped, []byte("hello\n")) || !bytes.Contains(image, []byte("Content-Type: text/plain\n\nhello\n")) {
		t.Fatalf("stripped %d bytes, image %q", len(stripped), image)
	}
	if len(stripped) >= len(hello) {
		t.Fatalf("stripped module of %d bytes, the original has %d", len(stripped), len(hello))
	}

	mod := goHandler(t)
	stripped, image, ok = splitData(mod)
	if !ok || len(image) == 0 || len(stripped) >= len(mod) {
		t.Fatalf("Go module: ok=%v, %d → %d bytes, image %d bytes", ok, len(mod), len(stripped), len(image))
	}

	// A data count section (bulk memory may name segments): left alone.
	withCount := append([]byte{}, hello...)
	withCount = append(withCount, 12, 1, 1)
	if _, _, ok := splitData(withCount); ok {
		t.Fatal("a module with a data count section was split")
	}
	for name, b := range map[string][]byte{
		"no data":   wasmtest.Trap(),
		"truncated": hello[:len(hello)-3],
		"garbage":   []byte("\x00asm\x01\x00\x00\x00\x0b\xff\xff\xff\xff\x0f"),
	} {
		if _, _, ok := splitData(b); ok {
			t.Errorf("%s: split", name)
		}
	}
}
