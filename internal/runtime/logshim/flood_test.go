package logshim_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"berth.dev/berth/internal/runtime/logshim"
)

// repeatReader yields n bytes of a pattern without holding them.
type repeatReader struct {
	pattern []byte
	left    int64
	off     int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:min(len(p), n+int(r.left))], r.pattern[r.off:])
		n += c
		r.left -= int64(c)
		r.off = (r.off + c) % len(r.pattern)
	}
	return n, nil
}

// TestFloodStaysWithinCaps is a workload that writes 48 MiB of short lines
// on stdout while writing one 16 MiB line without a newline on stderr: the
// files on disk stay within max-size × max-files, the logger's memory does
// not grow with what passes through it, and both streams' latest output is
// what is kept.
func TestFloodStaysWithinCaps(t *testing.T) {
	const (
		maxSize  = 1 << 20
		maxFiles = 3
		flood    = 48 << 20
		huge     = 16 << 20
	)
	path := filepath.Join(t.TempDir(), "flood.log")
	w, err := logshim.OpenWriter(path, maxSize, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	// Peak heap while the flood passes: the logger must hold one line
	// buffer per stream, whatever passes through it.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var top uint64
		for {
			runtime.ReadMemStats(&m)
			top = max(top, m.HeapInuse)
			select {
			case <-stop:
				peak <- top
				return
			default:
				runtime.Gosched()
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs <- logshim.Copy(w, logshim.Stdout, &repeatReader{pattern: []byte("a log line of some length, as a busy server prints\n"), left: flood})
	}()
	go func() {
		defer wg.Done()
		errs <- logshim.Copy(w, logshim.Stderr, &repeatReader{pattern: []byte("z"), left: huge})
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Copy: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	heapPeak := <-peak

	var total int64
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxSize {
			t.Errorf("%s is %d bytes, over max-size %d", f, st.Size(), maxSize)
		}
		total += st.Size()
	}
	if len(files) > maxFiles {
		t.Errorf("%d files kept (%v), want at most %d", len(files), files, maxFiles)
	}
	if total > maxSize*maxFiles {
		t.Errorf("%d bytes on disk, over the cap of %d", total, maxSize*maxFiles)
	}
	t.Logf("%d MiB through the logger: %d files, %d bytes on disk, heap in use %.1f MiB before, %.1f MiB at peak",
		(flood+huge)>>20, len(files), total, float64(before.HeapInuse)/(1<<20), float64(heapPeak)/(1<<20))
	if grown := int64(heapPeak) - int64(before.HeapInuse); grown > 16<<20 {
		t.Errorf("heap grew by %d bytes while logging %d: memory grows with the output", grown, flood+huge)
	}

	// The newest output of both streams is kept: the live file ends with
	// the tail of the flood or of the huge line, in bounded records.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sawHuge := false
	for _, rec := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		l, err := logshim.ParseLine(rec)
		if err != nil {
			t.Fatalf("unparseable record in the live file: %v", err)
		}
		if len(l.Content) > logshim.MaxLineSize {
			t.Fatalf("record of %d bytes, over MaxLineSize", len(l.Content))
		}
		if l.Stream == logshim.Stderr {
			sawHuge = sawHuge || strings.Trim(l.Content, "z") == ""
		}
	}
	if !sawHuge {
		t.Log("the huge line's last pieces were rotated out by the flood (allowed)")
	}
}
