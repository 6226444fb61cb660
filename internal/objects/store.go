package objects

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	v1 "berth.dev/berth/api/v1"
)

// Limits bound an environment's objects; zero is no bound.
type Limits struct {
	Bytes   int64
	Objects int64
}

// Usage is what an environment holds: Bytes counts objects and the parts
// of uploads in progress, Objects only objects.
type Usage struct {
	Bytes   int64 `json:"bytes"`
	Objects int64 `json:"objects"`
	Buckets int64 `json:"buckets"`
}

// Config is what the composition root gives the store.
type Config struct {
	// Dir holds the data and the index; created if missing.
	Dir    string
	Logger *slog.Logger
	// Limits returns env's quota (nil: none).
	Limits func(env string) Limits
	// Now stamps objects (default time.Now).
	Now func() time.Time
	// MinPartSize is the smallest part but the last of a multipart
	// upload (default S3's 5 MiB).
	MinPartSize int64
	// UploadTTL is how long a multipart upload may stay incomplete
	// before it is aborted and its parts removed (default 24h).
	UploadTTL time.Duration
	// MaxBuckets bounds the buckets of one environment (default 1000).
	MaxBuckets int
}

// Sizes S3 holds to.
const (
	MaxObjectSize = 5 << 40 // 5 TiB, a multipart object
	MaxPutSize    = 5 << 30 // 5 GiB, one PutObject or one part
	MaxParts      = 10000
)

// Store is the object store of every environment.
type Store struct {
	cfg Config
	log *slog.Logger
	db  *bolt.DB

	dataDir, tmpDir string

	mu    sync.Mutex // guards usage
	usage map[string]Usage
}

var (
	bktBuckets = []byte("buckets") // env \0 bucket → bucketRec
	bktObjects = []byte("objects") // env \0 bucket \0 key → objectRec
	bktUploads = []byte("uploads") // uploadID → uploadRec
	bktParts   = []byte("parts")   // uploadID \0 uint32 BE → partRec
	bktUsage   = []byte("usage")   // env → Usage
)

type bucketRec struct {
	Created time.Time `json:"created"`
}

// Checksum is an additional checksum of an object or part, as S3 keeps:
// the algorithm (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) and the value
// (base64), "-N" appended for a multipart object's checksum of checksums.
type Checksum struct {
	Algorithm string `json:"algorithm,omitempty"`
	Value     string `json:"value,omitempty"`
}

// Object is an object's record.
type Object struct {
	Bucket      string            `json:"-"`
	Key         string            `json:"-"`
	Size        int64             `json:"size"`
	ETag        string            `json:"etag"` // quoted
	Modified    time.Time         `json:"modified"`
	ContentType string            `json:"contentType,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"` // Content-Encoding, Cache-Control, X-Amz-Meta-*…
	Checksum    Checksum          `json:"checksum,omitzero"`
	// Parts is the number of parts of a multipart object (0: one PUT).
	Parts int `json:"parts,omitempty"`
	// Files are the data files, in order; Sizes their sizes.
	Files []string `json:"files"`
	Sizes []int64  `json:"sizes"`
}

