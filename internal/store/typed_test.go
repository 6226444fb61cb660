package store_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newService(env, name string) *v1.Service {
	return &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: name, Environment: env, Labels: map[string]string{"app": name}},
	}
}

func TestKeyOf(t *testing.T) {
	env := &v1.Environment{TypeMeta: v1.TypeMeta{Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: "dev", Environment: "default"}}
	if k := store.KeyOf(env); k != (store.Key{Kind: v1.KindEnvironment, Name: "dev"}) {
		t.Errorf("KeyOf(Environment) = %+v: environments are cluster-scoped", k)
	}
	if k := store.KeyOf(newService("dev", "web")); k.String() != "Service/dev/web" {
		t.Errorf("KeyOf(Service) = %s", k)
	}
}

func TestTypedLifecycle(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()

	web := newService("default", "web")
	web.Metadata.UID = "client-chosen"
	if err := store.Create(ctx, s, web); err != nil {
		t.Fatal(err)
	}
	md := web.Metadata
	if md.UID == "" || md.UID == "client-chosen" || len(md.UID) != 36 {
		t.Errorf("UID %q: want a fresh UUID", md.UID)
	}
	if md.CreationTimestamp.IsZero() || md.Generation != 1 || md.ResourceVersion == 0 {
		t.Errorf("Create left metadata %+v", md)
	}

	// The stored JSON does not carry resourceVersion: the record's revision is it.
	rec, err := s.Get(ctx, store.KeyOf(web))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rec.Value), "resourceVersion") {
		t.Errorf("stored JSON has resourceVersion: %s", rec.Value)
	}

	var got v1.Service
	if err := store.Get(ctx, s, store.KeyOf(web), &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.UID != md.UID || got.Metadata.ResourceVersion != rec.Revision || got.Metadata.Labels["app"] != "web" ||
		!got.Metadata.CreationTimestamp.Equal(md.CreationTimestamp) {
		t.Errorf("Get = %+v, want %+v", got.Metadata, md)
	}

	// Update is a CAS on resourceVersion.
	stale := got
	got.Spec.Replicas = ptr[int32](3)
	if err := store.Update(ctx, s, &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.ResourceVersion <= stale.Metadata.ResourceVersion {
		t.Errorf("Update did not advance resourceVersion: %d", got.Metadata.ResourceVersion)
	}
	stale.Spec.Replicas = ptr[int32](9)
	if err := store.Update(ctx, s, &stale); !v1.IsConflict(err) {
		t.Fatalf("Update with a stale resourceVersion: %v, want Conflict", err)
	}
	stale.Metadata.ResourceVersion = 0
	if err := store.Update(ctx, s, &stale); err != nil {
		t.Fatalf("unconditional Update: %v", err)
	}

	// Decode zeroes its target, so a reused object keeps nothing stale.
	reused := got
	reused.Metadata.Labels = map[string]string{"stale": "yes"}
	rec, _ = s.Get(ctx, store.KeyOf(web))
	if err := store.Decode(rec, &reused); err != nil {
		t.Fatal(err)
	}
	if _, ok := reused.Metadata.Labels["stale"]; ok || *reused.Spec.Replicas != 9 {
		t.Errorf("Decode into a used object: %+v", reused)
	}

	if err := store.Delete(ctx, s, &got); !v1.IsConflict(err) {
		t.Fatalf("Delete at a stale resourceVersion: %v", err)
	}
	if err := store.Delete(ctx, s, &reused); err != nil {
		t.Fatal(err)
	}
	if err := store.Get(ctx, s, store.KeyOf(web), &got); !v1.IsNotFound(err) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func TestTypedCreateFailureLeavesObject(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	if err := store.Create(ctx, s, newService("default", "web")); err != nil {
		t.Fatal(err)
	}
	dup := newService("default", "web")
	if err := store.Create(ctx, s, dup); !v1.IsConflict(err) {
		t.Fatalf("second Create: %v", err)
	}
	if dup.Metadata.UID != "" || dup.Metadata.Generation != 0 || dup.Metadata.ResourceVersion != 0 {
		t.Errorf("failed Create changed the object: %+v", dup.Metadata)
	}
}

func TestTypedList(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	for _, o := range []*v1.Service{newService("b", "web"), newService("a", "web"), newService("a", "api")} {
		if err := store.Create(ctx, s, o); err != nil {
			t.Fatal(err)
		}
	}
	all, rev, err := store.List[v1.Service](ctx, s, v1.KindService, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range all {
		names = append(names, o.Metadata.Environment+"/"+o.Metadata.Name)
		if o.Metadata.ResourceVersion == 0 || o.Metadata.ResourceVersion > rev {
			t.Errorf("%s: resourceVersion %d, list revision %d", o.Metadata.Name, o.Metadata.ResourceVersion, rev)
		}
	}
	if got := strings.Join(names, " "); got != "a/api a/web b/web" {
		t.Errorf("List = %s", got)
	}
	inA, _, _ := store.List[v1.Service](ctx, s, v1.KindService, "a")
	if len(inA) != 2 {
		t.Errorf("List in a: %d services", len(inA))
	}
}

// A watch consumer decodes events with Decode and sees the event's revision.
func TestTypedDecodeWatchEvent(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	rev, _ := s.Revision(ctx)
	ch, err := s.Watch(ctx, v1.KindService, rev)
	if err != nil {
		t.Fatal(err)
	}
	web := newService("default", "web")
	if err := store.Create(ctx, s, web); err != nil {
		t.Fatal(err)
	}
	var ev store.Event
	select {
	case ev = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event for the Create")
	}
	var got v1.Service
	if err := store.Decode(ev.Record, &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.ResourceVersion != web.Metadata.ResourceVersion || got.Metadata.UID != web.Metadata.UID {
		t.Errorf("decoded event %+v, created %+v", got.Metadata, web.Metadata)
	}
	if err := store.Decode(store.Record{Value: []byte("{")}, &got); err == nil {
		t.Error("Decode of broken JSON succeeded")
	}
}

func ptr[T any](v T) *T { return &v }
