package bolt_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

// A Service-sized value: what the API server writes on every apply.
var benchValue = make([]byte, 1024)

func benchStore(b *testing.B) *bolt.Store {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkCreate(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		key := store.Key{Kind: v1.KindService, Environment: "bench", Name: fmt.Sprint("svc-", i)}
		if _, err := s.Create(ctx, key, benchValue); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkUpdate(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	key := store.Key{Kind: v1.KindService, Environment: "bench", Name: "svc"}
	rev, err := s.Create(ctx, key, benchValue)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if rev, err = s.Update(ctx, key, benchValue, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateParallel shows that writers serialise on the one bbolt
// writer: throughput stays at about one fsync per write.
func BenchmarkUpdateParallel(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	key := store.Key{Kind: v1.KindService, Environment: "bench", Name: "svc"}
	if _, err := s.Create(ctx, key, benchValue); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Update(ctx, key, benchValue, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkWatchLatency is the time from calling Update to a watcher
// holding the event, the delay a controller adds on top of the write.
func BenchmarkWatchLatency(b *testing.B) {
	s := benchStore(b)
	ctx := b.Context()
	key := store.Key{Kind: v1.KindService, Environment: "bench", Name: "svc"}
	rev, err := s.Create(ctx, key, benchValue)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := s.Watch(ctx, v1.KindService, rev)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.Update(ctx, key, benchValue, 0); err != nil {
			b.Fatal(err)
		}
		if _, ok := <-ch; !ok {
			b.Fatal("watch closed")
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
