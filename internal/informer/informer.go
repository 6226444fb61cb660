// Package informer keeps a local, always-current cache of every stored
// object of one kind, fed by one list-watch loop, in the manner of
// client-go's shared informer: list, watch from the listed revision, list
// again when the watch ends, and re-list every resync period so that a
// lost event costs a delay, never convergence.
//
// Every part that follows a kind (the controllers, the local agent, the
// routes) reads the same informer instead of listing and decoding the store
// on each change. Handlers are told which key changed; they enqueue work and
// return: they run on the informer's goroutine.
//
// It does not write: the store stays the only source of truth, and the
// cache only ever lags it.
package informer

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Handler is told that the object at key changed: old is what the cache
// held before (nil for a new object), cur what it holds now (nil after a
// delete). On a resync, every object is passed with old == cur.
type Handler[PT any] func(key store.Key, old, cur PT)

// IndexFunc gives the index values of an object (for example its owner).
type IndexFunc[PT any] func(PT) []string

// Informer caches the objects of one kind. T is the object type
// (v1.Service); PT its pointer.
type Informer[T any, PT interface {
	*T
	v1.Object
}] struct {
	st     store.Store
	kind   string
	resync time.Duration
	log    *slog.Logger

	mu       sync.RWMutex
	items    map[store.Key]item[PT]
	indexers map[string]IndexFunc[PT]
	indexes  map[string]map[string]map[store.Key]struct{}
	handlers []Handler[PT]
	rev      uint64
	// advanced is closed (and replaced) whenever rev moves on.
	advanced chan struct{}

	synced     chan struct{}
	syncedOnce sync.Once
}

type item[PT any] struct {
	obj PT
	raw []byte
}

// Config configures an informer.
type Config struct {
	Store store.Store
	Kind  string
	// Resync is how often everything is listed again and handed to the
	// handlers (default 30s); negative disables it.
	Resync time.Duration
	Logger *slog.Logger
}

// New builds an informer for cfg.Kind; Run fills and follows it.
func New[T any, PT interface {
	*T
	v1.Object
}](cfg Config) *Informer[T, PT] {
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Informer[T, PT]{
		st: cfg.Store, kind: cfg.Kind, resync: cfg.Resync, log: cfg.Logger,
		items:    map[store.Key]item[PT]{},
		indexers: map[string]IndexFunc[PT]{},
		indexes:  map[string]map[string]map[store.Key]struct{}{},
		synced:   make(chan struct{}),
		advanced: make(chan struct{}),
	}
}

// WaitForRevision blocks until the cache reflects every write of its kind
// up to store revision rev, or ctx ends: a writer that reads its own
// writes back from the cache (a controller that just created an object
// must not create it again on its next sync) waits here first.
func (i *Informer[T, PT]) WaitForRevision(ctx context.Context, rev uint64) error {
	for {
		i.mu.RLock()
		cur, ch := i.rev, i.advanced
		i.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setRev records the revision the cache reflects; the caller holds mu.
func (i *Informer[T, PT]) setRev(rev uint64) {
	if rev > i.rev {
		i.rev = rev
		close(i.advanced)
		i.advanced = make(chan struct{})
	}
}

// Kind is the kind this informer follows.
func (i *Informer[T, PT]) Kind() string { return i.kind }

// AddHandler registers h. Handlers added before Run see every object as
// an add on the first list; later ones only see later changes (call
// Keys to catch up).
func (i *Informer[T, PT]) AddHandler(h Handler[PT]) {
	i.mu.Lock()
	i.handlers = append(i.handlers, h)
	i.mu.Unlock()
}

// AddIndex registers an index; call it before Run.
func (i *Informer[T, PT]) AddIndex(name string, f IndexFunc[PT]) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.indexers[name] = f
	idx := map[string]map[store.Key]struct{}{}
	for k, it := range i.items {
		for _, v := range f(it.obj) {
			addTo(idx, v, k)
		}
	}
	i.indexes[name] = idx
}

// Synced is closed once the first list is in the cache.
func (i *Informer[T, PT]) Synced() <-chan struct{} { return i.synced }

// WaitForSync blocks until the first list is in the cache or ctx ends.
func (i *Informer[T, PT]) WaitForSync(ctx context.Context) error {
	select {
	case <-i.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Peek returns the cached object at key, shared: callers must not modify
// it (use Get for a copy of their own).
func (i *Informer[T, PT]) Peek(key store.Key) (PT, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	it, ok := i.items[key]
	return it.obj, ok
}

// Get returns a copy of the cached object at key that the caller owns;
// NotFound when the cache does not hold it.
func (i *Informer[T, PT]) Get(key store.Key) (PT, error) {
	i.mu.RLock()
	it, ok := i.items[key]
	i.mu.RUnlock()
	if !ok {
		return nil, v1.NotFound("%s %q not found", i.kind, key.Name)
	}
	obj := PT(new(T))
	if err := json.Unmarshal(it.raw, obj); err != nil {
		return nil, err
	}
	obj.GetMetadata().ResourceVersion = it.obj.GetMetadata().ResourceVersion
	return obj, nil
}

// List returns the cached objects of environment ("" for all), shared and
// read-only, in no particular order.
func (i *Informer[T, PT]) List(environment string) []PT {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]PT, 0, len(i.items))
	for k, it := range i.items {
		if environment == "" || k.Environment == environment {
			out = append(out, it.obj)
		}
	}
	return out
}

// ByIndex returns the cached objects whose index name holds value, shared
// and read-only.
func (i *Informer[T, PT]) ByIndex(name, value string) []PT {
	i.mu.RLock()
	defer i.mu.RUnlock()
	keys := i.indexes[name][value]
	out := make([]PT, 0, len(keys))
	for k := range keys {
		out = append(out, i.items[k].obj)
	}
	return out
}

// Keys returns every cached key.
func (i *Informer[T, PT]) Keys() []store.Key {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]store.Key, 0, len(i.items))
	for k := range i.items {
		out = append(out, k)
	}
	return out
}

