package wasm

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// startSlice is how long an instance may run holding its start slot
// before the slot goes to the next one, whatever it does meanwhile.
const startSlice = 10 * time.Millisecond

// admission bounds how many instances run their first CPU at once: a Go
// module's start is milliseconds of CPU (its runtime's initialisation),
// and thousands of requests arriving together would otherwise be
// thousands of goroutines sharing the cores, every one of the server's
// own (the gateway reading requests, the API) waiting behind them for
// seconds: long enough for connections to time out before their request
// is read. With slots, instances queue for their start in order, and the
// rest of the server keeps a share of the CPU.
//
// A slot is held until the instance ends, makes an outgoing call (it then
// waits, not computes), or has run for startSlice: a module that computes
// for long runs on without its slot, as before, so no module holds others
// back for more than a slice.
type admission struct {
	slots chan struct{}
}

func newAdmission() *admission {
	return &admission{slots: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
}

// admit waits for a slot and returns its release (idempotent, and called
// by itself after startSlice), or ctx's error.
func (a *admission) admit(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
	default:
		select {
		case a.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	free := func() { once.Do(func() { <-a.slots }) }
	timer := time.AfterFunc(startSlice, free)
	return func() {
		timer.Stop()
		free()
	}, nil
}
