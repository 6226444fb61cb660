package bolt_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/store/storetest"
)

const (
	testHistory = 64
	testBuffer  = 32
)

func openAt(t testing.TB, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{HistorySize: testHistory, WatchBuffer: testBuffer})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	// Reopen is handed a store and needs its file; subtests run in parallel.
	var mu sync.Mutex
	paths := map[store.Store]string{}
	openPath := func(t *testing.T, p string) store.Store {
		s := openAt(t, p)
		mu.Lock()
		defer mu.Unlock()
		paths[s] = p
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			return openPath(t, filepath.Join(t.TempDir(), "state.db"))
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			mu.Lock()
			p := paths[s]
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return openPath(t, p)
		},
		HistorySize: testHistory,
		WatchLag:    testBuffer,
	})
}

// TestMain lets the test binary act as a second process for the lock and
// crash tests.
func TestMain(m *testing.M) {
	switch os.Getenv("BERTH_STORE_HELPER") {
	case "hold":
		helperHold(os.Getenv("BERTH_STORE_PATH"))
	case "write":
		helperWrite(os.Getenv("BERTH_STORE_PATH"))
	default:
		os.Exit(m.Run())
	}
}

// helperHold opens the store and keeps it until stdin closes.
func helperHold(path string) {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	s.Close()
	os.Exit(0)
}

// helperWrite creates records until killed, reporting each acknowledged one.
func helperWrite(path string) {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ctx := context.Background() // a process of its own, not a request
	for i := 0; ; i++ {
		key := store.Key{Kind: v1.KindService, Environment: "crash", Name: fmt.Sprintf("r%06d", i)}
		rev, err := s.Create(ctx, key, []byte(strconv.Itoa(i)))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ok", i, rev)
	}
}

func helper(t *testing.T, mode, path string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_STORE_HELPER="+mode, "BERTH_STORE_PATH="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(stdout)
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd, stdin, out := helper(t, "hold", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("holder did not start: %q", out.Text())
	}

	start := time.Now()
	_, err := bolt.Open(path, bolt.Options{LockTimeout: 200 * time.Millisecond})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("second Open took %s", took)
	}
	if v1.KindOf(err) != v1.ErrUnavailable {
		t.Fatalf("second Open: %v (kind %s), want Unavailable", err, v1.KindOf(err))
	}
	for _, want := range []string{"in use by another berth server", fmt.Sprintf("pid %d", cmd.Process.Pid)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Once the holder exits, the data dir is free again.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path)
	s.Close()
}

func TestSecondOpenInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openAt(t, path)
	defer s.Close()
	_, err := bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond})
	if v1.KindOf(err) != v1.ErrUnavailable || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open in the same process: %v", err)
	}
}

// TestCrashDurability kills a writer with SIGKILL mid-stream: every write it
// was told had succeeded must be there after reopening, and the revision
// must carry on from where it was.
func TestCrashDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd, _, out := helper(t, "write", path)
	acked, lastRev := -1, uint64(0)
	for out.Scan() {
		var i int
		var rev uint64
		if _, err := fmt.Sscanf(out.Text(), "ok %d %d", &i, &rev); err != nil {
			t.Fatalf("writer said %q", out.Text())
		}
		acked, lastRev = i, rev
		if i == 100 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	cmd.Wait()
	if acked < 100 {
		t.Fatalf("writer acknowledged only %d writes", acked+1)
	}

	s := openAt(t, path)
	defer s.Close()
	ctx := t.Context()
	recs, rev, err := s.List(ctx, v1.KindService, "crash")
	if err != nil {
		t.Fatal(err)
	}
	// The writer may have committed one more after its last report.
	if len(recs) < acked+1 || rev < lastRev {
		t.Fatalf("after crash: %d records at revision %d; %d were acknowledged, the last at %d", len(recs), rev, acked+1, lastRev)
	}
	for i := 0; i <= acked; i++ {
		if string(recs[i].Value) != strconv.Itoa(i) {
			t.Fatalf("record %d = %q", i, recs[i].Value)
		}
	}
	next, err := s.Create(ctx, store.Key{Kind: v1.KindService, Environment: "crash", Name: "after"}, nil)
	if err != nil || next != rev+1 {
		t.Fatalf("first write after crash at %d, %v; want %d", next, err, rev+1)
	}
}
