package informer_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func service(env, name, image string) *v1.Service {
	return &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: name, Environment: env},
		Spec:     v1.ServiceSpec{Template: v1.Template{Image: image}},
	}
}

type seen struct {
	key      store.Key
	old, cur *v1.Service
}

// recorder collects handler calls and lets a test wait for one.
type recorder struct {
	mu    sync.Mutex
	calls []seen
	ch    chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) handle(k store.Key, old, cur *v1.Service) {
	r.mu.Lock()
	r.calls = append(r.calls, seen{k, old, cur})
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// waitFor returns the first call after those already taken that matches.
func (r *recorder) waitFor(t *testing.T, what string, match func(seen) bool) seen {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		for i, c := range r.calls {
			if match(c) {
				r.calls = r.calls[i+1:]
				r.mu.Unlock()
				return c
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestInformerFollowsTheStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	if err := store.Create(ctx, st, service("default", "before", "a:1")); err != nil {
		t.Fatal(err)
	}
	inf := informer.New[v1.Service](informer.Config{Store: st, Kind: v1.KindService, Resync: -1})
	inf.AddIndex("image", func(s *v1.Service) []string { return []string{s.Spec.Template.Image} })
	rec := newRecorder()
	inf.AddHandler(rec.handle)
	go inf.Run(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the listed object as an add", func(c seen) bool { return c.key.Name == "before" && c.old == nil && c.cur != nil })

	svc := service("staging", "web", "a:1")
	if err := store.Create(ctx, st, svc); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the created object", func(c seen) bool { return c.key.Name == "web" && c.old == nil })
	if got := len(inf.ByIndex("image", "a:1")); got != 2 {
		t.Fatalf("index image=a:1 holds %d objects, want 2", got)
	}
	if got := len(inf.List("staging")); got != 1 {
		t.Fatalf("List(staging) = %d objects, want 1", got)
	}

	svc.Spec.Template.Image = "a:2"
	if err := store.Update(ctx, st, svc); err != nil {
		t.Fatal(err)
	}
	c := rec.waitFor(t, "the update", func(c seen) bool { return c.key.Name == "web" && c.old != nil && c.cur != nil })
	if c.old.Spec.Template.Image != "a:1" || c.cur.Spec.Template.Image != "a:2" {
		t.Fatalf("update seen as %s → %s, want a:1 → a:2", c.old.Spec.Template.Image, c.cur.Spec.Template.Image)
	}
	if got := len(inf.ByIndex("image", "a:1")); got != 1 {
		t.Fatalf("after the update, index image=a:1 holds %d objects, want 1", got)
	}

	// Get is a copy of the caller's own, at the stored resourceVersion.
	got, err := inf.Get(store.KeyOf(svc))
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.ResourceVersion != svc.Metadata.ResourceVersion {
		t.Fatalf("Get resourceVersion %d, store has %d", got.Metadata.ResourceVersion, svc.Metadata.ResourceVersion)
	}
	got.Spec.Template.Image = "mutated"
	if p, _ := inf.Peek(store.KeyOf(svc)); p.Spec.Template.Image != "a:2" {
		t.Fatalf("mutating Get's copy changed the cache: %s", p.Spec.Template.Image)
	}

	if err := store.Delete(ctx, st, svc); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the delete", func(c seen) bool { return c.key.Name == "web" && c.cur == nil && c.old != nil })
	if _, err := inf.Get(store.KeyOf(svc)); !v1.IsNotFound(err) {
		t.Fatalf("Get after delete: %v, want NotFound", err)
	}
	if got := len(inf.ByIndex("image", "a:2")); got != 0 {
		t.Fatalf("after the delete, index image=a:2 holds %d objects", got)
	}
}

// A resync hands every object to the handlers again (level-triggered), and
// a change missed while not watching is found by the re-list.
func TestInformerResyncs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	for _, n := range []string{"a", "b"} {
		if err := store.Create(ctx, st, service("default", n, "x:1")); err != nil {
			t.Fatal(err)
		}
	}
	inf := informer.New[v1.Service](informer.Config{Store: st, Kind: v1.KindService, Resync: 50 * time.Millisecond})
	rec := newRecorder()
	inf.AddHandler(rec.handle)
	go inf.Run(ctx)
	for _, n := range []string{"a", "b"} {
		rec.waitFor(t, "first list of "+n, func(c seen) bool { return c.key.Name == n && c.old == nil })
	}
	for _, n := range []string{"a", "b"} {
		rec.waitFor(t, "resync of "+n, func(c seen) bool { return c.key.Name == n && c.old != nil && c.old == c.cur })
	}
}

// A writer that waits for its write's revision then reads it back.
func TestWaitForRevisionReadsYourWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	inf := informer.New[v1.Service](informer.Config{Store: st, Kind: v1.KindService, Resync: -1})
	go inf.Run(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		svc := service("default", fmt.Sprintf("s%d", i), "x:1")
		if err := store.Create(ctx, st, svc); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err := inf.WaitForRevision(wctx, svc.Metadata.ResourceVersion)
		wcancel()
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, ok := inf.Peek(store.KeyOf(svc)); !ok {
			t.Fatalf("write %d at revision %d is not in the cache after WaitForRevision", i, svc.Metadata.ResourceVersion)
		}
	}
}
