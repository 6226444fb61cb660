package store

import (
	"context"
	"sync"

	v1 "berth.dev/berth/api/v1"
)

// Hub fans committed events out to watchers and keeps the most recent ones
// so a watcher can resume from a revision it already saw. A Store that has
// no watch of its own (bbolt) publishes into a Hub after each commit.
//
// Every send and every close of a watcher's channel happens under one mutex,
// and a watcher is registered in the same critical section that copies its
// replay, so no event is lost or repeated between replay and stream. Sends
// never block: a watcher whose buffer is full is dropped, which its consumer
// sees as a closed channel and answers by listing again. Watchers share each
// event's Value: they must not modify it.
type Hub struct {
	buffer int

	mu         sync.Mutex
	ring       []Event // ring[(start+i)%len(ring)] for i < count, oldest first
	start      int
	count      int
	compactRev uint64 // every event after compactRev is in ring
	rev        uint64 // revision of the last published event
	closed     bool
	watchers   map[*watcher]struct{}
}

type watcher struct {
	kind     string
	afterRev uint64
	ch       chan Event
	stop     func() bool // unregisters the ctx callback
}

// NewHub returns a hub whose history holds up to historySize events and
// whose watchers may lag up to buffer events behind. rev is the store
// revision at start: history begins empty, so a watch from before rev is
// compacted.
func NewHub(historySize, buffer int, rev uint64) *Hub {
	if historySize < 1 {
		historySize = 1
	}
	if buffer < 1 {
		buffer = 1
	}
	return &Hub{
		buffer:     buffer,
		ring:       make([]Event, historySize),
		compactRev: rev,
		rev:        rev,
		watchers:   make(map[*watcher]struct{}),
	}
}

// Publish records ev and hands it to every matching watcher. Callers
// publish in revision order, one event per revision, after the write that
// made it is durable.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || ev.Record.Revision <= h.rev {
		return
	}
	h.rev = ev.Record.Revision
	if h.count == len(h.ring) {
		h.compactRev = h.ring[h.start].Record.Revision
		h.ring[h.start] = ev
		h.start = (h.start + 1) % len(h.ring)
	} else {
		h.ring[(h.start+h.count)%len(h.ring)] = ev
		h.count++
	}
	for w := range h.watchers {
		if !w.matches(ev) {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			h.drop(w)
		}
	}
}

// Watch implements Store.Watch over the hub's history and future events.
func (h *Hub) Watch(ctx context.Context, kind string, afterRev uint64) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, v1.Unavailable("store is closed")
	}
	if afterRev < h.compactRev {
		return nil, v1.Conflict("watch from revision %d: compacted (history starts after revision %d, current revision %d); list again and watch from the listed revision",
			afterRev, h.compactRev, h.rev)
	}
	w := &watcher{kind: kind, afterRev: afterRev}
	var replay []Event
	for i := 0; i < h.count; i++ {
		ev := h.ring[(h.start+i)%len(h.ring)]
		if w.matches(ev) {
			replay = append(replay, ev)
		}
	}
	// The replay must fit whole, or a watcher asking for exactly what the
	// history holds would be dropped before it starts.
	w.ch = make(chan Event, len(replay)+h.buffer)
	for _, ev := range replay {
		w.ch <- ev
	}
	h.watchers[w] = struct{}{}
	// AfterFunc rather than a goroutine per watch, so a watch on a context
	// that never ends costs nothing once the hub has dropped it.
	w.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.drop(w)
	})
	return w.ch, nil
}

// Rev is the revision of the last published event (or the start revision).
func (h *Hub) Rev() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Close ends every watch and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for w := range h.watchers {
		h.drop(w)
	}
}

// drop closes w's channel once; h.mu is held.
func (h *Hub) drop(w *watcher) {
	if _, ok := h.watchers[w]; ok {
		delete(h.watchers, w)
		close(w.ch)
		if w.stop != nil {
			w.stop()
		}
	}
}

func (w *watcher) matches(ev Event) bool {
	return ev.Record.Revision > w.afterRev && (w.kind == "" || w.kind == ev.Record.Key.Kind)
}
