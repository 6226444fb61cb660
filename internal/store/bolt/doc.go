// Package bolt is the embedded, single-machine implementation of
// store.Store on bbolt. It owns one database file: the records, the global
// revision counter, and the file lock that keeps a second server off the same
// data dir. Watch comes from an in-memory store.Hub fed after each commit, so
// history does not survive a restart: watchers resume by listing again.
//
// It must not interpret values: they are opaque bytes to it, and resource
// semantics belong to the API server and controllers.
package bolt
