package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, with mode perm exactly (the umask
// does not apply).
//
// The contract: when WriteFile returns nil the new file is durable, its
// content and its name both on disk, so no crash or power loss after that
// brings back the old file or leaves an empty one. When it returns an
// error, no temp file is left and path is as it was (old content, or
// absent), except after a failed fsync of the directory: then the new file
// is in place but may not survive a power loss. A crash during the call
// leaves the old file or the new one, whole, and at worst a temp file
// named ".NAME.tmp-*" beside it.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write is WriteFile with the content streamed by write, for content too
// big to hold in memory. An error from write aborts the replacement.
func Write(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := replace(dir, name, path, perm, write); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	// The rename lives in the directory: until that is on disk, a power
	// loss can bring the old file back.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("replace %s: sync directory: %w", path, err)
	}
	return nil
}

// replace writes a synced temp file beside path and renames it over path;
// on error it removes the temp file.
func replace(dir, name, path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	// The mode before the rename: the file must never be visible under
	// its name with the temp file's 0600, nor (for a secret) wider.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	// The data must be on disk before the rename is: otherwise a power
	// loss can keep the rename and lose the data, an empty file where the
	// old one was.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some filesystems refuse fsync on a directory (EINVAL); the rename
	// is still atomic there, only its durability is up to them.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
