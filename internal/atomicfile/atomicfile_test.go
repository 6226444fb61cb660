package atomicfile_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"berth.dev/berth/internal/atomicfile"
)

// names lists dir, so a test sees any temp file left behind.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestWriteFileReplacesWithTheModeAsked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("old token"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A umask must not narrow the mode: the caller said what it wants.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := atomicfile.WriteFile(path, []byte("new token"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new token" {
		t.Fatalf("after WriteFile: %q, %v", b, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	if ns := names(t, dir); len(ns) != 1 {
		t.Errorf("directory holds %v, want only the file", ns)
	}
}

func TestFailedWriteLeavesTheOldFileAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"old":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	full := errors.New("no space left on device")
	err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
		w.Write([]byte(`{"ne`)) // half written, then the disk is full
		return full
	})
	if !errors.Is(err, full) {
		t.Fatalf("Write = %v, want the writer's error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"old":true}` {
		t.Errorf("after a failed write the file holds %q", b)
	}
	if ns := names(t, dir); len(ns) != 1 || ns[0] != "config.json" {
		t.Errorf("directory holds %v, want only config.json", ns)
	}
}

func TestFailedRenameLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory where the file should go: the rename fails.
	path := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(path, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("the directory in the way was changed: %v, %v", fi, err)
	}
	if ns := names(t, dir); len(ns) != 1 {
		t.Errorf("directory holds %v, want only state", ns)
	}
}

func TestMissingDirectoryIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "file")
	if err := atomicfile.WriteFile(path, []byte("x"), 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteFile into a missing directory = %v, want ErrNotExist", err)
	}
}

// Readers racing writers see one whole version or another, never a mix or
// an empty file.
func TestReadersNeverSeeATornFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{'a' + byte(i)}, 256<<10)
	}
	if err := atomicfile.WriteFile(path, versions[0], 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	torn := make(chan string, 1)
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil || len(b) != len(versions[0]) || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) {
				select {
				case torn <- "read " + string(b[:min(len(b), 16)]) + "…":
				default:
				}
				return
			}
		}
	})
	var writers sync.WaitGroup
	for _, v := range versions {
		writers.Go(func() {
			for range 20 {
				if err := atomicfile.WriteFile(path, v, 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	select {
	case s := <-torn:
		t.Fatalf("a reader saw a torn file: %s", s)
	default:
	}
	if ns := names(t, dir); len(ns) != 1 {
		t.Errorf("directory holds %v, want only f", ns)
	}
}
