package objects

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Head returns key's record.
func (s *Store) Head(ctx context.Context, env, bucket, key string) (Object, error) {
	var out Object
	err := s.db.View(func(tx *bolt.Tx) error {
		if !bucketExists(tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		o, err := getObject(tx, env, bucket, key)
		if err != nil {
			return err
		}
		if o == nil {
			return errorf(CodeNoSuchKey, "The specified key does not exist: %s", key)
		}
		out = *o
		return nil
	})
	return out, err
}

// Reader reads an object's bytes: its data files, opened together, so a
// replacement or deletion meanwhile does not change what it reads.
type Reader struct {
	files []*os.File
	sizes []int64
}

// Close closes the files.
func (r *Reader) Close() error {
	for _, f := range r.files {
		f.Close()
	}
	return nil
}

// Section reads n bytes from off.
func (r *Reader) Section(off, n int64) io.Reader {
	var parts []io.Reader
	for i, f := range r.files {
		size := r.sizes[i]
		if n <= 0 {
			break
		}
		if off >= size {
			off -= size
			continue
		}
		take := min(size-off, n)
		parts = append(parts, io.NewSectionReader(f, off, take))
		n -= take
		off = 0
	}
	return io.MultiReader(parts...)
}

// Get returns key's record and its bytes; the caller closes the Reader.
// cond is checked against the object first (PreconditionFailed,
// NotModified).
func (s *Store) Get(ctx context.Context, env, bucket, key string, cond Conditions) (Object, *Reader, error) {
	for attempt := 0; ; attempt++ {
		o, err := s.Head(ctx, env, bucket, key)
		if err != nil {
			return o, nil, err
		}
		if err := checkRead(cond, o, true); err != nil {
			return o, nil, err
		}
		r := &Reader{sizes: o.Sizes}
		lost := false
		for _, f := range o.Files {
			fh, err := os.Open(s.path(f))
			if err != nil {
				r.Close()
				if errors.Is(err, fs.ErrNotExist) && attempt < 3 {
					lost = true // replaced between the lookup and the open
					break
				}
				return o, nil, err
			}
			r.files = append(r.files, fh)
		}
		if lost {
			continue
		}
		return o, r, nil
	}
}

// checkRead applies a read's conditions as S3 does: If-Match and
// If-Unmodified-Since fail with 412, If-None-Match and If-Modified-Since
// with 304 (GET and HEAD only; a copy's source fails with 412 for both).
func checkRead(c Conditions, o Object, get bool) error {
	failed := errorf(CodePreconditionFailed, "At least one of the pre-conditions you specified did not hold")
	notModified := error(errorf(CodeNotModified, "Not Modified"))
	if !get {
		notModified = failed
	}
	mod := o.Modified.Truncate(1e9)
	if c.IfMatch != "" {
		if !etagMatches(c.IfMatch, o.ETag) {
			return failed
		}
	} else if !c.IfUnmodifiedSince.IsZero() && mod.After(c.IfUnmodifiedSince) {
		return failed
	}
	if c.IfNoneMatch != "" {
		if etagMatches(c.IfNoneMatch, o.ETag) {
			return notModified
		}
	} else if !c.IfModifiedSince.IsZero() && !mod.After(c.IfModifiedSince) {
		return notModified
	}
	return nil
}

// ListOptions select a page of a listing.
type ListOptions struct {
	Prefix    string
	Delimiter string
	// After is exclusive: a key, or a common prefix already returned.
	After string
	Max   int
}

// ListResult is a page: objects and common prefixes in key order.
type ListResult struct {
	Objects        []Object
	CommonPrefixes []string
	Truncated      bool
	// Next is what to pass as After for the next page.
	Next string
}

// List lists bucket's keys in order, as ListObjectsV2 does.
func (s *Store) List(ctx context.Context, env, bucket string, opts ListOptions) (ListResult, error) {
	if opts.Max <= 0 || opts.Max > 1000 {
		opts.Max = 1000
	}
	var res ListResult
	err := s.db.View(func(tx *bolt.Tx) error {
		if !bucketExists(tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		base := objectKey(env, bucket, "")
		start := append(bytes.Clone(base), opts.Prefix...)
		if opts.After != "" && opts.After > opts.Prefix {
			start = append(bytes.Clone(base), opts.After...)
		}
		c := tx.Bucket(bktObjects).Cursor()
		count := 0
		var lastPrefix string
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, base); {
			key := string(k[len(base):])
			if !strings.HasPrefix(key, opts.Prefix) {
				break
			}
			if opts.After != "" && key <= opts.After {
				k, v = c.Next()
				continue
			}
			if opts.Delimiter != "" {
				if i := strings.Index(key[len(opts.Prefix):], opts.Delimiter); i >= 0 {
					cp := key[:len(opts.Prefix)+i+len(opts.Delimiter)]
					if cp == opts.After || cp == lastPrefix {
						// Already returned: skip every key under it.
						k, v = c.Seek(append(bytes.Clone(base), successor(cp)...))
						continue
					}
					if count == opts.Max {
						res.Truncated = true
						break
					}
					res.CommonPrefixes = append(res.CommonPrefixes, cp)
					res.Next, lastPrefix = cp, cp
					count++
					k, v = c.Seek(append(bytes.Clone(base), successor(cp)...))
					continue
				}
			}
			if count == opts.Max {
				res.Truncated = true
				break
			}
			var o Object
			if err := jsonUnmarshal(v, &o); err != nil {
				return err
			}
			o.Bucket, o.Key = bucket, key
			res.Objects = append(res.Objects, o)
			res.Next = key
			count++
			k, v = c.Next()
		}
		if !res.Truncated {
			res.Next = ""
		}
		return nil
	})
	return res, err
}

// successor is the smallest string greater than every string with prefix
// p ("" when there is none).
func successor(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\xff\xff\xff\xff"
}
