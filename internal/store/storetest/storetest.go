// Package storetest is the conformance suite every store.Store
// implementation must pass, in the manner of containerd's snapshotter suite.
// It holds the behaviour callers rely on (CAS, key order, watch ordering,
// replay and compaction, slow-watcher eviction, durability) so a new
// backend (etcd) is held to the same contract as the embedded one.
//
// It must only use the store.Store interface: nothing backend-specific.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Harness tells the suite how to make stores.
type Harness struct {
	// Open returns a new, empty store. The suite closes it; Close must be
	// safe to call twice.
	Open func(t *testing.T) store.Store
	// Reopen closes s and opens the same data again, as a server restart
	// would. Nil skips the durability tests.
	Reopen func(t *testing.T, s store.Store) store.Store
	// HistorySize is how many events stores from Open keep for replay.
	// Zero skips the test that overflows the history.
	HistorySize int
	// WatchLag is how many events a watcher may fall behind before the
	// store closes its channel; the slow-watcher test writes more than
	// this. Zero means 2000.
	WatchLag int
}

// wait bounds every wait for something the store should do promptly.
const wait = 10 * time.Second

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateGet", testCreateGet},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"InvalidKey", testInvalidKey},
		{"RevisionMonotonic", testRevisionMonotonic},
		{"List", testList},
		{"Reopen", testReopen},
		{"WatchOrder", testWatchOrder},
		{"WatchReplay", testWatchReplay},
		{"WatchHandoff", testWatchHandoff},
		{"WatchCompacted", testWatchCompacted},
		{"SlowWatcher", testSlowWatcher},
		{"WatchCancel", testWatchCancel},
		{"CloseEndsWatches", testCloseEndsWatches},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Txn", testTxn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func svc(env, name string) store.Key {
	return store.Key{Kind: v1.KindService, Environment: env, Name: name}
}

func mustCreate(t *testing.T, s store.Store, key store.Key, value string) uint64 {
	t.Helper()
	rev, err := s.Create(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Create %s: %v", key, err)
	}
	return rev
}

func mustUpdate(t *testing.T, s store.Store, key store.Key, value string) uint64 {
	t.Helper()
	rev, err := s.Update(t.Context(), key, []byte(value), 0)
	if err != nil {
		t.Fatalf("Update %s: %v", key, err)
	}
	return rev
}

func wantKind(t *testing.T, err error, kind string, contains ...string) {
	t.Helper()
	if v1.KindOf(err) != kind {
		t.Fatalf("error %v: kind %s, want %s", err, v1.KindOf(err), kind)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not mention %q", err, c)
		}
	}
}

func testCreateGet(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	key := svc("default", "web")
	rev := mustCreate(t, s, key, `{"a":1}`)
	if rev == 0 {
		t.Fatal("Create returned revision 0")
	}
	rec, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Key != key || string(rec.Value) != `{"a":1}` || rec.Revision != rev {
		t.Fatalf("Get = %+v, want %s %q at %d", rec, key, `{"a":1}`, rev)
	}
	// The caller may scribble on what it got; the store must not change.
	rec.Value[0] = 'X'
	if again, _ := s.Get(ctx, key); string(again.Value) != `{"a":1}` {
		t.Fatalf("stored value changed through a returned slice: %q", again.Value)
	}

	_, err = s.Create(ctx, key, []byte(`{}`))
	wantKind(t, err, v1.ErrConflict, key.String())

	_, err = s.Get(ctx, svc("default", "nope"))
	wantKind(t, err, v1.ErrNotFound, "Service/default/nope")

	// Same name in another environment or kind is another record.
	mustCreate(t, s, svc("staging", "web"), "s")
	mustCreate(t, s, store.Key{Kind: v1.KindRevision, Environment: "default", Name: "web"}, "r")
	if rec, _ := s.Get(ctx, key); string(rec.Value) != `{"a":1}` {
		t.Fatalf("record clobbered by a same-named key: %q", rec.Value)
	}
}

