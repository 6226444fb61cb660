package logshim

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

const (
	// MaxLineSize is the longest record written as one line; longer lines
	// are split into partial (P) records, as the kubelet does.
	MaxLineSize = 16 * 1024

	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 2

	// timeFormat is fixed-width so that files sort and parse the same way
	// everywhere (RFC3339Nano drops trailing zeros).
	timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

	// drainTimeout bounds how long the logger keeps reading after the shim
	// asked it to stop: the shim closes its ends first, so EOF normally
	// comes at once.
	drainTimeout = 2 * time.Second
)

// Stream names as written in the log.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Main runs the logger with the command-line arguments that follow the
// subcommand name. The shim passes the container's stdout on fd 3, its
// stderr on fd 4 and a pipe on fd 5 that is closed once the logger is ready.
//
// Flags may come in any order: containerd passes the logger's arguments as
// a URL query, which has none.
func Main(args []string) int {
	fs := flag.NewFlagSet("log-shim", flag.ContinueOnError)
	path := fs.String("path", "", "log file to write")
	maxSize := fs.Int64("max-size", DefaultMaxSize, "rotate the file when it grows past this many bytes")
	maxFiles := fs.Int("max-files", DefaultMaxFiles, "files to keep, the live one included")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(os.Stderr, "log-shim: --path is required")
		return 2
	}
	w, err := OpenWriter(*path, *maxSize, *maxFiles)
	if err != nil {
		fmt.Fprintln(os.Stderr, "log-shim:", err)
		return 1
	}
	defer w.Close()

	stdout := os.NewFile(3, "container-stdout")
	stderr := os.NewFile(4, "container-stderr")
	ready := os.NewFile(5, "container-wait")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var wg sync.WaitGroup
	for _, s := range []struct {
		f    *os.File
		name string
	}{{stdout, Stdout}, {stderr, Stderr}} {
		if s.f == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Copy(w, s.name, s.f); err != nil {
				fmt.Fprintln(os.Stderr, "log-shim:", err)
			}
		}()
	}

	// Newer shims check for one byte before the close to tell "ready"
	// from "crashed"; older ones only wait for the close. Both are happy.
	if ready != nil {
		_, _ = ready.Write([]byte{0})
		ready.Close()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-sigs:
		select {
		case <-done:
		case <-time.After(drainTimeout):
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "log-shim:", err)
		return 1
	}
	return 0
}

// Copy reads r until EOF and writes each line to w as a record of stream.
func Copy(w *Writer, stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLineSize)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if werr := w.WriteRecord(time.Now(), stream, false, line[:len(line)-1]); werr != nil {
				return werr
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if werr := w.WriteRecord(time.Now(), stream, true, line); werr != nil {
				return werr
			}
		default:
			if len(line) > 0 {
				if werr := w.WriteRecord(time.Now(), stream, true, line); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
	}
}

// Writer appends CRI-format records to a file and rotates it by size.
// It is safe for concurrent use by the stdout and stderr copiers.
type Writer struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	buf      bytes.Buffer
}

// OpenWriter opens (appending) or creates path and the directories above it.
// maxSize <= 0 disables rotation; maxFiles counts the live file.
func OpenWriter(path string, maxSize int64, maxFiles int) (*Writer, error) {
	if maxFiles < 1 {
		maxFiles = 1
	}
	w := &Writer{path: path, maxSize: maxSize, maxFiles: maxFiles}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// WriteRecord writes one record. content must not contain a newline.
func (w *Writer) WriteRecord(t time.Time, stream string, partial bool, content []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	tag := "F"
	if partial {
		tag = "P"
	}
	w.buf.Reset()
	w.buf.WriteString(t.UTC().Format(timeFormat))
	w.buf.WriteByte(' ')
	w.buf.WriteString(stream)
	w.buf.WriteByte(' ')
	w.buf.WriteString(tag)
	w.buf.WriteByte(' ')
	w.buf.Write(content)
	w.buf.WriteByte('\n')

	if w.maxSize > 0 && w.size > 0 && w.size+int64(w.buf.Len()) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(w.buf.Bytes())
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// rotate shifts FILE.(n-1) → FILE.n … FILE → FILE.1, dropping the oldest,
// and starts a new live file. Readers following FILE reopen it by name.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	w.f = nil
	if w.maxFiles == 1 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
		return w.open()
	}
	_ = os.Remove(fmt.Sprintf("%s.%d", w.path, w.maxFiles-1))
	for i := w.maxFiles - 2; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", w.path, i), fmt.Sprintf("%s.%d", w.path, i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return w.open()
}

// Close flushes and closes the file; later writes fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Line is one parsed log record.
type Line struct {
	Time   time.Time
	Stream string
	// Partial is set when the record is a piece of a longer line (or the
	// stream ended without a newline); the next record of the same stream
	// continues it.
	Partial bool
	Content string
}

// ParseLine parses one record, with or without its trailing newline.
func ParseLine(b []byte) (Line, error) {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return Line{}, fmt.Errorf("log line: missing stream")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{}, fmt.Errorf("log line: bad time: %w", err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Line{}, fmt.Errorf("log line: missing tag")
	}
	if s := string(stream); s != Stdout && s != Stderr {
		return Line{}, fmt.Errorf("log line: bad stream %q", s)
	}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	// CRI allows several tags joined by ':'; the first says full or partial.
	tag, _, _ = bytes.Cut(tag, []byte{':'})
	var partial bool
	switch string(tag) {
	case "F":
	case "P":
		partial = true
	default:
		return Line{}, fmt.Errorf("log line: bad tag %q", tag)
	}
	return Line{Time: t, Stream: string(stream), Partial: partial, Content: string(content)}, nil
}
