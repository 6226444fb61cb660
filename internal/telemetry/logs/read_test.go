package logs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/logs"
	"berth.dev/berth/internal/testutil"
)

var t0 = time.Date(2026, 11, 28, 8, 23, 19, 0, time.UTC)

// at is t0 plus n milliseconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// rec formats one CRI record as the shim writes it.
func rec(t time.Time, stream, tag, content string) string {
	return fmt.Sprintf("%s %s %s %s\n", t.Format("2006-01-02T15:04:05.000000000Z07:00"), stream, tag, content)
}

func appendFile(t *testing.T, path string, records ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(records, "")); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root string, q logs.Query) string {
	t.Helper()
	var buf bytes.Buffer
	if err := logs.Read(t.Context(), root, q, &buf); err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	return buf.String()
}

func TestMergesInstancesInTimeOrder(t *testing.T) {
	root := t.TempDir()
	dir := logs.Dir(root, "default", "web")
	appendFile(t, filepath.Join(dir, "web-a.log.1"),
		rec(at(0), "stdout", "F", "a0 (rotated)"),
		rec(at(20), "stdout", "F", "a2 (rotated)"))
	appendFile(t, filepath.Join(dir, "web-a.log"),
		rec(at(40), "stdout", "F", "a4"),
		rec(at(60), "stderr", "F", "a6"))
	appendFile(t, filepath.Join(dir, "web-b.log"),
		rec(at(10), "stdout", "F", "b1"),
		rec(at(40), "stdout", "F", "b4 (same time as a4)"),
		rec(at(50), "stdout", "F", "b5"))
	// Another owner's files must not leak in.
	appendFile(t, filepath.Join(logs.Dir(root, "default", "other"), "other-a.log"),
		rec(at(30), "stdout", "F", "other"))

	got := read(t, root, logs.Query{Environment: "default", Owner: "web"})
	want := strings.Join([]string{
		"[web-a] a0 (rotated)",
		"[web-b] b1",
		"[web-a] a2 (rotated)",
		"[web-a] a4",
		"[web-b] b4 (same time as a4)",
		"[web-b] b5",
		"[web-a] a6",
	}, "\n") + "\n"
	if got != want {
		t.Errorf("merged logs:\n%s\nwant:\n%s", got, want)
	}

	// One instance alone is not prefixed unless asked, and gets timestamps
	// when asked.
	got = read(t, root, logs.Query{Environment: "default", Owner: "web", Instance: "web-b", Timestamps: true})
	want = "2026-11-28T08:23:19.01Z b1\n2026-11-28T08:23:19.04Z b4 (same time as a4)\n2026-11-28T08:23:19.05Z b5\n"
	if got != want {
		t.Errorf("one instance with timestamps:\n%s\nwant:\n%s", got, want)
	}
	got = read(t, root, logs.Query{Environment: "default", Owner: "web", Instance: "web-b", Prefix: true, Tail: 1})
	if want := "[web-b] b5\n"; got != want {
		t.Errorf("prefixed tail 1 = %q, want %q", got, want)
	}
}

func TestJoinsPartialRecords(t *testing.T) {
	root := t.TempDir()
	dir := logs.Dir(root, "dev", "api")
	appendFile(t, filepath.Join(dir, "api-1.log"),
		rec(at(0), "stdout", "P", "hello "),
		rec(at(1), "stderr", "F", "an error in between"),
		rec(at(2), "stdout", "P", "long "),
		rec(at(3), "stdout", "F", "world"),
		rec(at(4), "stdout", "F", ""),
		"not a CRI record\n",
		rec(at(5), "stdout", "F:x", "tagged"),
		rec(at(6), "stdout", "P", "no newline before exit"))
	got := read(t, root, logs.Query{Environment: "dev", Owner: "api", Timestamps: true})
	want := strings.Join([]string{
		// A joined line carries the time of its last piece.
		"2026-11-28T08:23:19.001Z an error in between",
		"2026-11-28T08:23:19.003Z hello long world",
		"2026-11-28T08:23:19.004Z ",
		"2026-11-28T08:23:19.004Z not a CRI record",
		"2026-11-28T08:23:19.005Z tagged",
		"2026-11-28T08:23:19.006Z no newline before exit",
	}, "\n") + "\n"
	if got != want {
		t.Errorf("joined:\n%s\nwant:\n%s", got, want)
	}
}