func testUpdate(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	key := svc("default", "web")
	rev1 := mustCreate(t, s, key, "one")

	rev2, err := s.Update(ctx, key, []byte("two"), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= rev1 {
		t.Fatalf("Update revision %d not after %d", rev2, rev1)
	}
	_, err = s.Update(ctx, key, []byte("stale"), rev1)
	wantKind(t, err, v1.ErrConflict, key.String(), fmt.Sprint(rev1), fmt.Sprint(rev2))
	if rec, _ := s.Get(ctx, key); string(rec.Value) != "two" || rec.Revision != rev2 {
		t.Fatalf("after a failed CAS: %+v, want two at %d", rec, rev2)
	}

	rev3, err := s.Update(ctx, key, []byte("three"), 0)
	if err != nil || rev3 <= rev2 {
		t.Fatalf("unconditional Update = %d, %v", rev3, err)
	}
	_, err = s.Update(ctx, svc("default", "nope"), []byte("x"), 0)
	wantKind(t, err, v1.ErrNotFound, "Service/default/nope")
}

func testDelete(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	key := svc("default", "web")
	rev := mustCreate(t, s, key, "one")

	wantKind(t, s.Delete(ctx, key, rev+100), v1.ErrConflict, fmt.Sprint(rev+100), fmt.Sprint(rev))
	if err := s.Delete(ctx, key, rev); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, key)
	wantKind(t, err, v1.ErrNotFound)
	wantKind(t, s.Delete(ctx, key, 0), v1.ErrNotFound, key.String())

	// A deleted name can be created again, as a new record.
	rev2 := mustCreate(t, s, key, "again")
	if rev2 <= rev {
		t.Fatalf("re-created at %d, not after %d", rev2, rev)
	}
	if err := s.Delete(ctx, key, 0); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
}

func testInvalidKey(t *testing.T, h Harness) {
	s := open(t, h)
	for _, key := range []store.Key{
		{Kind: "", Environment: "default", Name: "web"},
		{Kind: v1.KindService, Environment: "default", Name: ""},
	} {
		_, err := s.Create(t.Context(), key, []byte("x"))
		wantKind(t, err, v1.ErrInvalid)
	}
}

func testRevisionMonotonic(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	var last uint64
	check := func(rev uint64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("revision %d not after %d", rev, last)
		}
		last = rev
		if cur, err := s.Revision(ctx); err != nil || cur != rev {
			t.Fatalf("Revision = %d, %v, want %d", cur, err, rev)
		}
	}
	check(mustCreate(t, s, svc("a", "x"), "1"))
	check(mustCreate(t, s, svc("b", "x"), "1"))
	check(mustUpdate(t, s, svc("a", "x"), "2"))
	if err := s.Delete(ctx, svc("b", "x"), 0); err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Revision(ctx)
	check(rev)

	// Failed writes change nothing, the revision included.
	s.Create(ctx, svc("a", "x"), []byte("dup"))
	s.Update(ctx, svc("a", "x"), []byte("stale"), 1)
	s.Delete(ctx, svc("zz", "none"), 0)
	if cur, _ := s.Revision(ctx); cur != last {
		t.Fatalf("failed writes moved the revision from %d to %d", last, cur)
	}
}

