package logshim_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/runtime/logshim"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the logger, as the berth binary does.
	if len(os.Args) > 1 && os.Args[1] == "log-shim" {
		os.Exit(logshim.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func readLines(t *testing.T, path string) []logshim.Line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logshim.Line
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l, err := logshim.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("parse %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestShimProtocol runs the logger the way containerd's shim does: stdout
// on fd 3, stderr on fd 4, a ready pipe on fd 5, and its arguments in the
// order a URL query gives them.
func TestShimProtocol(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deep", "dir", "c1.log")
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	readyR, readyW, _ := os.Pipe()
	cmd := exec.Command(os.Args[0], "log-shim", "--path="+path)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outR.Close()
	errR.Close()
	readyW.Close()
	// Ready: the logger closes its end of the wait pipe.
	buf := make([]byte, 8)
	for {
		if _, err := readyR.Read(buf); err != nil {
			break
		}
	}

	outW.WriteString("hello\nworld\n")
	errW.WriteString("oops\n")
	long := strings.Repeat("x", logshim.MaxLineSize+10)
	outW.WriteString(long + "\nno newline")
	outW.Close()
	errW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logger exited: %v", err)
	}

	var stdout []logshim.Line
	var stderr []string
	for _, l := range readLines(t, path) {
		if time.Since(l.Time) > time.Minute || l.Time.After(time.Now()) {
			t.Errorf("odd timestamp %v", l.Time)
		}
		if l.Stream == logshim.Stderr {
			stderr = append(stderr, l.Content)
		} else {
			stdout = append(stdout, l)
		}
	}
	if len(stderr) != 1 || stderr[0] != "oops" {
		t.Errorf("stderr = %q", stderr)
	}
	// hello, world, a partial 16 KiB piece, the 10-byte rest, the unterminated tail.
	if len(stdout) != 5 {
		t.Fatalf("got %d stdout records: %+v", len(stdout), stdout)
	}
	if stdout[0].Content != "hello" || stdout[1].Content != "world" || stdout[0].Partial {
		t.Errorf("records = %+v", stdout[:2])
	}
	if !stdout[2].Partial || len(stdout[2].Content) != logshim.MaxLineSize || stdout[3].Partial ||
		stdout[2].Content+stdout[3].Content != long {
		t.Errorf("long line not split into P then F records")
	}
	if !stdout[4].Partial || stdout[4].Content != "no newline" {
		t.Errorf("tail = %+v", stdout[4])
	}
}

func TestRotationBoundsDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := logshim.OpenWriter(path, 4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 100)
	for i := 0; i < 2000; i++ {
		if err := w.WriteRecord(time.Now(), logshim.Stdout, false, []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("expected %s: %v", p, err)
		}
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over max-size", p, st.Size())
		}
		total += st.Size()
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Errorf("kept more than max-files files")
	}
	if total < 4096 {
		t.Errorf("only %d bytes kept; rotation lost the recent lines", total)
	}
	if ls := readLines(t, path); len(ls) == 0 || ls[0].Content != line {
		t.Errorf("live file unreadable after rotation")
	}
}

func TestParseLine(t *testing.T) {
	l, err := logshim.ParseLine([]byte("2026-11-28T08:23:19.123456789Z stderr P a b  c\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 28, 8, 23, 19, 123456789, time.UTC)
	if !l.Time.Equal(want) || l.Stream != "stderr" || !l.Partial || l.Content != "a b  c" {
		t.Errorf("got %+v", l)
	}
	if l, err := logshim.ParseLine([]byte("2026-11-28T08:23:19.1Z stdout F ")); err != nil || l.Content != "" {
		t.Errorf("empty line: %+v %v", l, err)
	}
	for _, bad := range []string{"", "nonsense", "2026-11-28T08:23:19Z stdin F x", "2026-11-28T08:23:19Z stdout X x"} {
		if _, err := logshim.ParseLine([]byte(bad)); err == nil {
			t.Errorf("ParseLine(%q) accepted", bad)
		}
	}
}
