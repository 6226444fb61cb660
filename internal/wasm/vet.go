package wasm

import (
	"fmt"

	v1 "berth.dev/berth/api/v1"
)

// Bounds a module must keep before wazero decodes it.
const (
	// maxLocals bounds the locals of one function (the limit V8 and
	// SpiderMonkey apply): wazero allocates a slot per local as it decodes.
	maxLocals = 50000
	// maxTableElements bounds a table's initial size: each element is a
	// word allocated per instance, outside the memory limit.
	maxTableElements = 1 << 20
)

// vetModule walks a module's binary structure before wazero's decoder sees
// it and refuses one whose declared counts and lengths could make the
// decoder allocate more than the module's own size: wazero sizes its
// slices and maps from the count a section declares before it reads the
// entries, so a 20-byte module declaring 70 million exports costs
// gigabytes and seconds of one controller worker (what the loader's fuzzer
// found). Every count here is checked against the bytes left in its
// section, every string and body against its section, every section
// against the module; and the locals of a function and the initial size of
// a table, which are compact in the binary but not in memory, against the
// bounds above.
//
// It checks structure only, not meaning (types, indexes, instructions):
// that is wazero's validation, which runs next on input now bounded.
// Whatever it cannot read (a proposal wazero does not enable by default,
// such as GC types, tags or threads) it refuses.
func vetModule(b []byte) error {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return v1.Invalid("not a WebAssembly module (no \\0asm header)")
	}
	if string(b[4:8]) != "\x01\x00\x00\x00" {
		return v1.Invalid("invalid WebAssembly module: version %x, want 1 (WASI preview 1 core modules)", b[4:8])
	}
	r := reader{b: b, off: 8}
	for r.off < len(b) {
		id, err := r.byte()
		if err != nil {
			return malformed("section id", err)
		}
		size, err := r.uleb()
		if err != nil {
			return malformed("section size", err)
		}
		if size > uint64(len(b)-r.off) {
			return v1.Invalid("invalid WebAssembly module: section %d declares %d bytes, %d are left", id, size, len(b)-r.off)
		}
		s := &vetter{r: reader{b: b[:r.off+int(size)], off: r.off}, id: id}
		r.off += int(size)
		if err := s.section(); err != nil {
			return err
		}
		if s.r.off != len(s.r.b) {
			return v1.Invalid("invalid WebAssembly module: section %d declares %d bytes but its contents end after %d", id, size, s.r.off-(len(s.r.b)-int(size)))
		}
	}
	return nil
}

func malformed(what string, err error) error {
	return v1.Invalid("invalid WebAssembly module: malformed %s: %v", what, err)
}

// vetter reads one section, bounded by its end.
type vetter struct {
	r   reader
	id  byte
	err error
}

// fail keeps the first error; the readers below return zero values after
// it, so a section's walk reads straight on and the error is reported once.
func (v *vetter) fail(format string, args ...any) {
	if v.err == nil {
		v.err = v1.Invalid("invalid WebAssembly module: section %d: %s", v.id, fmt.Sprintf(format, args...))
	}
}

func (v *vetter) left() uint64 { return uint64(len(v.r.b) - v.r.off) }

func (v *vetter) u8() byte {
	if v.err != nil {
		return 0
	}
	c, err := v.r.byte()
	if err != nil {
		v.fail("unexpected end")
	}
	return c
}

func (v *vetter) uleb() uint64 {
	if v.err != nil {
		return 0
	}
	n, err := v.r.uleb()
	if err != nil || n > 1<<32-1 {
		v.fail("malformed number")
		return 0
	}
	return n
}

// count reads a vector's length: each element takes a byte at least.
func (v *vetter) count(what string) uint64 {
	n := v.uleb()
	if n > v.left() {
		v.fail("%d %s declared in %d bytes", n, what, v.left())
		return 0
	}
	return n
}

func (v *vetter) skip(n uint64, what string) {
	if v.err != nil {
		return
	}
	if n > v.left() {
		v.fail("%s of %d bytes, %d left", what, n, v.left())
		return
	}
	v.r.off += int(n)
}

func (v *vetter) name() { v.skip(v.uleb(), "a name") }

func (v *vetter) sleb() {
	for range 10 {
		if v.u8()&0x80 == 0 {
			return
		}
	}
	v.fail("malformed number")
}

func (v *vetter) valtype() {
	switch t := v.u8(); t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
	default:
		if v.err == nil {
			v.fail("value type 0x%x is not one a WASI preview 1 module uses", t)
		}
	}
}

func (v *vetter) reftype() {
	if t := v.u8(); t != 0x70 && t != 0x6f && v.err == nil {
		v.fail("reference type 0x%x", t)
	}
}

// limits reads a table's or memory's limits and returns the minimum.
func (v *vetter) limits(memory bool) uint64 {
	flags := v.u8()
	ok := flags <= 1 || memory && (flags == 2 || flags == 3) // 2, 3: shared, for wazero to refuse
	if !ok && v.err == nil {
		v.fail("limits flags 0x%x", flags)
	}
	lo := v.uleb()
	if flags&1 != 0 {
		v.uleb()
	}
	return lo
}

func (v *vetter) table() {
	v.reftype()
	if lo := v.limits(false); lo > maxTableElements {
		v.fail("a table of %d elements to start with; a Wasm function's tables may start with %d at most", lo, maxTableElements)
	}
}