func testList(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	// Created out of order; env "a" is a prefix of "ab", "web" of "web-2".
	for _, k := range []store.Key{
		svc("b", "web"), svc("a", "web-2"), svc("ab", "api"), svc("a", "web"), svc("a", "api"),
		{Kind: v1.KindRevision, Environment: "a", Name: "web-1"},
		{Kind: v1.KindEnvironment, Name: "a"},
		{Kind: v1.KindEnvironment, Name: "ab"},
	} {
		mustCreate(t, s, k, k.String())
	}
	cur, _ := s.Revision(ctx)

	list := func(kind, env string) string {
		t.Helper()
		recs, rev, err := s.List(ctx, kind, env)
		if err != nil {
			t.Fatalf("List(%s, %q): %v", kind, env, err)
		}
		if rev != cur {
			t.Errorf("List(%s, %q) revision %d, want %d", kind, env, rev, cur)
		}
		var names []string
		for _, r := range recs {
			if string(r.Value) != r.Key.String() || r.Revision == 0 {
				t.Errorf("List record %+v: value or revision wrong", r)
			}
			names = append(names, r.Key.String())
		}
		return strings.Join(names, " ")
	}
	for _, tc := range []struct{ kind, env, want string }{
		{v1.KindService, "a", "Service/a/api Service/a/web Service/a/web-2"},
		{v1.KindService, "ab", "Service/ab/api"},
		{v1.KindService, "", "Service/a/api Service/a/web Service/a/web-2 Service/ab/api Service/b/web"},
		{v1.KindRevision, "", "Revision/a/web-1"},
		{v1.KindEnvironment, "", "Environment/a Environment/ab"},
		{v1.KindService, "nope", ""},
		{v1.KindInstance, "", ""},
	} {
		if got := list(tc.kind, tc.env); got != tc.want {
			t.Errorf("List(%s, %q) =\n  %s\nwant\n  %s", tc.kind, tc.env, got, tc.want)
		}
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("harness has no Reopen")
	}
	s := h.Open(t)
	defer func() { s.Close() }()
	ctx := t.Context()
	mustCreate(t, s, svc("a", "kept"), "v1")
	mustCreate(t, s, svc("a", "gone"), "x")
	mustUpdate(t, s, svc("a", "kept"), "v2")
	if err := s.Delete(ctx, svc("a", "gone"), 0); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Revision(ctx)
	old := before - 2

	s = h.Reopen(t, s)
	if rev, err := s.Revision(ctx); err != nil || rev != before {
		t.Fatalf("after reopen Revision = %d, %v, want %d", rev, err, before)
	}
	rec, err := s.Get(ctx, svc("a", "kept"))
	if err != nil || string(rec.Value) != "v2" || rec.Revision != before-1 {
		t.Fatalf("after reopen Get = %+v, %v; want v2 at %d", rec, err, before-1)
	}
	if _, err := s.Get(ctx, svc("a", "gone")); !v1.IsNotFound(err) {
		t.Fatalf("deleted record after reopen: %v", err)
	}

	// Watching from the listed revision always works after a restart.
	ch, err := s.Watch(ctx, "", before)
	if err != nil {
		t.Fatalf("Watch from the current revision after reopen: %v", err)
	}
	rev := mustCreate(t, s, svc("a", "new"), "n")
	if rev != before+1 {
		t.Fatalf("first write after reopen at %d, want %d", rev, before+1)
	}
	if ev := next(t, ch); ev.Record.Revision != rev {
		t.Fatalf("watch after reopen got %+v, want revision %d", ev, rev)
	}
	// From older, a store may replay or say compacted, but never lie.
	ch, err = s.Watch(ctx, "", old)
	if err != nil {
		wantKind(t, err, v1.ErrConflict, "compacted")
		return
	}
	for want := old + 1; want <= rev; want++ {
		if ev := next(t, ch); ev.Record.Revision != want {
			t.Fatalf("replay after reopen: got revision %d, want %d", ev.Record.Revision, want)
		}
	}
}

// next receives one event or fails the test.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed early")
		}
		return ev
	case <-time.After(wait):
		t.Fatalf("no event in %s", wait)
	}
	panic("unreachable")
}

// closes waits for ch to close, returning what was still buffered.
func closes(t *testing.T, ch <-chan store.Event) []store.Event {
	t.Helper()
	var evs []store.Event
	deadline := time.After(wait)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-deadline:
			t.Fatalf("watch channel still open after %s", wait)
		}
	}
}

