// Package atomicfile replaces small files whole and durably: a reader sees
// the old content or the new, never a mix, and once a write has returned
// nil the new content survives a crash or a power loss.
//
// It owns the temp-file-fsync-rename-fsync sequence and nothing else. It
// must not create directories (their modes are the caller's to choose) or
// lock: two writers of one path each replace the file whole, and the last
// rename wins.
package atomicfile
