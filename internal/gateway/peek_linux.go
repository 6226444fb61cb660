package gateway

import (
	"syscall"
	"unsafe"
)

// peekIdle reports whether an idle socket is still open with nothing to
// read: a non-blocking peek that would block. A FIN reads as 0 bytes, a
// reset as an error, stray bytes as data: each makes the connection unfit.
func peekIdle(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}
