package registry

import (
	"io"
	"os"
)

// writableFile is the part of *os.File the store writes through.
type writableFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
}

// fileSystem is the seam every write to disk goes through, so a test can make
// writes fail the way a full disk does (ENOSPC) and check that nothing
// partial becomes visible. Reads, renames and removes go straight to os.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (writableFile, error)
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (writableFile, error) {
	return os.OpenFile(name, flag, perm)
}
