//go:build !linux

package wasm

import (
	"context"
	"sync/atomic"
)

// withMemory leaves linear memories to wazero (Go's heap) where there is
// no mmap allocator of ours.
func withMemory(ctx context.Context, image *memoryImage, used *atomic.Int64) context.Context {
	return ctx
}

type memoryImage struct{}

func newMemoryImage(data []byte) *memoryImage { return nil }

func (img *memoryImage) Close() {}

// splitsData: without an allocator of ours, modules keep their data.
const splitsData = false
