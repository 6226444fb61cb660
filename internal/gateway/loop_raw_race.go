//go:build linux && race

package gateway

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Under the race detector, syscall's Read and Write: they tell it that a
// write happens before the read of what it wrote, as Go's net package
// does, so that tests talking to the gateway over sockets see the order
// they rely on.
func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(fd, p)
	if err != nil {
		return 0, err.(syscall.Errno)
	}
	return n, 0
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(fd, p)
	if err != nil {
		return 0, err.(syscall.Errno)
	}
	return n, 0
}

// pollNow is epoll_wait with no wait.
func pollNow(epfd int, events []unix.EpollEvent) (int, error) {
	return unix.EpollWait(epfd, events, 0)
}
