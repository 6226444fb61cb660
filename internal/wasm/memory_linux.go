package wasm

import (
	"context"
	"sync/atomic"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// withMemory gives each instance a linear memory mapped from the kernel
// rather than allocated on Go's heap: its whole maximum is reserved as
// address space up front (MAP_NORESERVE: no memory is committed until a
// page is touched), so growing it never copies, its pages come zeroed
// from the kernel instead of cleared by Go, and closing the instance
// gives the memory back at once (munmap) instead of at the garbage
// collector's convenience, which matters with thousands of instances.
//
// image, when not nil, is the module's initial memory (see splitData),
// copied in when the memory is made.
func withMemory(ctx context.Context, image *memoryImage, used *atomic.Int64) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(capBytes, maxBytes uint64) experimental.LinearMemory {
		m := allocate(capBytes, maxBytes)
		if image != nil {
			image.fill(m)
		}
		if used == nil {
			return m
		}
		return &countedMemory{LinearMemory: m, used: used}
	}))
}

// countedMemory keeps a function's sum of its instances' memory sizes (what
// berth top shows): the size each has grown to, an upper bound of what it
// holds (pages never touched are not committed, image pages are shared).
type countedMemory struct {
	experimental.LinearMemory
	used *atomic.Int64
	size uint64
}

func (m *countedMemory) Reallocate(size uint64) []byte {
	b := m.LinearMemory.Reallocate(size)
	if b != nil {
		m.used.Add(int64(size) - int64(m.size))
		m.size = size
	}
	return b
}

func (m *countedMemory) Free() {
	m.used.Add(-int64(m.size))
	m.size = 0
	m.LinearMemory.Free()
}

// memoryImage is a module's initial memory, kept in a memory file so that
// each instance maps it copy-on-write: pages an instance only reads are
// shared by all of them, and one it writes is copied then, page by page,
// instead of the whole image up front.
type memoryImage struct {
	data []byte // the image, for the copying fallback
	fd   int    // -1 when there is no memory file
	size int    // the file's size: data rounded up to whole OS pages
}

func newMemoryImage(data []byte) *memoryImage {
	img := &memoryImage{data: data, fd: -1}
	page := unix.Getpagesize()
	size := (len(data) + page - 1) / page * page
	fd, err := unix.MemfdCreate("berth-wasm-image", unix.MFD_CLOEXEC)
	if err != nil {
		return img
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return img
	}
	if _, err := unix.Pwrite(fd, data, 0); err != nil {
		unix.Close(fd)
		return img
	}
	img.fd, img.size = fd, size
	return img
}

// fill puts the image at the start of m. splitData checked that it fits
// the memory's minimum size, which wazero asks for first.
func (img *memoryImage) fill(m experimental.LinearMemory) {
	mm, ok := m.(*mappedMemory)
	if !ok || img.fd < 0 || img.size > len(mm.buf) {
		copy(m.Reallocate(uint64(len(img.data))), img.data)
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mm.buf)))
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, base, uintptr(img.size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED, uintptr(img.fd), 0)
	if errno != 0 {
		copy(m.Reallocate(uint64(len(img.data))), img.data)
	}
}

// Close releases the memory file.
func (img *memoryImage) Close() {
	if img != nil && img.fd >= 0 {
		unix.Close(img.fd)
		img.fd = -1
	}
}

// splitsData: the allocator fills memories from an image.
const splitsData = true

func allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	if maxBytes == 0 || maxBytes > 4<<30 {
		maxBytes = 4 << 30
	}
	buf, err := unix.Mmap(-1, 0, int(maxBytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		// No address space left: Go's heap, as wazero does by default.
		return &heapMemory{buf: make([]byte, 0, capBytes), max: maxBytes}
	}
	return &mappedMemory{buf: buf}
}

type mappedMemory struct{ buf []byte }

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}

// heapMemory is wazero's own way: a slice that grows by copying.
type heapMemory struct {
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.max))
		copy(grown, m.buf)
		m.buf = grown
		return m.buf
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
