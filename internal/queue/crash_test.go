package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

const crashDirEnv = "BERTH_QUEUE_CRASH_DIR"

var crashFunction = Function{Environment: "dev", Name: "slow", Timeout: time.Minute, MaxRetries: 2, Backoff: 10 * time.Millisecond}

// TestKill9Survival runs a child (this test binary again) that enqueues
// invocations while its function never answers, SIGKILLs it, and checks that
// a new queue on the same directory completes every id the child was given.
func TestKill9Survival(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Survival$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Read the ids the child got back from Enqueue, until it says it is
	// ready to be killed (all enqueued, some in flight).
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ids []string
	deadline := time.After(30 * time.Second)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited before it was ready")
			}
			if id, ok := strings.CutPrefix(l, "ID "); ok {
				ids = append(ids, id)
			}
			if l == "READY" {
				break read
			}
		case <-deadline:
			t.Fatal("child not ready in 30s")
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	go func() {
		for range lines {
		}
	}()
	if len(ids) != crashN {
		t.Fatalf("child acknowledged %d ids; want %d", len(ids), crashN)
	}

	inv := newFake()
	q := openQueue(t, dir, inv, nil)
	mustSet(t, q, crashFunction)
	// Every acknowledged id completes with its own request, called once
	// after the restart. The ones in flight when the child died count that
	// attempt too (Attempts 2): at least once, never lost.
	inFlight := 0
	for i, id := range ids {
		got := waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 30*time.Second)
		if want := fmt.Sprintf("ok:body-%d", i); got.Body != want {
			t.Errorf("invocation %s body %q; want %q", id, got.Body, want)
		}
		if got.Attempts == 2 {
			inFlight++
		} else if got.Attempts != 1 {
			t.Errorf("invocation %s: %d attempts", id, got.Attempts)
		}
		if n := len(inv.callsOf(id)); n != 1 {
			t.Errorf("invocation %s called %d times after the restart; want 1", id, n)
		}
	}
	t.Logf("child acknowledged %d ids, %d were in flight at the kill; all completed", len(ids), inFlight)
	if inFlight != inFlightPerFunction {
		t.Errorf("%d invocations were in flight at the kill; want %d", inFlight, inFlightPerFunction)
	}
	testutil.WaitFor(t, 10*time.Second, "depth 0", func() bool { return q.Depth("dev", "slow") == 0 })
}

const crashN = 40

// crashChild enqueues crashN invocations of a function that never answers,
// prints their ids, waits until a full batch is in flight, says READY and
// waits to be killed.
func crashChild(t *testing.T, dir string) {
	inv := newFake()
	inv.block = true
	cfg := Config{Dir: dir, Invoker: inv, Logger: testLogger(t)}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, q, crashFunction)
	for i := range crashN {
		id, err := q.Enqueue(context.Background(), "dev", "slow", []byte(fmt.Sprintf("body-%d", i)), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ID %s\n", id)
	}
	testutil.WaitFor(t, 20*time.Second, "a batch in flight", func() bool { return len(inv.callsFor("dev", "slow")) == inFlightPerFunction })
	fmt.Println("READY")
	select {} // until SIGKILL
}
