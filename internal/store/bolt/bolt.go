package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

var _ store.Store = (*Store)(nil)

// Options tunes a Store. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// HistorySize is how many recent events a watcher can resume from
	// (default 10000).
	HistorySize int
	// WatchBuffer is how many events a watcher may lag behind before its
	// channel is closed (default 1024).
	WatchBuffer int
	// LockTimeout bounds the wait for the file lock another process holds
	// (default 1s): a second server must fail fast, not hang.
	LockTimeout time.Duration
}

// Store is a store.Store in one bbolt file.
type Store struct {
	db     *bbolt.DB
	hub    *store.Hub
	logger *slog.Logger
	closed atomic.Bool

	// writeMu spans commit and publish, so events reach the hub in
	// revision order. bbolt serialises writers anyway, so it costs nothing.
	writeMu sync.Mutex
}

var (
	metaBucket    = []byte("meta")
	recordsBucket = []byte("records")
	revKey        = []byte("revision")
)

// A record value is modRev, createRev (big-endian uint64s), then the value.
const headerLen = 16

// Open opens or creates the database at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = 10000
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = 1024
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		holder := "pid unknown"
		if pid := lockHolder(path); pid != 0 {
			holder = fmt.Sprintf("pid %d", pid)
		}
		return nil, v1.Unavailable("data dir is in use by another berth server (%s): %s is locked", holder, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	var rev uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(recordsBucket); err != nil {
			return err
		}
		rev = readRev(meta)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		hub:    store.NewHub(opts.HistorySize, opts.WatchBuffer, rev),
		logger: opts.Logger,
	}
	s.logger.Info("store opened", "path", path, "revision", rev)
	return s, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key store.Key) (store.Record, error) {
	if err := s.usable(ctx); err != nil {
		return store.Record{}, err
	}
	k, err := encodeKey(key)
	if err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	err = s.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(recordsBucket).Get(k)
		if raw == nil {
			return notFound(key)
		}
		rec = decodeRecord(key, raw)
		return nil
	})
	return rec, s.mapErr(err)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, kind, environment string) ([]store.Record, uint64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	if kind == "" || strings.IndexByte(kind, 0) >= 0 || strings.IndexByte(environment, 0) >= 0 {
		return nil, 0, v1.Invalid("list: bad kind %q or environment %q", kind, environment)
	}
	prefix := []byte(kind + "\x00")
	if environment != "" {
		prefix = append(prefix, environment+"\x00"...)
	}
	var (
		recs []store.Record
		rev  uint64
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev = readRev(tx.Bucket(metaBucket))
		c := tx.Bucket(recordsBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			recs = append(recs, decodeRecord(decodeKey(k), v))
		}
		return nil
	})
	if err != nil {
		return nil, 0, s.mapErr(err)
	}
	return recs, rev, nil
}

// Txn implements store.Store: every op in one bbolt transaction, each
// with its own revision, the events published after the commit.
func (s *Store) Txn(ctx context.Context, ops []store.Op) ([]uint64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	keys := make([][]byte, len(ops))
	for i, op := range ops {
		k, err := encodeKey(op.Key)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Load() {
		return nil, v1.Unavailable("store is closed")
	}
	evs := make([]store.Event, len(ops))
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		b := tx.Bucket(recordsBucket)
		rev := readRev(meta)
		for i, op := range ops {
			rev++
			var err error
			switch op.Type {
			case store.OpCreate:
				evs[i], err = createOp(b, keys[i], op.Key, op.Value, rev)
			case store.OpUpdate:
				evs[i], err = updateOp(b, keys[i], op.Key, op.Value, op.ExpectRev, rev)
			case store.OpDelete:
				evs[i], err = deleteOp(b, keys[i], op.Key, op.ExpectRev, rev)
			default:
				err = v1.Invalid("transaction op %d: unknown type %q", i, op.Type)
			}
			if err != nil {
				return err
			}
		}
		return meta.Put(revKey, binary.BigEndian.AppendUint64(nil, rev))
	})
	if err != nil {
		return nil, s.mapErr(err)
	}
	revs := make([]uint64, len(evs))
	for i, ev := range evs {
		s.hub.Publish(ev)
		revs[i] = ev.Record.Revision
	}
	return revs, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, key store.Key, value []byte) (uint64, error) {
	return s.write(ctx, key, func(b *bbolt.Bucket, k []byte, rev uint64) (store.Event, error) {
		return createOp(b, k, key, value, rev)
	})
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key store.Key, value []byte, expectRev uint64) (uint64, error) {
	return s.write(ctx, key, func(b *bbolt.Bucket, k []byte, rev uint64) (store.Event, error) {
		return updateOp(b, k, key, value, expectRev, rev)
	})
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key store.Key, expectRev uint64) error {
	_, err := s.write(ctx, key, func(b *bbolt.Bucket, k []byte, rev uint64) (store.Event, error) {
		return deleteOp(b, k, key, expectRev, rev)
	})
	return err
}