func testWatchOrder(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	start, _ := s.Revision(ctx)
	all, err := s.Watch(ctx, "", start)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := s.Watch(ctx, v1.KindService, start)
	if err != nil {
		t.Fatal(err)
	}

	type want struct {
		typ   store.EventType
		key   store.Key
		value string
	}
	inst := store.Key{Kind: v1.KindInstance, Environment: "a", Name: "web-x1"}
	steps := []want{
		{store.EventPut, svc("a", "web"), "1"},
		{store.EventPut, inst, "i"},
		{store.EventPut, svc("a", "web"), "2"},
		{store.EventDelete, svc("a", "web"), "2"}, // a delete carries the last value
		{store.EventDelete, inst, "i"},
	}
	mustCreate(t, s, steps[0].key, "1")
	mustCreate(t, s, inst, "i")
	mustUpdate(t, s, steps[2].key, "2")
	if err := s.Delete(ctx, steps[3].key, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, inst, 0); err != nil {
		t.Fatal(err)
	}

	for i, w := range steps {
		ev := next(t, all)
		if ev.Type != w.typ || ev.Record.Key != w.key || string(ev.Record.Value) != w.value || ev.Record.Revision != start+uint64(i)+1 {
			t.Fatalf("event %d = %s %s %q @%d, want %s %s %q @%d", i, ev.Type, ev.Record.Key, ev.Record.Value, ev.Record.Revision,
				w.typ, w.key, w.value, start+uint64(i)+1)
		}
	}
	for _, i := range []int{0, 2, 3} {
		ev := next(t, svcs)
		if ev.Record.Key.Kind != v1.KindService || ev.Record.Revision != start+uint64(i)+1 {
			t.Fatalf("kind-filtered watch got %s @%d, want Service @%d", ev.Record.Key, ev.Record.Revision, start+uint64(i)+1)
		}
	}
	select {
	case ev := <-svcs:
		t.Fatalf("kind-filtered watch got an extra event %+v", ev)
	default:
	}
}

func testWatchReplay(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	var revs []uint64
	for i := range 10 {
		revs = append(revs, mustCreate(t, s, svc("a", fmt.Sprint("r", i)), fmt.Sprint(i)))
	}
	ch, err := s.Watch(ctx, v1.KindService, revs[2])
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the watch began follow the replay seamlessly.
	for i := 10; i < 13; i++ {
		revs = append(revs, mustCreate(t, s, svc("a", fmt.Sprint("r", i)), fmt.Sprint(i)))
	}
	for i := 3; i < 13; i++ {
		ev := next(t, ch)
		if ev.Record.Revision != revs[i] || string(ev.Record.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d: got %q @%d, want %q @%d", i, ev.Record.Value, ev.Record.Revision, fmt.Sprint(i), revs[i])
		}
	}
	// A watch from the future sees nothing until the store gets there.
	ch, err = s.Watch(ctx, "", revs[12]+1)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, svc("a", "skipped"), "s")
	rev := mustCreate(t, s, svc("a", "seen"), "s")
	if ev := next(t, ch); ev.Record.Revision != rev {
		t.Fatalf("watch from the future got @%d, want @%d", ev.Record.Revision, rev)
	}
}

// testWatchHandoff starts watches while a writer runs: each must see the
// revisions after its start exactly once, in order, with no gap where the
// replay hands over to the live stream.
func testWatchHandoff(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	key := svc("a", "busy")
	mustCreate(t, s, key, "0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 400 {
			if _, err := s.Update(ctx, key, []byte(fmt.Sprint(i)), 0); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	}()
	for round := 0; ; round++ {
		select {
		case <-done:
			if round < 3 {
				t.Logf("only %d watches overlapped the writer", round)
			}
			return
		default:
		}
		rev, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		ch, err := s.Watch(wctx, v1.KindService, rev)
		if err != nil {
			t.Fatal(err)
		}
	check:
		for want := rev + 1; want <= rev+5; want++ {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("round %d: watch closed", round)
				}
				if ev.Record.Revision != want {
					t.Fatalf("round %d: watch from %d got @%d, want @%d", round, rev, ev.Record.Revision, want)
				}
			case <-done:
				break check // the writer finished: fewer events to come
			}
		}
		cancel()
	}
}

