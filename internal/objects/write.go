package objects

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Checksum algorithms S3 knows.
var checksumAlgorithms = map[string]func() hash.Hash{
	"CRC32":     func() hash.Hash { return crc32.NewIEEE() },
	"CRC32C":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"CRC64NVME": func() hash.Hash { return crc64.New(crc64NVME) },
	"SHA1":      sha1.New,
	"SHA256":    sha256.New,
}

var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// ValidChecksumAlgorithm says whether alg (upper case) is one S3 knows.
func ValidChecksumAlgorithm(alg string) bool { _, ok := checksumAlgorithms[alg]; return ok }

// Meta is what a writer says about an object besides its bytes.
type Meta struct {
	ContentType string
	// Headers are the other stored headers, canonical names:
	// Content-Encoding, Content-Disposition, Content-Language,
	// Cache-Control, Expires and X-Amz-Meta-*.
	Headers map[string]string
}

// Conditions make a write or a read conditional on the current object.
// IfMatch is an ETag (or "*"); IfNoneMatch "*" (writes) or an ETag; the
// times apply to reads only.
type Conditions struct {
	IfMatch           string
	IfNoneMatch       string
	IfModifiedSince   time.Time
	IfUnmodifiedSince time.Time
}

// WriteOptions say what a Put or a part must be.
type WriteOptions struct {
	// Size is the body's length, -1 when unknown.
	Size int64
	// ContentMD5 is the Content-MD5 header (base64), "" when absent.
	ContentMD5 string
	// ChecksumAlgorithm is the additional checksum to compute (CRC32…),
	// "" for none.
	ChecksumAlgorithm string
	// ExpectedChecksum returns the checksum value the client sent (a
	// header, or a trailer known only once the body is read); "" skips
	// the check.
	ExpectedChecksum func() string
}

// written is a data file in place (synced and renamed into data/).
type written struct {
	file     string
	size     int64
	md5      []byte
	checksum Checksum
}

// quotaExceeded names the environment's bound that a write passes.
func quotaExceeded(env, what string, used, adding, limit int64) error {
	return errorf(CodeQuotaExceeded, "quota exceeded in environment %s: %s %d in use + %d would pass the quota of %d", env, what, used, adding, limit)
}

// room is how many more bytes env may hold now (-1: unbounded).
func (s *Store) room(env string) int64 {
	l := s.cfg.Limits(env)
	if l.Bytes <= 0 {
		return -1
	}
	return max(l.Bytes-s.Usage(env).Bytes, 0)
}

