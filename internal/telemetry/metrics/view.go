package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// StoreView keeps the store's services, functions and instances in
// memory, following the store's watch, so that a scrape reads memory
// instead of listing and decoding every object. Its Inventory is what
// Config.Inventory wants; a controller cache holding the same objects
// can replace it.
type StoreView struct {
	st  store.Store
	log *slog.Logger

	mu     sync.Mutex
	byKey  map[store.Key]viewEntry
	synced chan struct{}
	once   sync.Once
}

// viewEntry is an object and the revision that last wrote it (or deleted
// it: obj nil), so that an event older than what a list returned is not
// applied over it.
type viewEntry struct {
	rev uint64
	obj v1.Object
}

// NewStoreView builds an empty view; Run fills it and keeps it current.
func NewStoreView(st store.Store, logger *slog.Logger) *StoreView {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &StoreView{st: st, log: logger, byKey: map[store.Key]viewEntry{}, synced: make(chan struct{})}
}

// Synced is closed once the view holds a first complete listing.
func (v *StoreView) Synced() <-chan struct{} { return v.synced }

// Inventory returns what the view holds now.
func (v *StoreView) Inventory() Inventory {
	v.mu.Lock()
	defer v.mu.Unlock()
	var inv Inventory
	for _, e := range v.byKey {
		switch o := e.obj.(type) {
		case *v1.Service:
			inv.Services = append(inv.Services, o)
		case *v1.Function:
			inv.Functions = append(inv.Functions, o)
		case *v1.Instance:
			inv.Instances = append(inv.Instances, o)
		}
	}
	return inv
}

var viewKinds = []string{v1.KindService, v1.KindFunction, v1.KindInstance}

// Run lists, then applies every change the watch streams, until ctx ends.
// When the watch closes (the view fell behind, or history was compacted)
// it lists again: a lost event costs a re-list, never a wrong count for
// long.
func (v *StoreView) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		from, to, err := v.list(ctx)
		if err == nil {
			v.once.Do(func() { close(v.synced) })
			err = v.follow(ctx, from, to)
		}
		if err != nil && ctx.Err() == nil {
			v.log.Warn("metrics view: store read failed; listing again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// list replaces the view's content with a listing of each kind. It
// returns the oldest and the newest revision the listings reflect: the
// watch from the oldest misses nothing, and until it passes the newest the
// revisions kept per key discard what a listing already had.
func (v *StoreView) list(ctx context.Context) (from, to uint64, err error) {
	byKey := map[store.Key]viewEntry{}
	for i, kind := range viewKinds {
		recs, rev, err := v.st.List(ctx, kind, "")
		if err != nil {
			return 0, 0, err
		}
		if i == 0 || rev < from {
			from = rev
		}
		to = max(to, rev)
		for _, r := range recs {
			if obj := decode(r); obj != nil {
				byKey[r.Key] = viewEntry{rev: r.Revision, obj: obj}
			}
		}
	}
	v.mu.Lock()
	v.byKey = byKey
	v.mu.Unlock()
	return from, to, nil
}

// follow applies the watch's events from revision from. Up to revision to
// (the newest listing) an event may be older than what the view holds, and
// a delete leaves a tombstone so that an older write replayed after it is
// not applied; past to, events are newer than everything held, so deletes
// delete and the tombstones go.
func (v *StoreView) follow(ctx context.Context, from, to uint64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := v.st.Watch(wctx, "", from)
	if err != nil {
		return err
	}
	caughtUp := false
	for ev := range events {
		r := ev.Record
		if !isViewKind(r.Key.Kind) {
			continue
		}
		var obj v1.Object
		if ev.Type == store.EventPut {
			if obj = decode(r); obj == nil {
				continue
			}
		}
		v.mu.Lock()
		if !caughtUp && r.Revision > to {
			caughtUp = true
			for k, e := range v.byKey {
				if e.obj == nil {
					delete(v.byKey, k)
				}
			}
		}
		switch old, ok := v.byKey[r.Key]; {
		case ok && old.rev >= r.Revision:
		case obj == nil && caughtUp:
			delete(v.byKey, r.Key)
		default:
			v.byKey[r.Key] = viewEntry{rev: r.Revision, obj: obj}
		}
		v.mu.Unlock()
	}
	return nil
}

func isViewKind(kind string) bool {
	return kind == v1.KindService || kind == v1.KindFunction || kind == v1.KindInstance
}

// decode returns the object of r, or nil for a kind the view does not keep
// or a value that does not decode (counted nowhere rather than failing the
// whole view).
func decode(r store.Record) v1.Object {
	var obj v1.Object
	switch r.Key.Kind {
	case v1.KindService:
		obj = &v1.Service{}
	case v1.KindFunction:
		obj = &v1.Function{}
	case v1.KindInstance:
		obj = &v1.Instance{}
	default:
		return nil
	}
	if err := store.Decode(r, obj); err != nil {
		return nil
	}
	return obj
}
