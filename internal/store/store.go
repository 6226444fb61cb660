// Package store owns Berth's durable desired and observed state: versioned
// records with compare-and-swap updates and a watch stream, in the manner of
// etcd's key-value API. The embedded implementation is bbolt; an etcd one can
// sit behind the same interface later.
//
// The store knows nothing about resource semantics: validation, defaults and
// generations belong to the API server and controllers.
package store

import (
	"context"
)

// Key addresses one record. Environment is empty for cluster-scoped kinds
// (Environment itself).
type Key struct {
	Kind        string
	Environment string
	Name        string
}

func (k Key) String() string {
	if k.Environment == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Environment + "/" + k.Name
}

// Record is one stored value and the store revision that last wrote it.
type Record struct {
	Key      Key
	Value    []byte
	Revision uint64
}

// EventType says what happened to a record.
type EventType string

const (
	EventPut    EventType = "PUT"
	EventDelete EventType = "DELETE"
)

// Event is one change. For a delete, Record.Value holds the last value and
// Record.Revision the revision of the delete.
type Event struct {
	Type   EventType
	Record Record
}

// OpType is what one op of a transaction does.
type OpType string

const (
	OpCreate OpType = "create" // Conflict if the key exists
	OpUpdate OpType = "update" // NotFound if missing; Conflict if not at ExpectRev (0: any)
	OpDelete OpType = "delete" // NotFound if missing; Conflict if not at ExpectRev (0: any)
)

// Op is one write of a transaction.
type Op struct {
	Type      OpType
	Key       Key
	Value     []byte
	ExpectRev uint64
}

// Store is durable, versioned key-value state. Every write bumps one global
// revision counter and stamps the written record with it.
//
// Errors are *v1.Error with kind NotFound (missing key), Conflict (create of
// an existing key, or expectRev mismatch) or Unavailable (closed store).
type Store interface {
	// Get returns the record at key.
	Get(ctx context.Context, key Key) (Record, error)
	// List returns the records of kind, in key order, restricted to
	// environment unless it is "", and the store revision they reflect.
	List(ctx context.Context, kind, environment string) ([]Record, uint64, error)
	// Create writes a new record; Conflict if the key exists.
	Create(ctx context.Context, key Key, value []byte) (uint64, error)
	// Update replaces the record if its revision is expectRev (0: any).
	// NotFound if the key is missing.
	Update(ctx context.Context, key Key, value []byte, expectRev uint64) (uint64, error)
	// Delete removes the record if its revision is expectRev (0: any).
	Delete(ctx context.Context, key Key, expectRev uint64) error
	// Watch streams every change of kind ("" for all kinds) with a revision
	// greater than afterRev, in revision order, until ctx ends. If afterRev
	// is older than the retained history, Watch fails with kind Conflict
	// ("compacted"). The channel is closed when ctx ends, when the store
	// closes, or when the consumer falls too far behind; a consumer then
	// lists again and watches from the listed revision (level-triggered).
	Watch(ctx context.Context, kind string, afterRev uint64) (<-chan Event, error)
	// Txn applies every op, in order, or none of them (the first failing
	// op's error is returned: NotFound, Conflict). Each op takes its own
	// revision, so watchers see one event per op, in order. It returns
	// each op's revision.
	Txn(ctx context.Context, ops []Op) ([]uint64, error)
	// Revision is the current store revision.
	Revision(ctx context.Context) (uint64, error)
	Close() error
}
