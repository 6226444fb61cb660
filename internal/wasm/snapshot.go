package wasm

import (
	"encoding/binary"
	"errors"
)

// splitData takes a module's active data segments out of it and returns
// the module without its data section and the initial memory image the
// segments make. Instantiating then costs one copy of the image instead
// of wazero decoding and applying every segment again per instance (a Go
// module has thousands: about half of a Go instance's start).
//
// It answers ok only for what it can prove equivalent: one memory, not
// imported, not shared, every segment active on memory 0 at an i32.const
// offset, within the memory's minimum size, and no data count section (so
// no memory.init or data.drop can name a segment). Anything else is left
// to wazero as it is.
func splitData(b []byte) (stripped, image []byte, ok bool) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || binary.LittleEndian.Uint32(b[4:8]) != 1 {
		return nil, nil, false
	}
	var (
		minPages  uint64
		memories  int
		dataStart = -1
		dataEnd   int
		segs      []segment
	)
	r := reader{b: b, off: 8}
	for r.off < len(b) {
		start := r.off
		id, err := r.byte()
		if err != nil {
			return nil, nil, false
		}
		size, err := r.uleb()
		if err != nil || size > uint64(len(b)-r.off) {
			return nil, nil, false
		}
		payload := reader{b: b[:r.off+int(size)], off: r.off}
		r.off += int(size)
		switch id {
		case 2: // imports: a memory import is not ours to fill
			if imported, err := importsMemory(payload); err != nil || imported {
				return nil, nil, false
			}
		case 5: // memories
			n, err := payload.uleb()
			if err != nil || n != 1 {
				return nil, nil, false
			}
			flags, err := payload.byte()
			if err != nil || flags > 1 { // shared or 64-bit: not here
				return nil, nil, false
			}
			if minPages, err = payload.uleb(); err != nil {
				return nil, nil, false
			}
			memories++
		case 11: // data
			if segs, err = dataSegments(payload); err != nil {
				return nil, nil, false
			}
			dataStart, dataEnd = start, r.off
		case 12: // data count: bulk memory may name segments
			return nil, nil, false
		}
	}
	if memories != 1 || dataStart < 0 {
		return nil, nil, false
	}
	var size, data uint64
	for _, s := range segs {
		size = max(size, uint64(s.offset)+uint64(len(s.data)))
		data += uint64(len(s.data))
	}
	if minPages > maxPages || size > minPages*pageSize {
		return nil, nil, false // wazero fails such a module; let it say so
	}
	if size > 2*data+1<<20 {
		// A sparse image (a byte at the end of a large memory) would cost
		// its whole size here for what wazero writes in place.
		return nil, nil, false
	}
	image = make([]byte, size)
	for _, s := range segs {
		copy(image[s.offset:], s.data)
	}
	stripped = make([]byte, 0, len(b)-(dataEnd-dataStart))
	stripped = append(append(stripped, b[:dataStart]...), b[dataEnd:]...)
	return stripped, image, true
}

type segment struct {
	offset uint32
	data   []byte
}

var errShape = errors.New("not a shape splitData handles")

func dataSegments(r reader) ([]segment, error) {
	n, err := r.uleb()
	if err != nil {
		return nil, err
	}
	segs := make([]segment, 0, min(n, 1<<16))
	for range n {
		flags, err := r.uleb()
		if err != nil || flags != 0 {
			return nil, errShape
		}
		if op, err := r.byte(); err != nil || op != 0x41 { // i32.const
			return nil, errShape
		}
		off, err := r.sleb32()
		if err != nil {
			return nil, err
		}
		if end, err := r.byte(); err != nil || end != 0x0b {
			return nil, errShape
		}
		l, err := r.uleb()
		if err != nil || l > uint64(len(r.b)-r.off) {
			return nil, errShape
		}
		segs = append(segs, segment{offset: uint32(off), data: r.b[r.off : r.off+int(l)]})
		r.off += int(l)
	}
	if r.off != len(r.b) {
		return nil, errShape
	}
	return segs, nil
}

func importsMemory(r reader) (bool, error) {
	n, err := r.uleb()
	if err != nil {
		return false, err
	}
	for range n {
		for range 2 { // module and field names
			l, err := r.uleb()
			if err != nil || l > uint64(len(r.b)-r.off) {
				return false, errShape
			}
			r.off += int(l)
		}
		kind, err := r.byte()
		if err != nil {
			return false, err
		}
		switch kind {
		case 0: // function: type index
			_, err = r.uleb()
		case 1: // table: reftype, limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 2:
			return true, nil
		case 3: // global: valtype, mutability
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		default:
			return false, errShape
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// reader decodes the parts of the binary format splitData needs.
type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShape
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) uleb() (uint64, error) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errShape
}

func (r *reader) sleb32() (int32, error) {
	var v int64
	var shift uint
	for {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			break
		}
		if shift >= 35 {
			return 0, errShape
		}
	}
	if v < 0 || v > 1<<31 {
		return 0, errShape // a negative offset is out of bounds anyway
	}
	return int32(v), nil
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.uleb(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.uleb()
	}
	return err
}
