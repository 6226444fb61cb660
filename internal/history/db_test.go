package history

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func openTest(t *testing.T, opts Options) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "history.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func busyMinute(at time.Time) Minute {
	return Minute{
		At: at, Kinds: RanAsService, Covered: 60, Active: 1<<60 - 1,
		Requests: 3000, Answered: 2999, Errors: 3, BusySeconds: 150.25, InFlightMax: 9,
		P50: 0.0125, P90: 0.09, P99: 0.4, ColdStarts: 2, ColdStartSeconds: 0.041,
		Starts: 1, StartSeconds: 0.2, InstanceSeconds: 120, ReadySeconds: 119.8, InstancesMax: 2,
		CPUSeconds: 12.5, MemoryBytes: 80 << 20, MemoryMaxBytes: 96 << 20,
	}
}

func TestMinuteEncodingRoundTrips(t *testing.T) {
	for _, m := range []Minute{
		{At: t0, Covered: 60},
		{At: t0, Covered: 12, Kinds: RanAsFunction | RanAsService, Active: 1 << 59},
		busyMinute(t0),
	} {
		got, err := decodeMinute(m.At, m.encode(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got != m {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
	if n := len((Minute{Covered: 60}).encode(nil)); n > 3 {
		t.Errorf("an idle minute takes %d bytes, want at most 3", n)
	}
	if _, err := decodeMinute(t0, []byte{9, 0}); err == nil {
		t.Error("an unknown encoding version decoded")
	}
	if _, err := decodeMinute(t0, []byte{encodingVersion, 0xff}); err == nil {
		t.Error("a truncated record decoded")
	}
}

func TestRangeIsOrderedAndBounded(t *testing.T) {
	db := openTest(t, Options{})
	var es []Entry
	for i := range 10 {
		es = append(es, Entry{Environment: "prod", Name: "api", Minute: Minute{At: t0.Add(time.Duration(i) * time.Minute), Covered: 60, Requests: int64(i)}})
		es = append(es, Entry{Environment: "dev", Name: "api", Minute: Minute{At: t0.Add(time.Duration(i) * time.Minute), Covered: 60, Requests: 100}})
	}
	if err := db.Append(es); err != nil {
		t.Fatal(err)
	}
	got, err := db.Range("prod", "api", t0.Add(2*time.Minute), t0.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Requests != 2 || got[2].Requests != 4 || !got[0].At.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("range [2m, 5m) = %+v", got)
	}
	none, err := db.Range("prod", "nothing", t0, t0.Add(time.Hour))
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown workload: %v %v", none, err)
	}
	ws, _ := db.Workloads()
	if len(ws) != 2 {
		t.Fatalf("workloads = %v", ws)
	}
}

func TestPruneKeepsTheRetention(t *testing.T) {
	now := t0.Add(48 * time.Hour)
	db := openTest(t, Options{Retention: 24 * time.Hour, Now: func() time.Time { return now }})
	var es []Entry
	for i := range 3 * 24 * 60 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if at.After(now) {
			break
		}
		es = append(es, Entry{Environment: "e", Name: "old", Minute: Minute{At: at, Covered: 60, Requests: 1}})
	}
	es = append(es, Entry{Environment: "e", Name: "gone", Minute: Minute{At: t0, Covered: 60}})
	if err := db.Append(es); err != nil {
		t.Fatal(err)
	}
	n, err := db.Prune(context.Background(), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 24*60+1 {
		t.Errorf("pruned %d minutes, want %d", n, 24*60+1)
	}
	left, _ := db.Range("e", "old", t0, now.Add(time.Minute))
	if len(left) != 24*60+1 || left[0].At.Before(now.Add(-24*time.Hour)) {
		t.Errorf("kept %d minutes from %v", len(left), left[0].At)
	}
	ws, _ := db.Workloads()
	if len(ws) != 1 {
		t.Errorf("a workload whose minutes all aged out is still listed: %v", ws)
	}
}

// TestBytesPerWorkloadDay bounds the file: a busy workload's day (every
// minute with traffic, every field set) and an idle function's.
func TestBytesPerWorkloadDay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		minute func(time.Time) Minute
		max    int64
	}{
		{"busy", busyMinute, 110 << 10},
		{"idle", func(at time.Time) Minute { return Minute{At: at, Kinds: RanAsFunction, Covered: 60} }, 40 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, Options{})
			const workloads, days = 10, 3
			for d := range days {
				for h := range 24 {
					var es []Entry
					for w := range workloads {
						for m := range 60 {
							at := t0.Add(time.Duration(d*24*60+h*60+m) * time.Minute)
							es = append(es, Entry{Environment: "e", Name: string(rune('a' + w)), Minute: tc.minute(at)})
						}
					}
					if err := db.Append(es); err != nil {
						t.Fatal(err)
					}
				}
			}
			var total int64
			for w := range workloads {
				n, err := db.Bytes("e", string(rune('a'+w)))
				if err != nil {
					t.Fatal(err)
				}
				total += n
			}
			perDay := total / (workloads * days)
			size, _ := db.Size()
			t.Logf("%s: %d bytes of pages per workload per day (file %d bytes for %d workload-days)", tc.name, perDay, size, workloads*days)
			if perDay > tc.max {
				t.Errorf("%s: %d bytes per workload per day, want at most %d", tc.name, perDay, tc.max)
			}
		})
	}
}