func testWatchCompacted(t *testing.T, h Harness) {
	if h.HistorySize == 0 {
		t.Skip("harness gives no HistorySize")
	}
	s := open(t, h)
	ctx := t.Context()
	start, _ := s.Revision(ctx)
	var last uint64
	for i := range h.HistorySize + 5 {
		last = mustCreate(t, s, svc("a", fmt.Sprint("c", i)), "x")
	}
	_, err := s.Watch(ctx, "", start)
	wantKind(t, err, v1.ErrConflict, "compacted")

	from := last - uint64(h.HistorySize)/2
	ch, err := s.Watch(ctx, "", from)
	if err != nil {
		t.Fatalf("Watch within history: %v", err)
	}
	for want := from + 1; want <= last; want++ {
		if ev := next(t, ch); ev.Record.Revision != want {
			t.Fatalf("replay got @%d, want @%d", ev.Record.Revision, want)
		}
	}
}

func testSlowWatcher(t *testing.T, h Harness) {
	lag := h.WatchLag
	if lag == 0 {
		lag = 2000
	}
	s := open(t, h)
	ctx := t.Context()
	start, _ := s.Revision(ctx)
	slow, err := s.Watch(ctx, "", start)
	if err != nil {
		t.Fatal(err)
	}
	key := svc("a", "hot")
	mustCreate(t, s, key, "0")
	for i := range lag + 10 {
		// A bounded context: a writer blocked on the slow watcher fails here.
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, err := s.Update(wctx, key, []byte(fmt.Sprint(i)), 0)
		cancel()
		if err != nil {
			t.Fatalf("write %d with a stalled watcher: %v", i, err)
		}
	}
	evs := closes(t, slow)
	if len(evs) == 0 || len(evs) > lag+10 {
		t.Fatalf("slow watcher got %d events before closing", len(evs))
	}
	for i, ev := range evs {
		if ev.Record.Revision != start+uint64(i)+1 {
			t.Fatalf("slow watcher event %d @%d, want @%d: what it got must still be gapless", i, ev.Record.Revision, start+uint64(i)+1)
		}
	}
	// Dropping one watcher leaves the store watchable.
	rev, _ := s.Revision(ctx)
	ch, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatal(err)
	}
	rev = mustUpdate(t, s, key, "after")
	if ev := next(t, ch); ev.Record.Revision != rev {
		t.Fatalf("new watch after a drop got @%d, want @%d", ev.Record.Revision, rev)
	}
}

func testWatchCancel(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	closes(t, ch)

	if _, err := s.Watch(ctx, "", 0); err == nil {
		t.Fatal("Watch with an ended context succeeded")
	}
}

