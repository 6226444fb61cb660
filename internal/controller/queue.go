package controller

import (
	"context"
	"sync"
	"time"

	"berth.dev/berth/internal/backoff"
)

// queue is a keyed work queue in the manner of client-go's workqueue: a key
// added while queued is not added twice, a key being processed is not
// handed to a second worker, and a key added while processed is processed
// again afterwards. Failed keys come back after an exponential backoff.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	queued     map[string]bool
	processing map[string]bool
	dirty      map[string]bool // added while processing
	failures   map[string]int
	closed     bool
}

func newQueue() *queue {
	q := &queue{
		queued:     map[string]bool{},
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		failures:   map[string]int{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.order = append(q.order, key)
	q.cond.Signal()
}

// AddAfter queues key after d.
func (q *queue) AddAfter(key string, d time.Duration) {
	time.AfterFunc(d, func() { q.Add(key) })
}

// retryBackoff spaces a failing key's retries: 50ms … ~25s.
var retryBackoff = backoff.Backoff{Base: 50 * time.Millisecond, Max: 50 * time.Millisecond << 9}

// Retry queues key after a backoff that doubles with each failure.
func (q *queue) Retry(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	q.AddAfter(key, retryBackoff.Delay(n))
}

// Forget clears key's failure count after a successful sync.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	delete(q.failures, key)
	q.mu.Unlock()
}

// Get blocks for the next key; ok is false once the queue is closed.
func (q *queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key, q.order = q.order[0], q.order[1:]
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// Done marks key processed, queueing it again if it was added meanwhile.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		if !q.queued[key] && !q.closed {
			q.queued[key] = true
			q.order = append(q.order, key)
			q.cond.Signal()
		}
	}
}

// Close wakes every waiting Get.
func (q *queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// runWorkers processes keys with sync until ctx ends.
func runWorkers(ctx context.Context, q *queue, n int, syncKey func(context.Context, string) error, onErr func(string, error)) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, ok := q.Get()
				if !ok {
					return
				}
				err := syncKey(ctx, key)
				q.Done(key)
				switch {
				case err == nil:
					q.Forget(key)
				case ctx.Err() != nil:
				default:
					onErr(key, err)
					q.Retry(key)
				}
			}
		}()
	}
	<-ctx.Done()
	q.Close()
	wg.Wait()
}