func createOp(b *bbolt.Bucket, k []byte, key store.Key, value []byte, rev uint64) (store.Event, error) {
	if b.Get(k) != nil {
		return store.Event{}, v1.Conflict("%s already exists", key)
	}
	return put(b, k, key, value, rev, rev)
}

func updateOp(b *bbolt.Bucket, k []byte, key store.Key, value []byte, expectRev, rev uint64) (store.Event, error) {
	raw := b.Get(k)
	if raw == nil {
		return store.Event{}, notFound(key)
	}
	modRev, createRev := binary.BigEndian.Uint64(raw), binary.BigEndian.Uint64(raw[8:])
	if expectRev != 0 && expectRev != modRev {
		return store.Event{}, staleRev(key, expectRev, modRev)
	}
	return put(b, k, key, value, rev, createRev)
}

func deleteOp(b *bbolt.Bucket, k []byte, key store.Key, expectRev, rev uint64) (store.Event, error) {
	raw := b.Get(k)
	if raw == nil {
		return store.Event{}, notFound(key)
	}
	if modRev := binary.BigEndian.Uint64(raw); expectRev != 0 && expectRev != modRev {
		return store.Event{}, staleRev(key, expectRev, modRev)
	}
	last := decodeRecord(key, raw)
	if err := b.Delete(k); err != nil {
		return store.Event{}, err
	}
	last.Revision = rev
	return store.Event{Type: store.EventDelete, Record: last}, nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, kind string, afterRev uint64) (<-chan store.Event, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	return s.hub.Watch(ctx, kind, afterRev)
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	var rev uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev = readRev(tx.Bucket(metaBucket))
		return nil
	})
	return rev, s.mapErr(err)
}

// Close ends every watch and closes the file. It is safe to call twice.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// Let a write in flight publish its event before the hub closes.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.hub.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	s.logger.Info("store closed")
	return nil
}

// write runs fn in a write transaction that bumps the revision, then
// publishes the event fn returns once the commit is durable.
func (s *Store) write(ctx context.Context, key store.Key, fn func(b *bbolt.Bucket, k []byte, rev uint64) (store.Event, error)) (uint64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	k, err := encodeKey(key)
	if err != nil {
		return 0, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Load() {
		return 0, v1.Unavailable("store is closed")
	}
	var ev store.Event
	err = s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		rev := readRev(meta) + 1
		var err error
		if ev, err = fn(tx.Bucket(recordsBucket), k, rev); err != nil {
			return err
		}
		return meta.Put(revKey, binary.BigEndian.AppendUint64(nil, rev))
	})
	if err != nil {
		return 0, s.mapErr(err)
	}
	s.hub.Publish(ev)
	return ev.Record.Revision, nil
}

func put(b *bbolt.Bucket, k []byte, key store.Key, value []byte, modRev, createRev uint64) (store.Event, error) {
	buf := make([]byte, headerLen, headerLen+len(value))
	binary.BigEndian.PutUint64(buf, modRev)
	binary.BigEndian.PutUint64(buf[8:], createRev)
	buf = append(buf, value...)
	if err := b.Put(k, buf); err != nil {
		return store.Event{}, err
	}
	// bbolt copies buf into its pages at commit, so the event may keep it.
	rec := store.Record{Key: key, Value: buf[headerLen:len(buf):len(buf)], Revision: modRev}
	return store.Event{Type: store.EventPut, Record: rec}, nil
}

func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return v1.Unavailable("store is closed")
	}
	return nil
}

func (s *Store) mapErr(err error) error {
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return v1.Unavailable("store is closed")
	}
	return err
}

func readRev(meta *bbolt.Bucket) uint64 {
	if v := meta.Get(revKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// encodeKey lays keys out as kind NUL environment NUL name, so that a kind
// or a kind and environment is a prefix and a cursor lists in key order.
func encodeKey(key store.Key) ([]byte, error) {
	if key.Kind == "" || key.Name == "" {
		return nil, v1.Invalid("key %s: kind and name are required", key)
	}
	if strings.IndexByte(key.Kind+key.Environment+key.Name, 0) >= 0 {
		return nil, v1.Invalid("key %q: NUL byte", key.String())
	}
	return []byte(key.Kind + "\x00" + key.Environment + "\x00" + key.Name), nil
}

func decodeKey(k []byte) store.Key {
	parts := strings.SplitN(string(k), "\x00", 3)
	return store.Key{Kind: parts[0], Environment: parts[1], Name: parts[2]}
}

// decodeRecord copies out of raw, which bbolt owns only for the transaction.
func decodeRecord(key store.Key, raw []byte) store.Record {
	return store.Record{
		Key:      key,
		Value:    bytes.Clone(raw[headerLen:]),
		Revision: binary.BigEndian.Uint64(raw),
	}
}

func notFound(key store.Key) error {
	return v1.NotFound("%s not found", key)
}

func staleRev(key store.Key, expected, actual uint64) error {
	return v1.Conflict("%s was modified: expected revision %d, actual revision %d", key, expected, actual)
}
