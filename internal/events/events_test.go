package events

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

func TestPruneEventsKeepsRecentWithinCap(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	add := func(name string, age time.Duration) {
		ev := &v1.Event{TypeMeta: v1.TypeMeta{Kind: v1.KindEvent}, Metadata: v1.ObjectMeta{Name: name, Environment: "default"}, Time: now.Add(-age)}
		if err := store.Create(ctx, s, ev); err != nil {
			t.Fatal(err)
		}
	}
	add("old", 2*EventTTL)
	for i := range MaxEventsPerEnvironment + 5 {
		add(fmt.Sprintf("ev%04d", i), time.Duration(MaxEventsPerEnvironment+5-i)*time.Millisecond)
	}
	if err := Prune(ctx, s, now); err != nil {
		t.Fatal(err)
	}
	left, _, _ := store.List[v1.Event](ctx, s, v1.KindEvent, "default")
	if len(left) != MaxEventsPerEnvironment {
		t.Fatalf("%d events left, want %d", len(left), MaxEventsPerEnvironment)
	}
	for _, e := range left {
		if e.Metadata.Name == "old" || e.Metadata.Name == "ev0000" {
			t.Fatalf("%s should have been pruned", e.Metadata.Name)
		}
	}
}