// constExpr reads a constant expression up to its end.
func (v *vetter) constExpr() {
	for v.err == nil {
		switch op := v.u8(); op {
		case 0x0b:
			return
		case 0x41, 0x42: // i32.const, i64.const
			v.sleb()
		case 0x43:
			v.skip(4, "an f32")
		case 0x44:
			v.skip(8, "an f64")
		case 0x23, 0xd2: // global.get, ref.func
			v.uleb()
		case 0xd0: // ref.null
			v.reftype()
		case 0xfd: // v128.const
			if v.uleb() != 12 {
				v.fail("constant expression with SIMD op other than v128.const")
			}
			v.skip(16, "a v128")
		default:
			if v.err == nil {
				v.fail("constant expression with opcode 0x%x", op)
			}
		}
	}
}

func (v *vetter) section() error {
	switch v.id {
	case 0: // custom
		n := v.uleb()
		start := v.r.off
		v.skip(n, "a name")
		if v.err == nil && string(v.r.b[start:v.r.off]) == "name" {
			v.nameSection()
		}
		if v.err == nil {
			v.r.off = len(v.r.b) // other custom sections are skipped unread
		}
	case 1: // types
		for range v.count("types") {
			if f := v.u8(); f != 0x60 && v.err == nil {
				v.fail("type form 0x%x (only function types)", f)
			}
			for range v.count("parameters") {
				v.valtype()
			}
			for range v.count("results") {
				v.valtype()
			}
		}
	case 2: // imports
		for range v.count("imports") {
			v.name()
			v.name()
			switch k := v.u8(); k {
			case 0:
				v.uleb()
			case 1:
				v.table()
			case 2:
				v.limits(true)
			case 3:
				v.valtype()
				v.u8()
			default:
				if v.err == nil {
					v.fail("import kind 0x%x", k)
				}
			}
		}
	case 3: // functions
		for range v.count("functions") {
			v.uleb()
		}
	case 4: // tables
		for range v.count("tables") {
			v.table()
		}
	case 5: // memories
		for range v.count("memories") {
			v.limits(true)
		}
	case 6: // globals
		for range v.count("globals") {
			v.valtype()
			v.u8()
			v.constExpr()
		}
	case 7: // exports
		for range v.count("exports") {
			v.name()
			v.u8()
			v.uleb()
		}
	case 8: // start
		v.uleb()
	case 9: // elements
		for range v.count("element segments") {
			v.element()
		}
	case 10: // code
		for range v.count("function bodies") {
			v.body()
		}
	case 11: // data
		for range v.count("data segments") {
			switch flags := v.uleb(); flags {
			case 0:
				v.constExpr()
			case 1:
			case 2:
				v.uleb()
				v.constExpr()
			default:
				if v.err == nil {
					v.fail("data segment flags %d", flags)
				}
			}
			v.skip(v.uleb(), "a data segment")
		}
	case 12: // data count
		v.uleb()
	default:
		v.fail("unknown section (tags, threads and other proposals are not enabled)")
	}
	return v.err
}

func (v *vetter) element() {
	flags := v.uleb()
	if flags > 7 {
		v.fail("element segment flags %d", flags)
		return
	}
	if flags == 2 || flags == 6 {
		v.uleb() // table index
	}
	if flags&1 == 0 {
		v.constExpr() // offset of an active segment
	}
	if flags&3 != 0 { // not flags 0 or 4: an element kind or reference type
		if flags&4 == 0 {
			if k := v.u8(); k != 0 && v.err == nil {
				v.fail("element kind 0x%x", k)
			}
		} else {
			v.reftype()
		}
	}
	for range v.count("elements") {
		if flags&4 == 0 {
			v.uleb()
		} else {
			v.constExpr()
		}
	}
}

// body reads one function body's size and locals and skips its code.
func (v *vetter) body() {
	size := v.uleb()
	if size > v.left() {
		v.fail("a function body of %d bytes, %d left", size, v.left())
		return
	}
	end := v.r.off + int(size)
	outer := v.r.b
	v.r.b = v.r.b[:end]
	var locals uint64
	for range v.count("local declarations") {
		locals += v.uleb()
		v.valtype()
		if locals > maxLocals && v.err == nil {
			v.fail("a function with more than %d locals", maxLocals)
		}
	}
	v.r.b, v.r.off = outer, end
}

// nameSection reads the "name" custom section (wazero decodes it, with
// counts it trusts): subsections of names, bounded by their sizes.
func (v *vetter) nameSection() {
	for v.err == nil && v.left() > 0 {
		id := v.u8()
		size := v.uleb()
		if size > v.left() {
			v.fail("a name subsection of %d bytes, %d left", size, v.left())
			return
		}
		end := v.r.off + int(size)
		outer := v.r.b
		v.r.b = v.r.b[:end]
		switch id {
		case 0: // module name
			v.name()
		case 1: // function names
			for range v.count("function names") {
				v.uleb()
				v.name()
			}
		case 2: // local names
			for range v.count("functions' local names") {
				v.uleb()
				for range v.count("local names") {
					v.uleb()
					v.name()
				}
			}
		}
		v.r.b, v.r.off = outer, end
	}
}
