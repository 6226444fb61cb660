package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/egress"
	"berth.dev/berth/internal/testutil"
)

const callbackCrashEnv = "BERTH_QUEUE_CALLBACK_CRASH"

// TestCallbackSurvivesKill9: a process that finished an invocation,
// acknowledged it and was posting its callback is killed; the next process
// on the same directory posts the callback. (Before, the callback lived
// only in the dying process's memory.)
func TestCallbackSurvivesKill9(t *testing.T) {
	if spec := os.Getenv(callbackCrashEnv); spec != "" {
		dir, url, _ := strings.Cut(spec, " ")
		callbackChild(t, dir, url)
		return
	}
	var mu sync.Mutex
	var posts []v1.Invocation
	first := make(chan struct{})
	var once sync.Once
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var inv v1.Invocation
		json.NewDecoder(r.Body).Decode(&inv)
		mu.Lock()
		posts = append(posts, inv)
		n := len(posts)
		mu.Unlock()
		if n == 1 {
			// The child's post: held until the child is dead, so it never
			// hears an answer.
			once.Do(func() { close(first) })
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCallbackSurvivesKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), callbackCrashEnv+"="+dir+" "+hook.URL+"/done")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var id string
	acked := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "ID "); ok {
				id = v
			}
			if sc.Text() == "ACKED" {
				close(acked)
			}
		}
	}()
	for _, c := range []struct {
		ch   chan struct{}
		what string
	}{{acked, "the invocation finished and acknowledged"}, {first, "the callback's first post"}} {
		select {
		case <-c.ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("child: no sign of %s in 30s", c.what)
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	openQueue(t, dir, newFake(), nil)
	testutil.WaitFor(t, 30*time.Second, "the callback posted again after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posts) >= 2
	})
	mu.Lock()
	got := posts[len(posts)-1]
	mu.Unlock()
	if got.ID != id || got.Status != v1.InvocationSucceeded || got.Body != "ok:in" {
		t.Errorf("callback after the restart = %+v; want invocation %s succeeded with ok:in", got, id)
	}
}

// callbackChild finishes one invocation with a callback, says ACKED once the
// invocation's work message is acknowledged, and waits to be killed.
func callbackChild(t *testing.T, dir, url string) {
	q, err := Open(context.Background(), Config{Dir: dir, Invoker: newFake(), Logger: testLogger(t), Egress: anyURL{}})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, q, Function{Environment: "dev", Name: "fn"})
	id, err := q.Enqueue(context.Background(), "dev", "fn", []byte("in"), nil, url)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ID " + id + "\n")
	waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 20*time.Second)
	// A work-queue stream drops a message when it is acknowledged.
	testutil.WaitFor(t, 20*time.Second, "the invocation acknowledged", func() bool { return q.Depth("dev", "fn") == 0 })
	os.Stdout.WriteString("ACKED\n")
	select {} // until SIGKILL
}

// TestCallbacksKeepTheEnvironmentsSeal: with the real egress policy, a
// callback URL naming the host or another environment is refused when the
// invocation is enqueued, and a callback to the environment's own service
// by name goes to the environment's gateway listener (its door), with the
// name as Host.
func TestCallbacksKeepTheEnvironmentsSeal(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	door := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
	}))
	defer door.Close()
	eg, err := egress.New(egress.Config{
		Networks: subnets{"dev": netip.MustParsePrefix("10.89.0.0/24"), "prod": netip.MustParsePrefix("10.89.1.0/24")},
		Doors:    doors{"dev": door.Listener.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, t.TempDir(), newFake(), func(c *Config) { c.Egress = eg })
	mustSet(t, q, Function{Environment: "dev", Name: "fn"})
	ctx := context.Background()
	for _, u := range []string{door.URL + "/", "http://10.89.1.9:8080/", "http://169.254.169.254/", "https://hook/"} {
		if _, err := q.Enqueue(ctx, "dev", "fn", nil, nil, u); v1.KindOf(err) != v1.ErrForbidden {
			t.Errorf("Enqueue with callback %s: %v; want Forbidden", u, err)
		}
	}
	id, err := q.Enqueue(ctx, "dev", "fn", []byte("in"), nil, "http://hook/done")
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, q, "dev", id, v1.InvocationSucceeded, 10*time.Second)
	testutil.WaitFor(t, 10*time.Second, "the callback at dev's door", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hosts) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if hosts[0] != "hook" {
		t.Errorf("callback arrived with Host %q; want hook", hosts[0])
	}
}

type subnets map[string]netip.Prefix

func (s subnets) Subnets() map[string]netip.Prefix { return s }

type doors map[string]string

func (d doors) Addr(env string) string { return d[env] }
