//go:build wasip1

package wasmhttp

import "unsafe"

//go:wasmimport berth_http send
func hostSend(req unsafe.Pointer, reqLen uint32, result unsafe.Pointer) uint32

//go:wasmimport berth_http read
func hostRead(handle uint32, buf unsafe.Pointer, bufLen uint32, n unsafe.Pointer) uint32

//go:wasmimport berth_http close
func hostClose(handle uint32) uint32

// call sends one request (wire bytes in proxy form) and returns what the
// host kept: the response's wire bytes for code 0, else the message.
func call(req []byte) ([]byte, uint32) {
	var result [2]uint32 // handle, length
	code := hostSend(unsafe.Pointer(&req[0]), uint32(len(req)), unsafe.Pointer(&result[0]))
	if code == uint32(CodeBadMemory) {
		return nil, code
	}
	handle, size := result[0], result[1]
	defer hostClose(handle)
	data := make([]byte, size)
	for off := uint32(0); off < size; {
		var n uint32
		if rc := hostRead(handle, unsafe.Pointer(&data[off]), size-off, unsafe.Pointer(&n)); rc != 0 {
			return []byte(errShortRead.Error()), rc
		}
		if n == 0 {
			return []byte(errShortRead.Error()), uint32(CodeFailed)
		}
		off += n
	}
	return data, code
}
