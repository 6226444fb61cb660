package registry

import (
	"errors"
	"io"
	"os"
	"syscall"
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
// partial becomes visible, or record which directories were synced after
// which were made. Reads, renames and removes go straight to os.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (writableFile, error)
	Mkdir(name string, perm os.FileMode) error
	// SyncDir makes the entries of directory name durable: files renamed
	// into it and directories made in it.
	SyncDir(name string) error
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (writableFile, error) {
	return os.OpenFile(name, flag, perm)
}

func (osFS) Mkdir(name string, perm os.FileMode) error { return os.Mkdir(name, perm) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some filesystems refuse fsync on directories (EINVAL); renames are
	// still atomic there, only their durability is weaker.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