type uploadRec struct {
	Env         string            `json:"env"`
	Bucket      string            `json:"bucket"`
	Key         string            `json:"key"`
	Created     time.Time         `json:"created"`
	ContentType string            `json:"contentType,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Algorithm   string            `json:"algorithm,omitempty"`
}

// Part is an uploaded part of a multipart upload.
type Part struct {
	Number   int       `json:"number"`
	Size     int64     `json:"size"`
	ETag     string    `json:"etag"`
	Modified time.Time `json:"modified"`
	Checksum Checksum  `json:"checksum,omitzero"`
	File     string    `json:"file"`
}

// Open opens (or makes) the store in cfg.Dir, empties its tmp/ and removes
// data files no record names (a crash's leftovers).
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, v1.Invalid("objects: Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinPartSize <= 0 {
		cfg.MinPartSize = 5 << 20
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = 24 * time.Hour
	}
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = 1000
	}
	if cfg.Limits == nil {
		cfg.Limits = func(string) Limits { return Limits{} }
	}
	s := &Store{cfg: cfg, log: cfg.Logger, dataDir: filepath.Join(cfg.Dir, "data"), tmpDir: filepath.Join(cfg.Dir, "tmp")}
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("objects: clean tmp: %w", err)
	}
	for _, d := range []string{cfg.Dir, s.dataDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("objects: %w", err)
		}
	}
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(s.dataDir, fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return nil, fmt.Errorf("objects: %w", err)
		}
	}
	db, err := bolt.Open(filepath.Join(cfg.Dir, "index.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("objects: open index: %w", err)
	}
	s.db = db
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktBuckets, bktObjects, bktUploads, bktParts, bktUsage} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("objects: index: %w", err)
	}
	if err := s.loadUsage(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.removeOrphans(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the index.
func (s *Store) Close() error { return s.db.Close() }

// Run aborts uploads older than UploadTTL, once at start and then every
// hour (or UploadTTL/4 when shorter), until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	every := min(time.Hour, s.cfg.UploadTTL/4)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.AbortStaleUploads(ctx); err != nil {
			s.log.Warn("abort stale uploads", "err", err)
		} else if n > 0 {
			s.log.Info("aborted stale multipart uploads", "count", n, "older_than", s.cfg.UploadTTL)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Store) loadUsage() error {
	s.usage = map[string]Usage{}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktUsage).ForEach(func(k, v []byte) error {
			var u Usage
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("objects: usage of %s: %w", k, err)
			}
			s.usage[string(k)] = u
			return nil
		})
	})
}

// removeOrphans deletes data files that no object or part names.
func (s *Store) removeOrphans() error {
	named := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bktObjects).ForEach(func(_, v []byte) error {
			var o Object
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			for _, f := range o.Files {
				named[f] = true
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bktParts).ForEach(func(_, v []byte) error {
			var p Part
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			named[p.File] = true
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("objects: read index: %w", err)
	}
	removed := 0
	err = filepath.WalkDir(s.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !named[d.Name()] {
			removed++
			return os.Remove(path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("objects: remove orphans: %w", err)
	}
	if removed > 0 {
		s.log.Info("removed data files of writes that never committed", "count", removed)
	}
	return nil
}

// Usage is env's usage now.
func (s *Store) Usage(env string) Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage[env]
}

// Usages is every environment's usage.
func (s *Store) Usages() map[string]Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Usage, len(s.usage))
	for k, v := range s.usage {
		out[k] = v
	}
	return out
}

// Limits is env's quota.
func (s *Store) Limits(env string) Limits { return s.cfg.Limits(env) }

// txn carries a write transaction's usage changes, applied to the
// in-memory copy only once the transaction committed.
type txn struct {
	tx    *bolt.Tx
	delta map[string]Usage
	// remove are files to delete once committed (replaced or deleted
	// objects); keep are removed if the transaction does not commit.
	remove, discard []string
}

func (t *txn) add(env string, d Usage) {
	u := t.delta[env]
	u.Bytes += d.Bytes
	u.Objects += d.Objects
	u.Buckets += d.Buckets
	t.delta[env] = u
}

// update runs fn in a write transaction; on commit it applies the usage
// deltas and removes the files fn let go of, otherwise the files it
// wrote.
func (s *Store) update(fn func(t *txn) error) error {
	t := &txn{delta: map[string]Usage{}}
	err := s.db.Update(func(tx *bolt.Tx) error {
		t.tx = tx
		if err := fn(t); err != nil {
			return err
		}
		ub := tx.Bucket(bktUsage)
		for env, d := range t.delta {
			var u Usage
			if v := ub.Get([]byte(env)); v != nil {
				json.Unmarshal(v, &u)
			}
			u.Bytes += d.Bytes
			u.Objects += d.Objects
			u.Buckets += d.Buckets
			if u == (Usage{}) {
				if err := ub.Delete([]byte(env)); err != nil {
					return err
				}
				continue
			}
			b, _ := json.Marshal(u)
			if err := ub.Put([]byte(env), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.removeFiles(t.discard)
		return err
	}
	s.mu.Lock()
	for env, d := range t.delta {
		u := s.usage[env]
		u.Bytes += d.Bytes
		u.Objects += d.Objects
		u.Buckets += d.Buckets
		if u == (Usage{}) {
			delete(s.usage, env)
		} else {
			s.usage[env] = u
		}
	}
	s.mu.Unlock()
	s.removeFiles(t.remove)
	return nil
}

// usageIn reads env's usage inside a transaction (with its own deltas).
func (t *txn) usageIn(env string) Usage {
	var u Usage
	if v := t.tx.Bucket(bktUsage).Get([]byte(env)); v != nil {
		json.Unmarshal(v, &u)
	}
	d := t.delta[env]
	return Usage{Bytes: u.Bytes + d.Bytes, Objects: u.Objects + d.Objects, Buckets: u.Buckets + d.Buckets}
}

func (s *Store) removeFiles(files []string) {
	for _, f := range files {
		if err := os.Remove(s.path(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove data file", "file", f, "err", err)
		}
	}
}

func (s *Store) path(file string) string { return filepath.Join(s.dataDir, file[:2], file) }

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func bucketKey(env, bucket string) []byte { return []byte(env + "\x00" + bucket) }

func objectKey(env, bucket, key string) []byte {
	return []byte(env + "\x00" + bucket + "\x00" + key)
}

func partKey(uploadID string, n int) []byte {
	k := make([]byte, 0, len(uploadID)+5)
	k = append(k, uploadID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(n))
}

// --- buckets ---

// Bucket is a bucket's record.
type Bucket struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// CreateBucket makes bucket in env.
func (s *Store) CreateBucket(ctx context.Context, env, bucket string) error {
	if err := ValidBucketName(bucket); err != nil {
		return err
	}
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bktBuckets)
		if b.Get(bucketKey(env, bucket)) != nil {
			return errorf(CodeBucketExists, "Your previous request to create the named bucket succeeded and you already own it: %s", bucket)
		}
		if t.usageIn(env).Buckets >= int64(s.cfg.MaxBuckets) {
			return errorf(CodeTooManyBuckets, "environment %s has %d buckets, the most it may have", env, s.cfg.MaxBuckets)
		}
		v, _ := json.Marshal(bucketRec{Created: s.cfg.Now().UTC()})
		t.add(env, Usage{Buckets: 1})
		return b.Put(bucketKey(env, bucket), v)
	})
}

// HeadBucket returns bucket, or NoSuchBucket.
func (s *Store) HeadBucket(ctx context.Context, env, bucket string) (Bucket, error) {
	var out Bucket
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktBuckets).Get(bucketKey(env, bucket))
		if v == nil {
			return noSuchBucket(bucket)
		}
		var r bucketRec
		json.Unmarshal(v, &r)
		out = Bucket{Name: bucket, Created: r.Created}
		return nil
	})
	return out, err
}

func noSuchBucket(bucket string) error {
	return errorf(CodeNoSuchBucket, "The specified bucket does not exist: %s", bucket)
}

// ListBuckets lists env's buckets by name.
func (s *Store) ListBuckets(ctx context.Context, env string) ([]Bucket, error) {
	var out []Bucket
	prefix := []byte(env + "\x00")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktBuckets).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r bucketRec
			json.Unmarshal(v, &r)
			out = append(out, Bucket{Name: string(k[len(prefix):]), Created: r.Created})
		}
		return nil
	})
	return out, err
}

// DeleteBucket removes an empty bucket (BucketNotEmpty otherwise; uploads
// in progress count as content, as on S3).
func (s *Store) DeleteBucket(ctx context.Context, env, bucket string) error {
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bktBuckets)
		if b.Get(bucketKey(env, bucket)) == nil {
			return noSuchBucket(bucket)
		}
		prefix := append(bucketKey(env, bucket), 0)
		if k, _ := t.tx.Bucket(bktObjects).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			return errorf(CodeBucketNotEmpty, "The bucket you tried to delete is not empty: %s", bucket)
		}
		busy := false
		t.tx.Bucket(bktUploads).ForEach(func(_, v []byte) error {
			var u uploadRec
			if json.Unmarshal(v, &u) == nil && u.Env == env && u.Bucket == bucket {
				busy = true
			}
			return nil
		})
		if busy {
			return errorf(CodeBucketNotEmpty, "The bucket you tried to delete has multipart uploads in progress: %s", bucket)
		}
		t.add(env, Usage{Buckets: -1})
		return b.Delete(bucketKey(env, bucket))
	})
}

// DeleteEnvironment removes everything env holds: its buckets, objects and
// uploads. An environment's store does not outlive it.
func (s *Store) DeleteEnvironment(ctx context.Context, env string) error {
	return s.update(func(t *txn) error {
		prefix := []byte(env + "\x00")
		for _, name := range [][]byte{bktBuckets, bktObjects} {
			c := t.tx.Bucket(name).Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
				if bytes.Equal(name, bktObjects) {
					var o Object
					json.Unmarshal(v, &o)
					t.remove = append(t.remove, o.Files...)
				}
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		var ids []string
		t.tx.Bucket(bktUploads).ForEach(func(k, v []byte) error {
			var u uploadRec
			if json.Unmarshal(v, &u) == nil && u.Env == env {
				ids = append(ids, string(k))
			}
			return nil
		})
		for _, id := range ids {
			if err := s.dropUpload(t, id); err != nil {
				return err
			}
		}
		t.add(env, Usage{}.minus(t.usageIn(env)))
		return nil
	})
}

func (u Usage) minus(o Usage) Usage {
	return Usage{Bytes: u.Bytes - o.Bytes, Objects: u.Objects - o.Objects, Buckets: u.Buckets - o.Buckets}
}

// Environments lists the environments that hold anything.
func (s *Store) Environments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.usage))
	for env := range s.usage {
		out = append(out, env)
	}
	sort.Strings(out)
	return out
}

func bucketExists(tx *bolt.Tx, env, bucket string) bool {
	return tx.Bucket(bktBuckets).Get(bucketKey(env, bucket)) != nil
}

func trimQuotes(etag string) string { return strings.Trim(strings.TrimSpace(etag), `"`) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