func testCloseEndsWatches(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := t.Context()
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closes(t, ch)
	_, err = s.Get(ctx, svc("a", "x"))
	wantKind(t, err, v1.ErrUnavailable)
	_, err = s.Create(ctx, svc("a", "x"), nil)
	wantKind(t, err, v1.ErrUnavailable)
	_, err = s.Watch(ctx, "", 0)
	wantKind(t, err, v1.ErrUnavailable)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// testConcurrentCAS increments one counter from many goroutines with
// read-modify-CAS loops: the final count is exact only if CAS is atomic, and
// a watcher sees every count in order only if concurrent commits reach it in
// revision order.
func testConcurrentCAS(t *testing.T, h Harness) {
	const workers, increments = 8, 25
	s := open(t, h)
	ctx := t.Context()
	key := svc("a", "counter")
	start := mustCreate(t, s, key, "0")
	ch, err := s.Watch(ctx, "", start)
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() {
		for i := 1; i <= workers*increments; i++ {
			select {
			case ev, ok := <-ch:
				if !ok {
					watched <- fmt.Errorf("watch closed after %d events", i-1)
					return
				}
				if ev.Record.Revision != start+uint64(i) || string(ev.Record.Value) != strconv.Itoa(i) {
					watched <- fmt.Errorf("event %d: %q @%d, want %d @%d", i, ev.Record.Value, ev.Record.Revision, i, start+uint64(i))
					return
				}
			case <-time.After(wait):
				watched <- fmt.Errorf("no event %d in %s", i, wait)
				return
			}
		}
		watched <- nil
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for range workers {
		wg.Go(func() {
			for range increments {
				for {
					rec, err := s.Get(ctx, key)
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(rec.Value))
					_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), rec.Revision)
					if err == nil {
						break
					}
					if !v1.IsConflict(err) {
						t.Error(err)
						return
					}
					mu.Lock()
					conflicts++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	rec, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Value, []byte(strconv.Itoa(workers*increments))) {
		t.Fatalf("counter = %s, want %d", rec.Value, workers*increments)
	}
	if err := <-watched; err != nil {
		t.Fatalf("watching the counter: %v", err)
	}
	t.Logf("%d increments, %d CAS conflicts retried", workers*increments, conflicts)
}

// A transaction applies every op or none; each op is its own event.
func testTxn(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := t.Context()
	a, b, c := svc("tx", "a"), svc("tx", "b"), svc("tx", "c")
	revA := mustCreate(t, s, a, `"a1"`)
	mustCreate(t, s, c, `"c1"`)
	events, err := s.Watch(ctx, v1.KindService, revA+1)
	if err != nil {
		t.Fatal(err)
	}

	// One failing op (a stale expected revision) leaves everything as it was.
	_, err = s.Txn(ctx, []store.Op{
		{Type: store.OpCreate, Key: b, Value: []byte(`"b1"`)},
		{Type: store.OpUpdate, Key: a, Value: []byte(`"a2"`), ExpectRev: revA + 100},
	})
	wantKind(t, err, v1.ErrConflict)
	if _, err := s.Get(ctx, b); !v1.IsNotFound(err) {
		t.Fatalf("a failed transaction created %s: %v", b, err)
	}
	if rec, _ := s.Get(ctx, a); string(rec.Value) != `"a1"` {
		t.Fatalf("a failed transaction changed %s to %s", a, rec.Value)
	}

	revs, err := s.Txn(ctx, []store.Op{
		{Type: store.OpCreate, Key: b, Value: []byte(`"b1"`)},
		{Type: store.OpUpdate, Key: a, Value: []byte(`"a2"`), ExpectRev: revA},
		{Type: store.OpDelete, Key: c},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 3 || revs[1] != revs[0]+1 || revs[2] != revs[1]+1 {
		t.Fatalf("revisions %v, want three consecutive", revs)
	}
	for i, want := range []struct {
		typ store.EventType
		key store.Key
	}{{store.EventPut, b}, {store.EventPut, a}, {store.EventDelete, c}} {
		ev := next(t, events)
		if ev.Type != want.typ || ev.Record.Key != want.key || ev.Record.Revision != revs[i] {
			t.Fatalf("event %d: %s %s at %d, want %s %s at %d", i, ev.Type, ev.Record.Key, ev.Record.Revision, want.typ, want.key, revs[i])
		}
	}
	if rec, _ := s.Get(ctx, a); string(rec.Value) != `"a2"` || rec.Revision != revs[1] {
		t.Fatalf("%s after the transaction: %s at %d", a, rec.Value, rec.Revision)
	}
	if _, err := s.Get(ctx, c); !v1.IsNotFound(err) {
		t.Fatalf("%s not deleted: %v", c, err)
	}
	_, err = s.Txn(ctx, []store.Op{{Type: store.OpDelete, Key: c}})
	wantKind(t, err, v1.ErrNotFound)
}
