package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultRetention is how long minutes are kept.
const DefaultRetention = 30 * 24 * time.Hour

var (
	workloadsBucket = []byte("workloads") // "env/name" → minute index (uint32 BE) → encoded Minute
	imagesBucket    = []byte("images")    // digest → JSON ImageStats
)

// Options tunes a DB. Zero values take the defaults.
type Options struct {
	// Retention is how long minutes are kept (DefaultRetention).
	Retention time.Duration
	Logger    *slog.Logger
	// Now is time.Now unless a test injects a clock.
	Now func() time.Time
}

// DB is the history file: one bucket per workload with a record per
// minute, keyed by the minute's index since the epoch, and the startup
// figures of each image.
type DB struct {
	db   *bbolt.DB
	opts Options
	log  *slog.Logger
}

// Open opens or creates the history file at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open history: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{workloadsBucket, imagesBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	return &DB{db: db, opts: opts, log: opts.Logger}, nil
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

// Path is the file's path.
func (d *DB) Path() string { return d.db.Path() }

// Size is the file's size in bytes.
func (d *DB) Size() (int64, error) {
	st, err := os.Stat(d.db.Path())
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Bytes is the size of the pages holding env/name's minutes.
func (d *DB) Bytes(env, name string) (int64, error) {
	var n int64
	err := d.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(workloadsBucket).Bucket(workloadKey(env, name)); b != nil {
			st := b.Stats()
			n = int64(st.LeafAlloc + st.BranchAlloc + st.InlineBucketInuse)
		}
		return nil
	})
	return n, err
}

// Retention is how long minutes are kept.
func (d *DB) Retention() time.Duration { return d.opts.Retention }

// Entry is one workload's minute, as the recorder writes it.
type Entry struct {
	Environment, Name string
	// ImageDigest is the image the workload ran at the end of the minute;
	// its cold starts and instance starts are added to that image's
	// figures. Empty: none.
	ImageDigest string
	Minute
}

// ImageStats are the startup figures measured for one image, over every
// workload that ran it.
type ImageStats struct {
	ColdStarts       int64     `json:"coldStarts"`
	ColdStartSeconds float64   `json:"coldStartSeconds"`
	Starts           int64     `json:"starts"`
	StartSeconds     float64   `json:"startSeconds"`
	Updated          time.Time `json:"updated"`
}

func workloadKey(env, name string) []byte { return []byte(env + "/" + name) }

func minuteKey(t time.Time) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(t.Unix()/60))
	return k[:]
}

func minuteAt(k []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint32(k))*60, 0).UTC()
}

// Append writes a batch of minutes in one transaction (the recorder
// writes every workload's minute at once: one fsync a minute).
func (d *DB) Append(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	now := d.opts.Now()
	return d.db.Update(func(tx *bbolt.Tx) error {
		ws := tx.Bucket(workloadsBucket)
		imgs := tx.Bucket(imagesBucket)
		var buf []byte
		for _, e := range entries {
			b, err := ws.CreateBucketIfNotExists(workloadKey(e.Environment, e.Name))
			if err != nil {
				return err
			}
			// Minutes arrive in order: full pages, not half-empty splits.
			b.FillPercent = 1.0
			buf = e.Minute.encode(buf[:0])
			if err := b.Put(minuteKey(e.At), bytes.Clone(buf)); err != nil {
				return err
			}
			if e.ImageDigest == "" || (e.ColdStarts == 0 && e.Starts == 0) {
				continue
			}
			var st ImageStats
			if raw := imgs.Get([]byte(e.ImageDigest)); raw != nil {
				_ = json.Unmarshal(raw, &st) // a corrupt entry starts over
			}
			st.ColdStarts += e.ColdStarts
			st.ColdStartSeconds += e.ColdStartSeconds
			st.Starts += e.Starts
			st.StartSeconds += e.StartSeconds
			st.Updated = now.UTC()
			raw, _ := json.Marshal(st)
			if err := imgs.Put([]byte(e.ImageDigest), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// Range returns env/name's minutes in [from, to), oldest first. A
// workload with no history has none (no error).
func (d *DB) Range(env, name string, from, to time.Time) ([]Minute, error) {
	var out []Minute
	err := d.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(workloadsBucket).Bucket(workloadKey(env, name))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		end := minuteKey(to)
		for k, v := c.Seek(minuteKey(from)); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
			m, err := decodeMinute(minuteAt(k), v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Image returns the startup figures measured for an image (zero when none).
func (d *DB) Image(digest string) (ImageStats, error) {
	var st ImageStats
	err := d.db.View(func(tx *bbolt.Tx) error {
		if raw := tx.Bucket(imagesBucket).Get([]byte(digest)); raw != nil {
			return json.Unmarshal(raw, &st)
		}
		return nil
	})
	return st, err
}

// Workload names one workload's history.
type Workload struct{ Environment, Name string }

// Workloads lists the workloads with history.
func (d *DB) Workloads() ([]Workload, error) {
	var out []Workload
	err := d.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(workloadsBucket).ForEachBucket(func(k []byte) error {
			env, name, _ := strings.Cut(string(k), "/")
			out = append(out, Workload{env, name})
			return nil
		})
	})
	return out, err
}

// Prune deletes the minutes before cutoff, the workloads left without
// any, and the figures of images not seen since cutoff. It returns the
// minutes deleted. The file does not shrink: bbolt reuses the freed pages,
// so at a steady number of workloads it stays at the retention's size.
func (d *DB) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	deleted := 0
	// In slices, so a big prune does not hold the writer for long.
	for {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		n, more, err := d.pruneSome(cutoff, 10000)
		deleted += n
		if err != nil || !more {
			return deleted, err
		}
	}
}

func (d *DB) pruneSome(cutoff time.Time, limit int) (n int, more bool, err error) {
	end := minuteKey(cutoff)
	err = d.db.Update(func(tx *bbolt.Tx) error {
		ws := tx.Bucket(workloadsBucket)
		var empty [][]byte
		err := ws.ForEachBucket(func(name []byte) error {
			b := ws.Bucket(name)
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = c.First() {
				if n >= limit {
					more = true
					return nil
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			if k, _ := c.First(); k == nil {
				empty = append(empty, bytes.Clone(name))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range empty {
			if err := ws.DeleteBucket(name); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
				return err
			}
		}
		imgs := tx.Bucket(imagesBucket)
		var stale [][]byte
		err = imgs.ForEach(func(k, v []byte) error {
			var st ImageStats
			if json.Unmarshal(v, &st) != nil || st.Updated.Before(cutoff) {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := imgs.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, more, err
}

// RunRetention prunes what is older than the retention at once and then
// every hour until ctx ends.
func (d *DB) RunRetention(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := d.Prune(ctx, d.opts.Now().Add(-d.opts.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn("history retention failed", "err", err)
		case n > 0:
			d.log.Debug("history retention", "minutes_deleted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
