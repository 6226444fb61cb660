// Package containerd implements runtime.Driver on containerd and runc, and
// supervises a private containerd when Berth is not given one.
//
// The driver keeps no state of its own: every container, task, label and
// image lives in containerd (and each container's log in the file its log
// shim writes), so a Berth process that dies and comes back, or a second
// Driver on the same socket, sees and controls what an earlier one made.
// Exits seen while no Driver was listening are not replayed; callers
// reconcile with List after (re)connecting.
//
// It must not decide anything: restarts, probes and placement belong to the
// node agent. It only runs what it is told, locked down (few capabilities,
// no new privileges, seccomp, cgroup limits), and reports what is there.
package containerd
