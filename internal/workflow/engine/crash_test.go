package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/workflow/engine"
)

// countingStore counts the engine's writes and, when at is reached, kills
// the process right after the write is durable: kill -9 at that point.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	at     int
}

func (s *countingStore) wrote() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.writes == s.at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func (s *countingStore) Create(ctx context.Context, key store.Key, value []byte) (uint64, error) {
	rev, err := s.Store.Create(ctx, key, value)
	if err == nil {
		s.wrote()
	}
	return rev, err
}

func (s *countingStore) Update(ctx context.Context, key store.Key, value []byte, expectRev uint64) (uint64, error) {
	rev, err := s.Store.Update(ctx, key, value, expectRev)
	if err == nil {
		s.wrote()
	}
	return rev, err
}

const (
	envCrashDir  = "BERTH_ENGINE_CRASH_DIR"
	envCrashMode = "BERTH_ENGINE_CRASH_MODE"
	envCrashAt   = "BERTH_ENGINE_CRASH_AT"
	envCrashID   = "BERTH_ENGINE_CRASH_ID"
)

// TestCrashChild is the server that dies: TestCrashAndResume runs it in a
// child process, where it resumes the execution the parent started and
// kills itself after its k-th write to the store, or in its k-th task call.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("the child of TestCrashAndResume")
	}
	at, _ := strconv.Atoi(os.Getenv(envCrashAt))
	st := openStore(t, filepath.Join(dir, "berth.db"))
	fake := &fakeWorkloads{logPath: filepath.Join(dir, "keys.log")}
	var engineStore store.Store = st
	switch os.Getenv(envCrashMode) {
	case "write":
		engineStore = &countingStore{Store: st, at: at}
	case "call":
		fake.onCall = func(n int) {
			if n == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	h := start(t, engineStore, fake, newSkipClock(time.Now()), nil)
	waitDone(t, h.eng, "shop", os.Getenv(envCrashID))
}

type run struct {
	output  json.RawMessage
	history []string // type, state and details of each event
	keys    []string // distinct idempotency keys, sorted
}

func historyOf(t *testing.T, eng *engine.Engine, id string) []string {
	t.Helper()
	hist, err := eng.History(t.Context(), "shop", id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, ev := range hist {
		if ev.ID != int64(i+1) {
			t.Fatalf("event %d has id %d", i, ev.ID)
		}
		out = append(out, ev.Type+" "+ev.StateName+" "+string(ev.Details))
	}
	return out
}

func distinct(keys []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(keys)))
}

// TestCrashAndResume kills the engine (kill -9, in a child process) after
// each of its writes to the store in turn, and in each task call, then
// resumes on the same store: every execution finishes with the output of
// an uncrashed run, with the same history (nothing twice), and tasks are
// called with the same idempotency keys (some twice, none new).
func TestCrashAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per crash point")
	}
	// The uncrashed run, counting its writes and calls.
	ref := func() (run, int, int) {
		st := openStore(t, filepath.Join(t.TempDir(), "berth.db"))
		putWorkflow(t, st, "shop", "checkout", checkout)
		counting := &countingStore{Store: st}
		fake := &fakeWorkloads{}
		h := start(t, counting, fake, newSkipClock(time.Now()), nil)
		exec, err := h.eng.Start(t.Context(), "shop", "checkout", json.RawMessage(checkoutInput))
		if err != nil {
			t.Fatal(err)
		}
		done := waitDone(t, h.eng, "shop", exec.ID)
		if done.Status != v1.ExecutionSucceeded {
			t.Fatalf("reference run: %+v", done)
		}
		h.stop()
		counting.mu.Lock()
		defer counting.mu.Unlock()
		// The execution record's Create came from Start, which the
		// parent does before the child runs.
		return run{output: done.Output, history: historyOf(t, h.eng, exec.ID), keys: distinct(fake.seenKeys())},
			counting.writes - 1, len(fake.seenKeys())
	}
	want, writes, calls := ref()
	t.Logf("an uncrashed run writes %d times and makes %d calls", writes, calls)

	crashes := 0
	for _, mode := range []string{"write", "call"} {
		limit := writes
		if mode == "call" {
			limit = calls
		}
		for k := 1; k <= limit; k++ {
			t.Run(mode+"-"+strconv.Itoa(k), func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "berth.db")
				st := openStore(t, path)
				putWorkflow(t, st, "shop", "checkout", checkout)
				// Started, not run: the child's engine resumes it.
				execution, err := engine.New(engine.Config{Store: st}).Start(t.Context(), "shop", "checkout", json.RawMessage(checkoutInput))
				if err != nil {
					t.Fatal(err)
				}
				st.Close()

				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
				cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashMode+"="+mode,
					envCrashAt+"="+strconv.Itoa(k), envCrashID+"="+execution.ID)
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				switch {
				case err == nil && k > limit-3:
					// Map iterations flush history at times that depend on
					// timing, so a run may write a little less than the
					// reference: the last points may not be reached.
				case !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL:
					t.Fatalf("the child was not killed (%v):\n%s", err, out)
				default:
					crashes++
				}

				st = openStore(t, path)
				fake := &fakeWorkloads{logPath: filepath.Join(dir, "keys.log")}
				h := start(t, st, fake, newSkipClock(time.Now()), nil)
				done := waitDone(t, h.eng, "shop", execution.ID)
				if done.Status != v1.ExecutionSucceeded || !sameJSON(t, done.Output, string(want.output)) {
					t.Fatalf("resumed: %s %s %s, output %s; want %s", done.Status, done.Error, done.Cause, done.Output, want.output)
				}
				if got := historyOf(t, h.eng, execution.ID); !slices.Equal(got, want.history) {
					t.Errorf("history differs from an uncrashed run's:\n%s\nwant\n%s", lines(got), lines(want.history))
				}
				// Keys: the child's and the resumed engine's, as the
				// execution id is new for this run.
				var keys []string
				f, err := os.Open(filepath.Join(dir, "keys.log"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					keys = append(keys, sc.Text())
				}
				if got := distinct(keys); !slices.Equal(stripIDs(got), stripIDs(want.keys)) {
					t.Errorf("idempotency keys\n%s\nwant (but for the execution id)\n%s", lines(got), lines(want.keys))
				}
			})
		}
	}
	if crashes < 20 {
		t.Errorf("only %d crash points", crashes)
	}
}

// stripIDs drops the execution id that starts each key.
func stripIDs(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		_, rest, _ := cutAfterID(k)
		out[i] = rest
	}
	slices.Sort(out)
	return out
}

func cutAfterID(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func lines(l []string) string {
	out := ""
	for _, s := range l {
		out += "  " + s + "\n"
	}
	return out
}
