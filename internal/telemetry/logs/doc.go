// Package logs reads the per-instance log files that the log shim writes
// (DATA/logs/ENV/OWNER/INSTANCE.log and its rotated INSTANCE.log.N, CRI
// format) and answers queries over them: the instances of one owner merged
// in time order, partial records joined, since and tail applied, and follow
// that keeps up with appended lines, new instances and rotation.
//
// It only reads: it must not write, rotate or delete log files (the shim owns
// them), and it must not depend on the shim's package, so that the file
// format, not Go code, is the contract between the two.
package logs
