// Package autoscaler turns each Function's requests in flight, as counted
// by the gateway, into a desired instance count. It owns the samples and
// the decision; it does not start or stop instances, read the store or
// route requests: the function controller registers functions with Set and
// acts on OnChange, the gateway is its Source, and the activator calls
// Demand when a request waits at zero. Decide is pure; Autoscaler is the
// loop that feeds it.
//
// The model, Knative's KPA, in the terms `berth describe function` shows.
// Every 200 ms the gateway's in-flight count for the function is sampled.
// One instance should carry concurrency × targetUtilization requests (1 ×
// 0.7 by default), so desired = ceil(average in flight / that); 10 in
// flight at concurrency 1 and 0.7 want 15, 25 at concurrency 10 and 1.0
// want 3. Normally the average is over the stable window (60 s), so the
// count follows sustained load and decays gradually after it. The panic
// window (6 s) catches bursts: when its average wants at least twice the
// ready instances (a burst at zero counts against one), the function
// panics, follows the panic window up at once, and never scales down
// until a stable window has passed without that condition. The count
// stays between min and max (default 0 and 10), never above max. It drops
// to zero only when min is 0 and, for idleTimeout (default 60 s), no
// request was in flight at any sample and the request counter did not
// move; until then at least one instance is kept. A request arriving at
// zero makes the count at least 1 at once, without waiting for a sample.
// After a server restart the autoscaler knows no history: instances
// already running are kept for one stable window and count as active.
package autoscaler