// writeData streams body into a new data file: hashed, bounded by maxSize
// (tooLarge answers past it) and by env's quota, checked against the
// client's digests, synced and renamed into data/. The caller commits a
// record naming it, or removes it.
func (s *Store) writeData(env string, body io.Reader, opts WriteOptions, maxSize int64) (w written, err error) {
	if opts.Size > maxSize {
		return w, errorf(CodeEntityTooLarge, "Your proposed upload of %d bytes exceeds the maximum allowed size of %d", opts.Size, maxSize)
	}
	room := s.room(env)
	if room >= 0 && opts.Size > room {
		l := s.cfg.Limits(env)
		return w, quotaExceeded(env, "bytes", s.Usage(env).Bytes, opts.Size, l.Bytes)
	}
	var wantMD5 []byte
	if opts.ContentMD5 != "" {
		wantMD5, err = base64.StdEncoding.DecodeString(opts.ContentMD5)
		if err != nil || len(wantMD5) != md5.Size {
			return w, errorf(CodeInvalidDigest, "The Content-MD5 you specified is not valid.")
		}
	}
	var sum hash.Hash
	if opts.ChecksumAlgorithm != "" {
		newHash, ok := checksumAlgorithms[opts.ChecksumAlgorithm]
		if !ok {
			return w, errorf(CodeInvalidRequest, "Checksum algorithm %q is not supported", opts.ChecksumAlgorithm)
		}
		sum = newHash()
	}
	f, err := os.CreateTemp(s.tmpDir, "put-*")
	if err != nil {
		return w, fmt.Errorf("objects: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	m := md5.New()
	dst := io.Writer(f)
	if sum != nil {
		dst = io.MultiWriter(f, m, sum)
	} else {
		dst = io.MultiWriter(f, m)
	}
	limit := maxSize
	if room >= 0 && room < limit {
		limit = room
	}
	n, err := io.Copy(dst, io.LimitReader(body, limit+1))
	if err != nil {
		return w, readError(err)
	}
	if n > limit {
		if room >= 0 && room < maxSize {
			return w, quotaExceeded(env, "bytes", s.Usage(env).Bytes, n, s.cfg.Limits(env).Bytes)
		}
		return w, errorf(CodeEntityTooLarge, "Your proposed upload exceeds the maximum allowed size of %d", maxSize)
	}
	if opts.Size >= 0 && n != opts.Size {
		return w, errorf(CodeIncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header (%d of %d)", n, opts.Size)
	}
	w.size, w.md5 = n, m.Sum(nil)
	if wantMD5 != nil && string(wantMD5) != string(w.md5) {
		return w, errorf(CodeBadDigest, "The Content-MD5 you specified did not match what we received.")
	}
	if sum != nil {
		w.checksum = Checksum{Algorithm: opts.ChecksumAlgorithm, Value: base64.StdEncoding.EncodeToString(sum.Sum(nil))}
		if opts.ExpectedChecksum != nil {
			if want := opts.ExpectedChecksum(); want != "" && want != w.checksum.Value {
				return w, errorf(CodeBadDigest, "The %s you specified did not match the calculated checksum.", opts.ChecksumAlgorithm)
			}
		}
	}
	if err := f.Sync(); err != nil {
		return w, fmt.Errorf("objects: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return w, fmt.Errorf("objects: %w", err)
	}
	w.file = newID()
	if err := os.Rename(tmp, s.path(w.file)); err != nil {
		return w, fmt.Errorf("objects: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path(w.file))); err != nil {
		os.Remove(s.path(w.file))
		return w, fmt.Errorf("objects: sync: %w", err)
	}
	return w, nil
}

// readError keeps a client's body error (a signature or hash mismatch,
// the connection gone) as it is, for the API to answer.
func readError(err error) error {
	if err == io.ErrUnexpectedEOF {
		return errorf(CodeIncompleteBody, "the request body ended early")
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func quote(etag string) string { return `"` + etag + `"` }

// Put writes key in bucket whole, replacing what was there once the new
// bytes are durable. cond makes it conditional (If-Match,
// If-None-Match: *), checked atomically with the replacement.
func (s *Store) Put(ctx context.Context, env, bucket, key string, body io.Reader, meta Meta, opts WriteOptions, cond Conditions) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	// Refused early (before reading the body) when it cannot fit; the
	// commit checks again.
	if _, err := s.Head(ctx, env, bucket, key); CodeOf(err) == CodeNoSuchKey {
		if err := s.checkObjectCount(env, 1); err != nil {
			return Object{}, err
		}
	} else if err != nil {
		return Object{}, err
	}
	w, err := s.writeData(env, body, opts, MaxPutSize)
	if err != nil {
		return Object{}, err
	}
	o := Object{
		Bucket: bucket, Key: key, Size: w.size, ETag: quote(hex.EncodeToString(w.md5)),
		Modified: s.cfg.Now().UTC(), ContentType: meta.ContentType, Headers: meta.Headers,
		Checksum: w.checksum, Files: []string{w.file}, Sizes: []int64{w.size},
	}
	err = s.update(func(t *txn) error {
		t.discard = append(t.discard, w.file)
		return s.commitObject(t, env, o, cond, 0)
	})
	return o, err
}

// checkObjectCount refuses early a write that would pass env's object
// quota (the commit checks again).
func (s *Store) checkObjectCount(env string, adding int64) error {
	l := s.cfg.Limits(env)
	if l.Objects > 0 {
		if u := s.Usage(env); u.Objects+adding > l.Objects {
			return quotaExceeded(env, "objects", u.Objects, adding, l.Objects)
		}
	}
	return nil
}

// commitObject writes o's record in a transaction: bucket still there,
// conditions hold against the current object, quota holds; the replaced
// object's files go once committed. pending is bytes already counted in
// usage that o now owns (the parts of a completed upload).
func (s *Store) commitObject(t *txn, env string, o Object, cond Conditions, pending int64) error {
	if !bucketExists(t.tx, env, o.Bucket) {
		return noSuchBucket(o.Bucket)
	}
	ob := t.tx.Bucket(bktObjects)
	k := objectKey(env, o.Bucket, o.Key)
	var old *Object
	if v := ob.Get(k); v != nil {
		old = new(Object)
		if err := json.Unmarshal(v, old); err != nil {
			return fmt.Errorf("objects: record of %s/%s: %w", o.Bucket, o.Key, err)
		}
	}
	if err := checkWrite(cond, old, o.Key); err != nil {
		return err
	}
	d := Usage{Bytes: o.Size - pending, Objects: 1}
	if old != nil {
		d.Bytes -= old.Size
		d.Objects = 0
	}
	l := s.cfg.Limits(env)
	u := t.usageIn(env)
	if l.Bytes > 0 && d.Bytes > 0 && u.Bytes+d.Bytes > l.Bytes {
		return quotaExceeded(env, "bytes", u.Bytes, d.Bytes, l.Bytes)
	}
	if l.Objects > 0 && d.Objects > 0 && u.Objects+d.Objects > l.Objects {
		return quotaExceeded(env, "objects", u.Objects, d.Objects, l.Objects)
	}
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := ob.Put(k, v); err != nil {
		return err
	}
	t.add(env, d)
	if old != nil {
		t.remove = append(t.remove, old.Files...)
	}
	return nil
}

// checkWrite applies a conditional write's headers to the current object
// (nil: none).
func checkWrite(cond Conditions, cur *Object, key string) error {
	if cond.IfNoneMatch != "" {
		if cond.IfNoneMatch != "*" {
			return errorf(CodeNotImplemented, "If-None-Match on a write takes only \"*\"")
		}
		if cur != nil {
			return errorf(CodePreconditionFailed, "At least one of the pre-conditions you specified did not hold: %s exists (If-None-Match: *)", key)
		}
	}
	if cond.IfMatch != "" {
		if cur == nil {
			return errorf(CodeNoSuchKey, "The specified key does not exist: %s (If-Match)", key)
		}
		if !etagMatches(cond.IfMatch, cur.ETag) {
			return errorf(CodePreconditionFailed, "At least one of the pre-conditions you specified did not hold: If-Match %s, the object's ETag is %s", cond.IfMatch, cur.ETag)
		}
	}
	return nil
}

// etagMatches compares a header's list of ETags (or "*") with etag.
func etagMatches(header, etag string) bool {
	for _, e := range strings.Split(header, ",") {
		e = strings.TrimSpace(e)
		e = strings.TrimPrefix(e, "W/")
		if e == "*" || trimQuotes(e) == trimQuotes(etag) {
			return true
		}
	}
	return false
}

// Delete removes key; a key that is not there is not an error (as S3).
func (s *Store) Delete(ctx context.Context, env, bucket, key string, cond Conditions) error {
	return s.update(func(t *txn) error {
		if !bucketExists(t.tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		return s.deleteIn(t, env, bucket, key, cond)
	})
}

func (s *Store) deleteIn(t *txn, env, bucket, key string, cond Conditions) error {
	ob := t.tx.Bucket(bktObjects)
	k := objectKey(env, bucket, key)
	v := ob.Get(k)
	if v == nil {
		if cond.IfMatch != "" {
			return errorf(CodeNoSuchKey, "The specified key does not exist: %s", key)
		}
		return nil
	}
	var o Object
	if err := json.Unmarshal(v, &o); err != nil {
		return err
	}
	if cond.IfMatch != "" && !etagMatches(cond.IfMatch, o.ETag) {
		return errorf(CodePreconditionFailed, "At least one of the pre-conditions you specified did not hold: If-Match %s", cond.IfMatch)
	}
	if err := ob.Delete(k); err != nil {
		return err
	}
	t.add(env, Usage{Bytes: -o.Size, Objects: -1})
	t.remove = append(t.remove, o.Files...)
	return nil
}

// DeleteResult is one key of DeleteMany.
type DeleteResult struct {
	Key string
	Err error
}

// DeleteMany removes keys in one transaction (S3's DeleteObjects).
func (s *Store) DeleteMany(ctx context.Context, env, bucket string, keys []string) ([]DeleteResult, error) {
	out := make([]DeleteResult, len(keys))
	err := s.update(func(t *txn) error {
		if !bucketExists(t.tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		for i, k := range keys {
			out[i] = DeleteResult{Key: k, Err: s.deleteIn(t, env, bucket, k, Conditions{})}
		}
		return nil
	})
	return out, err
}

// CopyOptions say how Copy makes the new object.
type CopyOptions struct {
	// ReplaceMeta takes Meta instead of the source's (S3's
	// x-amz-metadata-directive: REPLACE).
	ReplaceMeta bool
	Meta        Meta
	// Source conditions (x-amz-copy-source-if-*) and the destination's.
	Source Conditions
	Dest   Conditions
}

// Copy makes dstKey a copy of srcKey, sharing its data files through hard
// links (no bytes copied).
func (s *Store) Copy(ctx context.Context, env, srcBucket, srcKey, dstBucket, dstKey string, opts CopyOptions) (Object, error) {
	if err := ValidKey(dstKey); err != nil {
		return Object{}, err
	}
	for attempt := 0; ; attempt++ {
		src, err := s.Head(ctx, env, srcBucket, srcKey)
		if err != nil {
			return Object{}, err
		}
		if err := checkRead(opts.Source, src, false); err != nil {
			return Object{}, err
		}
		if srcBucket == dstBucket && srcKey == dstKey && !opts.ReplaceMeta {
			return Object{}, errorf(CodeInvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.")
		}
		if err := s.checkObjectCount(env, 0); err != nil {
			return Object{}, err
		}
		o := src
		o.Bucket, o.Key, o.Modified = dstBucket, dstKey, s.cfg.Now().UTC()
		if opts.ReplaceMeta {
			o.ContentType, o.Headers = opts.Meta.ContentType, opts.Meta.Headers
		}
		o.Files = make([]string, len(src.Files))
		linked, lost := []string{}, false
		for i, f := range src.Files {
			nf := newID()
			if err := os.Link(s.path(f), s.path(nf)); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					lost = true // replaced meanwhile: look again
					break
				}
				s.removeFiles(linked)
				return Object{}, fmt.Errorf("objects: copy: %w", err)
			}
			linked = append(linked, nf)
			o.Files[i] = nf
		}
		if lost {
			s.removeFiles(linked)
			if attempt < 3 {
				continue
			}
			return Object{}, errorf(CodeConditionalConflict, "the source changed during the copy; try again")
		}
		for _, dir := range uniqueDirs(s, linked) {
			if err := syncDir(dir); err != nil {
				s.removeFiles(linked)
				return Object{}, fmt.Errorf("objects: sync: %w", err)
			}
		}
		err = s.update(func(t *txn) error {
			t.discard = append(t.discard, linked...)
			return s.commitObject(t, env, o, opts.Dest, 0)
		})
		return o, err
	}
}

func uniqueDirs(s *Store, files []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		d := filepath.Dir(s.path(f))
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// getObject reads a record in tx.
func getObject(tx *bolt.Tx, env, bucket, key string) (*Object, error) {
	v := tx.Bucket(bktObjects).Get(objectKey(env, bucket, key))
	if v == nil {
		return nil, nil
	}
	var o Object
	if err := json.Unmarshal(v, &o); err != nil {
		return nil, err
	}
	o.Bucket, o.Key = bucket, key
	return &o, nil
}
