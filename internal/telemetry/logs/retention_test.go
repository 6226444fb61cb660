package logs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/logs"
)

func TestGrepUntilAndRevision(t *testing.T) {
	root := t.TempDir()
	dir := logs.Dir(root, "default", "web")
	// web-a ran revision 1 and is gone (its sidecar says so); web-b runs
	// revision 2 (the store says so); web-c has no sidecar and is unknown.
	appendFile(t, filepath.Join(dir, "web-a.log"),
		rec(at(0), "stdout", "F", "GET /a 200"),
		rec(at(20), "stderr", "F", "panic: boom"))
	if err := logs.WriteMeta(root, "default", "web", "web-a", logs.Meta{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, "web-b.log"),
		rec(at(10), "stdout", "P", "GET /b "),
		rec(at(11), "stdout", "F", "500"),
		rec(at(30), "stdout", "F", "GET /c 200"))
	appendFile(t, filepath.Join(dir, "web-c.log"), rec(at(5), "stdout", "F", "GET /x 200"))
	known := map[string]int64{"web-b": 2}

	q := logs.Query{Environment: "default", Owner: "web", Grep: regexp.MustCompile(`^GET .* 200$`)}
	if got, want := read(t, root, q), "[web-a] GET /a 200\n[web-c] GET /x 200\n[web-b] GET /c 200\n"; got != want {
		t.Errorf("grep:\n%s\nwant:\n%s", got, want)
	}
	// A line split in partial records is matched whole.
	q.Grep = regexp.MustCompile(`/b 500`)
	if got, want := read(t, root, q), "[web-b] GET /b 500\n"; got != want {
		t.Errorf("grep across partial records = %q, want %q", got, want)
	}
	// Tail counts matching lines.
	q = logs.Query{Environment: "default", Owner: "web", Grep: regexp.MustCompile(`GET`), Tail: 1}
	if got, want := read(t, root, q), "[web-b] GET /c 200\n"; got != want {
		t.Errorf("grep + tail 1 = %q, want %q", got, want)
	}
	q = logs.Query{Environment: "default", Owner: "web", Since: at(5), Until: at(11)}
	if got, want := read(t, root, q), "[web-c] GET /x 200\n[web-b] GET /b 500\n"; got != want {
		t.Errorf("since..until:\n%s\nwant:\n%s", got, want)
	}
	q = logs.Query{Environment: "default", Owner: "web", Revision: 1, Revisions: known}
	if got, want := read(t, root, q), "GET /a 200\npanic: boom\n"; got != want {
		t.Errorf("revision 1 (gone, from the sidecar):\n%s\nwant:\n%s", got, want)
	}
	q.Revision = 2
	if got, want := read(t, root, q), "GET /b 500\nGET /c 200\n"; got != want {
		t.Errorf("revision 2 (live, from the store):\n%s\nwant:\n%s", got, want)
	}
	q.Revision = 9
	var sink strings.Builder
	if err := logs.Read(t.Context(), root, q, &sink); !v1.IsNotFound(err) {
		t.Errorf("revision without logs: err = %v, want NotFound", err)
	}
	err := logs.Read(t.Context(), root, logs.Query{Environment: "default", Owner: "web", Follow: true, Until: at(1)}, &sink)
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), "until") {
		t.Errorf("until with follow: err = %v, want Invalid naming until", err)
	}
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func touch(t *testing.T, path string, size int, mod time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("x", size)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestJanitorRetention(t *testing.T) {
	root := t.TempDir()
	st := openStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	live := &v1.Instance{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
		Metadata: v1.ObjectMeta{Name: "web-live", Environment: "default"},
		Spec:     v1.InstanceSpec{Owner: "web", OwnerKind: v1.KindService, Revision: 3},
	}
	if err := store.Create(t.Context(), st, live); err != nil {
		t.Fatal(err)
	}
	dir := logs.Dir(root, "default", "web")
	day := 24 * time.Hour
	// The live instance's files are old and big, and stay.
	touch(t, filepath.Join(dir, "web-live.log"), 600, now.Add(-30*day))
	touch(t, filepath.Join(dir, "web-live.log.1"), 300, now.Add(-31*day))
	// A gone instance past the age limit goes, with its sidecar.
	touch(t, filepath.Join(dir, "web-old.log"), 10, now.Add(-8*day))
	if err := logs.WriteMeta(root, "default", "web", "web-old", logs.Meta{Revision: 1}); err != nil {
		t.Fatal(err)
	}
	// Gone instances within the age limit go oldest first while the
	// workload is over its size cap (1000 bytes).
	touch(t, filepath.Join(dir, "web-g1.log.1"), 100, now.Add(-3*day))
	touch(t, filepath.Join(dir, "web-g1.log"), 100, now.Add(-2*day))
	touch(t, filepath.Join(dir, "web-g2.log"), 50, now.Add(-1*day))
	touch(t, filepath.Join(dir, "notes.txt"), 10, now.Add(-100*day))
	// A workload with only gone, old instances disappears entirely.
	gone := logs.Dir(root, "default", "api")
	touch(t, filepath.Join(gone, "api-x.log"), 10, now.Add(-9*day))

	j := logs.NewJanitor(logs.JanitorConfig{Root: root, Store: st, MaxAge: 7 * day, MaxBytes: 1000, Now: func() time.Time { return now }})
	if err := j.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"web-live.log": true, "web-live.log.1": true,
		"web-old.log": false, "web-old.meta": false,
		// 600+300+100+100+50 = 1150 > 1000: the oldest gone file goes,
		// then the total (1050) is still over, so the next one too.
		"web-g1.log.1": false, "web-g1.log": false, "web-g2.log": true,
		"notes.txt": true,
		// Written for the live instance so --revision finds it once gone.
		"web-live.meta": true,
	} {
		if got := exists(filepath.Join(dir, name)); got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
	if exists(gone) {
		t.Errorf("%s still exists after its last file was removed", gone)
	}
	m, err := logs.ReadMeta(dir, "web-live")
	if err != nil || m.Revision != 3 {
		t.Errorf("meta of the live instance = %+v, %v; want revision 3", m, err)
	}
}
