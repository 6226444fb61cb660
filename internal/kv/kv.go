package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "berth.dev/berth/api/v1"
)

// Limits of keys and values.
const (
	MaxKeyBytes          = 1024
	DefaultMaxValueBytes = 1 << 20
	// markerTTL is how long the marker of a key removed by its TTL stays
	// (watchers see the removal through it).
	markerTTL = time.Minute
)

// Config is what the composition root gives the store.
type Config struct {
	// JetStream is the embedded server's (package queue's).
	JetStream jetstream.JetStream
	Logger    *slog.Logger
	// MaxValueBytes bounds a value (default 1 MiB; the embedded server's
	// payload limit is a little more).
	MaxValueBytes int
	// MaxBytes bounds what one environment's bucket holds, 0 for no
	// bound.
	MaxBytes func(env string) int64
}

// Store is the key-value store of every environment: one JetStream KV
// bucket each, made on the first write.
type Store struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
	name   string
}

// Entry is a key's current value.
type Entry struct {
	Key      string     `json:"key"`
	Value    []byte     `json:"value,omitempty"`
	Revision uint64     `json:"revision"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
	// Op is "put" or "delete" (watch events only).
	Op string `json:"op,omitempty"`
}

// New returns the store; it makes nothing until the first write.
func New(cfg Config) *Store {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	return &Store{cfg: cfg, log: cfg.Logger, buckets: map[string]*bucket{}}
}

func bucketName(env string) string { return "berth_kv_" + env }

// open returns env's bucket; with create false a missing bucket is nil.
func (s *Store) open(ctx context.Context, env string, create bool) (*bucket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.buckets[env]; b != nil {
		return b, nil
	}
	name := bucketName(env)
	kv, err := s.cfg.JetStream.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if !create {
			return nil, nil
		}
		var maxBytes int64 = -1
		if s.cfg.MaxBytes != nil {
			if m := s.cfg.MaxBytes(env); m > 0 {
				maxBytes = m
			}
		}
		kv, err = s.cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         name,
			Description:    "key-value store of environment " + env,
			History:        1,
			MaxValueSize:   int32(s.cfg.MaxValueBytes),
			MaxBytes:       maxBytes,
			Storage:        jetstream.FileStorage,
			LimitMarkerTTL: markerTTL,
		})
	}
	if err != nil {
		return nil, v1.Unavailable("key-value store of environment %s: %v", env, err)
	}
	st, err := s.cfg.JetStream.Stream(ctx, "KV_"+name)
	if err != nil {
		return nil, v1.Unavailable("key-value store of environment %s: %v", env, err)
	}
	b := &bucket{kv: kv, stream: st, name: name}
	s.buckets[env] = b
	return b, nil
}

// ValidKey checks a key: 1 to 1,024 bytes, no control characters.
func ValidKey(key string) error {
	if key == "" {
		return v1.FieldError("key", "a key may not be empty")
	}
	if len(key) > MaxKeyBytes {
		return v1.FieldError("key", "a key is at most %d bytes; this one has %d", MaxKeyBytes, len(key))
	}
	for _, c := range []byte(key) {
		if c < 0x20 || c == 0x7f {
			return v1.FieldError("key", "a key may not hold control characters")
		}
	}
	return nil
}

// encodeKey maps any key onto JetStream's key alphabet
// ([-/_=.A-Za-z0-9]): letters, digits, '-', '_' and '/' stay, every other
// byte is =XX. No '.' is left, so a key is one subject token.
func encodeKey(key string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func decodeKey(enc string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(enc); i++ {
		if enc[i] != '=' {
			b.WriteByte(enc[i])
			continue
		}
		if i+2 >= len(enc) {
			return "", false
		}
		n, err := strconv.ParseUint(enc[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

func notFound(env, key string) error {
	return v1.NotFound("no key %q in the key-value store of environment %s", key, env)
}

// deleted says whether a stored message marks its key removed (a delete,
// a purge, or the marker of an expired TTL).
func deleted(h nats.Header) bool {
	if h == nil {
		return false
	}
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}

// Get returns key's value.
func (s *Store) Get(ctx context.Context, env, key string) (Entry, error) {
	if err := ValidKey(key); err != nil {
		return Entry{}, err
	}
	b, err := s.open(ctx, env, false)
	if err != nil || b == nil {
		return Entry{}, errors.Join(err, notFound(env, key))
	}
	m, err := b.stream.GetLastMsgForSubject(ctx, "$KV."+b.name+"."+encodeKey(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, notFound(env, key)
	}
	if err != nil {
		return Entry{}, v1.Unavailable("key-value store of environment %s: %v", env, err)
	}
	if deleted(m.Header) {
		return Entry{}, notFound(env, key)
	}
	e := Entry{Key: key, Value: m.Data, Revision: m.Sequence, Created: m.Time.UTC()}
	if ttl := m.Header.Get(jetstream.MsgTTLHeader); ttl != "" {
		if secs, err := strconv.ParseInt(ttl, 10, 64); err == nil && secs > 0 {
			exp := e.Created.Add(time.Duration(secs) * time.Second)
			if time.Now().After(exp) {
				// Expired, its removal not yet applied.
				return Entry{}, notFound(env, key)
			}
			e.Expires = &exp
		}
	}
	return e, nil
}

// PutOptions make a put conditional or temporary.
type PutOptions struct {
	// Revision, when set, is compare-and-swap: the key's revision must
	// be *Revision, 0 meaning that the key must not exist.
	Revision *uint64
	// TTL removes the key that long after this put (at least a second);
	// 0 keeps it.
	TTL time.Duration
}

func conflict(env, key string, rev uint64) error {
	if rev == 0 {
		return v1.Conflict("key %q already exists in environment %s", key, env)
	}
	return v1.Conflict("key %q of environment %s is not at revision %d (changed or deleted since)", key, env, rev)
}

func wrongSequence(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && (ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Put sets key to value and returns its new revision. It returns once the
// write is on disk (the embedded server syncs every write).
func (s *Store) Put(ctx context.Context, env, key string, value []byte, opts PutOptions) (uint64, error) {
	if err := ValidKey(key); err != nil {
		return 0, err
	}
	if len(value) > s.cfg.MaxValueBytes {
		return 0, v1.Errorf(v1.ErrTooLarge, "a value is at most %d bytes; this one has %d", s.cfg.MaxValueBytes, len(value))
	}
	if opts.TTL != 0 && opts.TTL < time.Second {
		return 0, v1.FieldError("ttl", "a TTL is at least one second")
	}
	b, err := s.open(ctx, env, true)
	if err != nil {
		return 0, err
	}
	subject := "$KV." + b.name + "." + encodeKey(key)
	msg := &nats.Msg{Subject: subject, Data: value, Header: nats.Header{}}
	if opts.TTL > 0 {
		msg.Header.Set(jetstream.MsgTTLHeader, strconv.FormatInt(int64((opts.TTL+time.Second-1)/time.Second), 10))
	}
	if opts.Revision != nil {
		expect := *opts.Revision
		if expect == 0 {
			// "Must not exist": a key that was deleted still has its
			// delete marker as last message; expect that one.
			if m, err := b.stream.GetLastMsgForSubject(ctx, subject); err == nil {
				if !deleted(m.Header) {
					return 0, conflict(env, key, 0)
				}
				expect = m.Sequence
			} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
				return 0, v1.Unavailable("key-value store of environment %s: %v", env, err)
			}
		}
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	}
	ack, err := s.cfg.JetStream.PublishMsg(ctx, msg)
	if err != nil {
		if wrongSequence(err) {
			return 0, conflict(env, key, *opts.Revision)
		}
		return 0, s.writeError(env, err)
	}
	return ack.Sequence, nil
}

func (s *Store) writeError(env string, err error) error {
	var ae *jetstream.APIError
	if errors.As(err, &ae) && (ae.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum || strings.Contains(ae.Description, "maximum bytes")) {
		return v1.Errorf(v1.ErrTooLarge, "the key-value store of environment %s is full: %v", env, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return v1.Unavailable("key-value store of environment %s: %v", env, err)
}

// Delete removes key; revision, when set, must be its current one.
func (s *Store) Delete(ctx context.Context, env, key string, revision *uint64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	b, err := s.open(ctx, env, false)
	if err != nil {
		return err
	}
	if b == nil {
		if revision != nil {
			return notFound(env, key)
		}
		return nil
	}
	msg := &nats.Msg{Subject: "$KV." + b.name + "." + encodeKey(key), Header: nats.Header{"KV-Operation": {"DEL"}}}
	if revision != nil {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(*revision, 10))
	}
	if _, err := s.cfg.JetStream.PublishMsg(ctx, msg); err != nil {
		if wrongSequence(err) {
			return conflict(env, key, *revision)
		}
		return s.writeError(env, err)
	}
	return nil
}

// List returns the keys under prefix in order, with their values when
// values is true, at most limit (0: 1000) of them after the key after.
func (s *Store) List(ctx context.Context, env, prefix, after string, limit int, values bool) ([]Entry, bool, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	b, err := s.open(ctx, env, false)
	if err != nil || b == nil {
		return nil, false, err
	}
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if !values {
		opts = append(opts, jetstream.MetaOnly())
	}
	w, err := b.kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, false, v1.Unavailable("key-value store of environment %s: %v", env, err)
	}
	defer w.Stop()
	var out []Entry
	for {
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, false, v1.Unavailable("key-value store of environment %s: listing cut short", env)
			}
			if e == nil { // the initial values are all in
				sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
				more := len(out) > limit
				if more {
					out = out[:limit]
				}
				return out, more, nil
			}
			key, ok := decodeKey(e.Key())
			if !ok || !strings.HasPrefix(key, prefix) || key <= after && after != "" {
				continue
			}
			ent := Entry{Key: key, Revision: e.Revision(), Created: e.Created().UTC()}
			if values {
				ent.Value = e.Value()
			}
			out = append(out, ent)
		}
	}
}

// Watch returns the changes under prefix from now on (Op "put" with the
// value, or "delete"): the watch is in place when Watch returns, and the
// channel is closed when ctx ends or the watch breaks. A key's changes
// come in revision order and its last change always arrives; a value
// overwritten before it was delivered may be skipped (the bucket keeps one
// value a key, and JetStream delivers only what the stream still holds).
func (s *Store) Watch(ctx context.Context, env, prefix string) (<-chan Entry, error) {
	b, err := s.open(ctx, env, true)
	if err != nil {
		return nil, err
	}
	w, err := b.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, v1.Unavailable("key-value store of environment %s: %v", env, err)
	}
	out := make(chan Entry, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				key, ok := decodeKey(e.Key())
				if !ok || !strings.HasPrefix(key, prefix) {
					continue
				}
				ev := Entry{Key: key, Revision: e.Revision(), Created: e.Created().UTC(), Op: "put"}
				if e.Operation() != jetstream.KeyValuePut {
					ev.Op = "delete"
				} else {
					ev.Value = e.Value()
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// DeleteEnvironment removes env's bucket and everything in it.
func (s *Store) DeleteEnvironment(ctx context.Context, env string) error {
	s.mu.Lock()
	delete(s.buckets, env)
	s.mu.Unlock()
	err := s.cfg.JetStream.DeleteKeyValue(ctx, bucketName(env))
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("key-value store of environment %s: %w", env, err)
	}
	return nil
}

// Usage is the bytes and keys env's bucket holds (0, 0 when none).
func (s *Store) Usage(ctx context.Context, env string) (bytes, keys uint64, err error) {
	b, err := s.open(ctx, env, false)
	if err != nil || b == nil {
		return 0, 0, err
	}
	st, err := b.kv.Status(ctx)
	if err != nil {
		return 0, 0, err
	}
	return st.Bytes(), st.Values(), nil
}
