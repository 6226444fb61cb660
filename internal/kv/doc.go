// Package kv is each environment's key-value store: get, put with
// compare-and-swap on a revision, delete, list by prefix, watch a prefix,
// and a time to live per key, over HTTP for any language (Handler).
//
// It keeps each environment's keys in a JetStream KV bucket of the
// embedded NATS server (package queue runs it, with every write synced
// before it is acknowledged): JetStream already has what a KV store needs —
// a revision per write (the stream sequence), compare-and-swap (expected
// last subject sequence), watches, per-message TTLs with delete markers —
// and it is durable and already supervised, so nothing is written by hand
// here. Keys are any bytes but control characters, up to 1,024; they are
// escaped onto JetStream's key alphabet (see encodeKey), so listing and
// watching a prefix filter decoded keys rather than subjects.
//
// It does not authenticate: the Authenticator given to the Handler does,
// and the gateway has already refused callers from other environments.
package kv
