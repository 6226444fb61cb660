// Package logs reads the per-instance log files that the log shim writes
// (DATA/logs/ENV/OWNER/INSTANCE.log and its rotated INSTANCE.log.N, CRI
// format) and answers queries over them: the instances of one owner merged
// in time order, partial records joined, since and tail applied, and follow
// that keeps up with appended lines, new instances and rotation.
//
// It must not write to or rotate a log file (the shim owns them) and must
// not depend on the shim's package, so that the file format, not Go code, is
// the contract between the two. Two exceptions, both beside the shim's
// files: the INSTANCE.meta sidecar that records an instance's revision (so
// --revision finds instances that are gone), and the Janitor, which
// enforces retention by deleting whole files of instances that are gone,
// never a live instance's.
package logs