// Run lists and watches until ctx ends.
func (i *Informer[T, PT]) Run(ctx context.Context) error {
	var tick <-chan time.Time
	if i.resync > 0 {
		t := time.NewTicker(i.resync)
		defer t.Stop()
		tick = t.C
	}
	wait := time.Duration(0)
	for ctx.Err() == nil {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		rev, err := i.relist(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			i.log.Warn("list failed; retrying", "kind", i.kind, "err", err)
			wait = min(max(2*wait, 100*time.Millisecond), 5*time.Second)
			continue
		}
		wait = 0
		i.syncedOnce.Do(func() { close(i.synced) })
		if err := i.watch(ctx, rev, tick); err != nil && ctx.Err() == nil {
			i.log.Debug("watch ended; listing again", "kind", i.kind, "err", err)
		}
	}
	return nil
}

// relist replaces the cache with a fresh list and tells the handlers of
// every object (changed or not: a resync is level-triggered) and of every
// object gone.
func (i *Informer[T, PT]) relist(ctx context.Context) (uint64, error) {
	recs, rev, err := i.st.List(ctx, i.kind, "")
	if err != nil {
		return 0, err
	}
	seen := make(map[store.Key]bool, len(recs))
	type change struct {
		key      store.Key
		old, cur PT
	}
	var changes []change
	i.mu.Lock()
	for _, rec := range recs {
		seen[rec.Key] = true
		old := i.items[rec.Key]
		if old.obj != nil && old.obj.GetMetadata().ResourceVersion == rec.Revision {
			changes = append(changes, change{rec.Key, old.obj, old.obj})
			continue
		}
		obj, ok := i.decode(rec)
		if !ok {
			continue
		}
		i.put(rec.Key, item[PT]{obj: obj, raw: rec.Value})
		changes = append(changes, change{rec.Key, old.obj, obj})
	}
	for k, it := range i.items {
		if !seen[k] {
			i.remove(k)
			changes = append(changes, change{k, it.obj, nil})
		}
	}
	i.setRev(rev)
	handlers := i.handlers
	i.mu.Unlock()
	for _, c := range changes {
		for _, h := range handlers {
			h(c.key, c.old, c.cur)
		}
	}
	return rev, nil
}

func (i *Informer[T, PT]) watch(ctx context.Context, rev uint64, tick <-chan time.Time) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := i.st.Watch(wctx, i.kind, rev)
	if err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			i.apply(ev)
		case <-tick:
			return nil // relist: the periodic resync
		}
	}
}

func (i *Informer[T, PT]) apply(ev store.Event) {
	key := ev.Record.Key
	i.mu.Lock()
	old := i.items[key].obj
	var cur PT
	if ev.Type == store.EventDelete {
		if old == nil {
			i.mu.Unlock()
			return
		}
		i.remove(key)
	} else {
		obj, ok := i.decode(ev.Record)
		if !ok {
			i.mu.Unlock()
			return
		}
		cur = obj
		i.put(key, item[PT]{obj: obj, raw: ev.Record.Value})
	}
	i.setRev(ev.Record.Revision)
	handlers := i.handlers
	i.mu.Unlock()
	for _, h := range handlers {
		h(key, old, cur)
	}
}

func (i *Informer[T, PT]) decode(rec store.Record) (PT, bool) {
	obj := PT(new(T))
	if err := store.Decode(rec, obj); err != nil {
		i.log.Error("undecodable record left out of the cache", "key", rec.Key.String(), "err", err)
		return nil, false
	}
	return obj, true
}

// put and remove keep the indexes in step; the caller holds mu.
func (i *Informer[T, PT]) put(k store.Key, it item[PT]) {
	if old, ok := i.items[k]; ok {
		i.unindex(k, old.obj)
	}
	i.items[k] = it
	for name, f := range i.indexers {
		for _, v := range f(it.obj) {
			addTo(i.indexes[name], v, k)
		}
	}
}

func (i *Informer[T, PT]) remove(k store.Key) {
	if old, ok := i.items[k]; ok {
		i.unindex(k, old.obj)
		delete(i.items, k)
	}
}

func (i *Informer[T, PT]) unindex(k store.Key, obj PT) {
	for name, f := range i.indexers {
		for _, v := range f(obj) {
			if set := i.indexes[name][v]; set != nil {
				delete(set, k)
				if len(set) == 0 {
					delete(i.indexes[name], v)
				}
			}
		}
	}
}

func addTo(idx map[string]map[store.Key]struct{}, v string, k store.Key) {
	set := idx[v]
	if set == nil {
		set = map[store.Key]struct{}{}
		idx[v] = set
	}
	set[k] = struct{}{}
}