func TestSinceAndTail(t *testing.T) {
	root := t.TempDir()
	dir := logs.Dir(root, "default", "web")
	for i := range 10 {
		inst := "web-a"
		if i%2 == 1 {
			inst = "web-b"
		}
		appendFile(t, filepath.Join(dir, inst+".log"), rec(at(i*10), "stdout", "F", fmt.Sprint("line ", i)))
	}
	q := logs.Query{Environment: "default", Owner: "web", Since: at(50)}
	if got, want := read(t, root, q), "[web-b] line 5\n[web-a] line 6\n[web-b] line 7\n[web-a] line 8\n[web-b] line 9\n"; got != want {
		t.Errorf("since:\n%s\nwant:\n%s", got, want)
	}
	q.Tail = 2
	if got, want := read(t, root, q), "[web-a] line 8\n[web-b] line 9\n"; got != want {
		t.Errorf("since+tail 2:\n%s\nwant:\n%s", got, want)
	}
	q = logs.Query{Environment: "default", Owner: "web", Tail: 3}
	if got, want := read(t, root, q), "[web-b] line 7\n[web-a] line 8\n[web-b] line 9\n"; got != want {
		t.Errorf("tail 3:\n%s\nwant:\n%s", got, want)
	}
	q.Tail = 100
	if got := read(t, root, q); strings.Count(got, "\n") != 10 {
		t.Errorf("tail larger than the log gave %d lines, want all 10", strings.Count(got, "\n"))
	}
	q.Tail = -1
	if got := read(t, root, q); got != "" {
		t.Errorf("negative tail gave %q, want nothing", got)
	}
}

func TestMissingOwnerIsNotFound(t *testing.T) {
	root := t.TempDir()
	err := logs.Read(t.Context(), root, logs.Query{Environment: "default", Owner: "nope"}, &bytes.Buffer{})
	if !v1.IsNotFound(err) {
		t.Errorf("missing owner: err = %v, want NotFound", err)
	}
	appendFile(t, filepath.Join(logs.Dir(root, "default", "web"), "web-a.log"), rec(at(0), "stdout", "F", "x"))
	err = logs.Read(t.Context(), root, logs.Query{Environment: "default", Owner: "web", Instance: "web-z"}, &bytes.Buffer{})
	if !v1.IsNotFound(err) {
		t.Errorf("missing instance: err = %v, want NotFound", err)
	}
	err = logs.Read(t.Context(), root, logs.Query{Environment: "default", Owner: ".."}, &bytes.Buffer{})
	if !v1.IsInvalid(err) {
		t.Errorf("owner \"..\": err = %v, want Invalid", err)
	}
}

// syncBuffer is written by Read's goroutine and read by the test.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	flushes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushes++
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFollow(t *testing.T) {
	root := t.TempDir()
	dir := logs.Dir(root, "default", "web")
	a := filepath.Join(dir, "web-a.log")
	appendFile(t, a, rec(at(0), "stdout", "F", "old 1"), rec(at(1), "stdout", "F", "old 2"))

	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- logs.Read(ctx, root, logs.Query{Environment: "default", Owner: "web", Tail: 1, Follow: true}, out)
	}()
	testutil.WaitFor(t, 5*time.Second, "the tail", func() bool { return out.String() == "old 2\n" })

	// Appended lines, including one written in two pieces across polls.
	appendFile(t, a, rec(at(2), "stdout", "F", "new 1"), rec(at(3), "stdout", "P", "split "))
	testutil.WaitFor(t, 5*time.Second, "an appended line", func() bool { return strings.HasSuffix(out.String(), "new 1\n") })
	appendFile(t, a, rec(at(4), "stdout", "F", "line"))
	testutil.WaitFor(t, 5*time.Second, "the joined line", func() bool { return strings.HasSuffix(out.String(), "split line\n") })

	// A new instance appears: from now on lines are prefixed.
	appendFile(t, filepath.Join(dir, "web-b.log"), rec(at(5), "stdout", "F", "hello from b"))
	testutil.WaitFor(t, 5*time.Second, "the new instance", func() bool { return strings.HasSuffix(out.String(), "[web-b] hello from b\n") })

	// Rotation: a last line lands in the old file just before it is renamed,
	// then the new live file starts.
	appendFile(t, a, rec(at(6), "stdout", "F", "last before rotation"))
	if err := os.Rename(a, a+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, a, rec(at(7), "stdout", "F", "first after rotation"))
	testutil.WaitFor(t, 5*time.Second, "lines across rotation", func() bool {
		return strings.HasSuffix(out.String(), "[web-a] last before rotation\n[web-a] first after rotation\n")
	})
	appendFile(t, a, rec(at(8), "stdout", "F", "still following"))
	testutil.WaitFor(t, 5*time.Second, "lines after rotation", func() bool { return strings.HasSuffix(out.String(), "[web-a] still following\n") })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Read after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after its context ended")
	}
	want := "old 2\nnew 1\nsplit line\n[web-b] hello from b\n[web-a] last before rotation\n[web-a] first after rotation\n[web-a] still following\n"
	if got := out.String(); got != want {
		t.Errorf("followed output:\n%s\nwant:\n%s", got, want)
	}
	out.mu.Lock()
	flushes := out.flushes
	out.mu.Unlock()
	if flushes == 0 {
		t.Error("Read never flushed its writer")
	}
}

func TestFollowWaitsForFirstInstance(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- logs.Read(ctx, root, logs.Query{Environment: "default", Owner: "web", Follow: true}, out)
	}()
	appendFile(t, filepath.Join(logs.Dir(root, "default", "web"), "web-a.log"), rec(at(0), "stdout", "F", "up"))
	testutil.WaitFor(t, 5*time.Second, "the first line", func() bool { return out.String() == "up\n" })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Read = %v", err)
	}
}
