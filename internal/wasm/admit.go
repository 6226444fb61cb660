package wasm

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// startSlice is how long an instance may run holding its start slot
// before the slot goes to the next one, whatever it does meanwhile.
const startSlice = 50 * time.Millisecond

// admission bounds how many instances run their first CPU at once: a Go
// module's start is milliseconds of CPU (its runtime's initialisation),
// and thousands of requests arriving together would otherwise be
// thousands of goroutines sharing the cores, every one of the server's
// own (the gateway reading requests, the API) waiting behind them for
// seconds: long enough for connections to time out before their request
// is read. With slots, instances queue for their start in order, and the
// rest of the server keeps a share of the CPU.
//
// A slot is held until the instance ends, waits (an outgoing call, or
// WASI's poll_oneoff: a Go module sleeping or with every goroutine
// blocked), or has run for startSlice: a module that computes for long
// runs on without its slot, so no module holds others back for more than
// a slice.
type admission struct {
	slots chan struct{}
	slice time.Duration
}

func newAdmission() *admission {
	return &admission{slots: make(chan struct{}, 2*runtime.GOMAXPROCS(0)), slice: startSlice}
}

// admit waits for a slot and returns its release (idempotent, and called
// by itself after a slice), or ctx's error.
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
	timer := time.AfterFunc(a.slice, free)
	return func() {
		timer.Stop()
		free()
	}, nil
}

// waitListener gives up an instance's start slot when it calls a WASI
// function that waits (poll_oneoff). It is a function listener on the
// WASI host module only: the module's own functions have none, and cost
// nothing more.
type waitListener struct{}

func (waitListener) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if def.Name() == "poll_oneoff" {
		return waitListener{}
	}
	return nil
}

func (waitListener) Before(ctx context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	if c, _ := ctx.Value(callsKey{}).(*calls); c != nil && c.release != nil {
		c.release()
	}
}

func (waitListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (waitListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
