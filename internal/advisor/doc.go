// Package advisor answers "which is best for this workload": it replays a
// workload's recorded minute-by-minute traffic (package history) through a
// model of the other way of running it, and compares the two ways in
// instance-seconds, memory-GB-seconds, cold starts and the latency they
// add, requests that would wait or be refused, and money at a price sheet.
//
// The Function way is replayed through Berth's own autoscaler: Decide and
// Wake from package autoscaler, the functions the running one calls, with
// its stable and panic windows, idle timeout, concurrency and min/max,
// and the cold start measured for the workload's image. The Service way
// is its replicas through every recorded second. ReplayFunction,
// ReplayService and Advise are pure; Advisor reads the history and the
// caches and calls them.
//
// It decides nothing for the platform and changes nothing: advice is read
// only. Switching a workload is package convert's.
package advisor
