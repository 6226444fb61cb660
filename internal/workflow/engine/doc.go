// Package engine runs workflow executions durably. It owns each
// execution's record and its append-only journal in the store: the history
// events users read, and the answers the interpreter (package asl) got from
// the outside world (task results, timers, clock readings, random numbers).
// An answer is durable before the interpreter proceeds past it, so after a
// crash the engine re-runs the interpreter from the start against the
// journal: recorded answers return at once, and only the work in flight at
// the crash is done again, with the same idempotency key. A task that
// waits for its task token (the callback pattern, callback.go) is
// journaled the same way: the token, the call, and the callback that ends
// it, which comes in as a record of its own and survives a restart.
//
// The engine does not interpret the States Language (asl does) and does
// not reach workloads itself: function and service calls go through the
// Invoker and ServiceCaller the composition root gives it, that is,
// through the gateway, which wakes functions from zero. An http(s) task is
// sent with the Egress client of the execution's environment, never with a
// client of its own: it must reach only what that environment's containers
// may.
package engine
