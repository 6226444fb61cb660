package objects

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Upload is a multipart upload in progress.
type Upload struct {
	ID        string
	Bucket    string
	Key       string
	Created   time.Time
	Algorithm string
}

// CreateUpload starts a multipart upload of key; its parts stay invisible
// until CompleteUpload.
func (s *Store) CreateUpload(ctx context.Context, env, bucket, key string, meta Meta, algorithm string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	if algorithm != "" && !ValidChecksumAlgorithm(algorithm) {
		return "", errorf(CodeInvalidRequest, "Checksum algorithm %q is not supported", algorithm)
	}
	id := newID()
	err := s.update(func(t *txn) error {
		if !bucketExists(t.tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		v, _ := json.Marshal(uploadRec{Env: env, Bucket: bucket, Key: key, Created: s.cfg.Now().UTC(),
			ContentType: meta.ContentType, Headers: meta.Headers, Algorithm: algorithm})
		return t.tx.Bucket(bktUploads).Put([]byte(id), v)
	})
	return id, err
}

func noSuchUpload(id string) error {
	return errorf(CodeNoSuchUpload, "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed: %s", id)
}

// upload reads an upload's record, checking it is of env/bucket/key.
func upload(tx *bolt.Tx, env, bucket, key, id string) (*uploadRec, error) {
	v := tx.Bucket(bktUploads).Get([]byte(id))
	if v == nil {
		return nil, noSuchUpload(id)
	}
	var u uploadRec
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, err
	}
	if u.Env != env || u.Bucket != bucket || u.Key != key {
		return nil, noSuchUpload(id)
	}
	return &u, nil
}

// PutPart stores part n (1..10000) of an upload, replacing an earlier
// upload of the same number.
func (s *Store) PutPart(ctx context.Context, env, bucket, key, id string, n int, body io.Reader, opts WriteOptions) (Part, error) {
	if n < 1 || n > MaxParts {
		return Part{}, errorf(CodeInvalidArgument, "Part number must be an integer between 1 and %d, inclusive", MaxParts)
	}
	var u *uploadRec
	if err := s.db.View(func(tx *bolt.Tx) (err error) {
		u, err = upload(tx, env, bucket, key, id)
		return err
	}); err != nil {
		return Part{}, err
	}
	if opts.ChecksumAlgorithm == "" {
		opts.ChecksumAlgorithm = u.Algorithm
	}
	w, err := s.writeData(env, body, opts, MaxPutSize)
	if err != nil {
		return Part{}, err
	}
	p := Part{Number: n, Size: w.size, ETag: quote(hex.EncodeToString(w.md5)), Modified: s.cfg.Now().UTC(), Checksum: w.checksum, File: w.file}
	err = s.update(func(t *txn) error {
		t.discard = append(t.discard, w.file)
		if _, err := upload(t.tx, env, bucket, key, id); err != nil {
			return err
		}
		pb := t.tx.Bucket(bktParts)
		d := Usage{Bytes: p.Size}
		if v := pb.Get(partKey(id, n)); v != nil {
			var old Part
			json.Unmarshal(v, &old)
			d.Bytes -= old.Size
			t.remove = append(t.remove, old.File)
		}
		l := s.cfg.Limits(env)
		if cur := t.usageIn(env); l.Bytes > 0 && d.Bytes > 0 && cur.Bytes+d.Bytes > l.Bytes {
			return quotaExceeded(env, "bytes", cur.Bytes, d.Bytes, l.Bytes)
		}
		v, _ := json.Marshal(p)
		t.add(env, d)
		return pb.Put(partKey(id, n), v)
	})
	return p, err
}

// parts reads an upload's parts in number order.
func parts(tx *bolt.Tx, id string) ([]Part, error) {
	var out []Part
	prefix := append([]byte(id), 0)
	c := tx.Bucket(bktParts).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var p Part
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// CompletePart names a part to assemble, as the client lists it.
type CompletePart struct {
	Number int
	ETag   string
	// Checksum is the part's checksum the client sent ("" when none).
	Checksum string
}

// CompleteUpload makes the object from the listed parts (ascending, each
// but the last at least MinPartSize) in one transaction: the object
// appears whole or not at all. Parts not listed are removed.
func (s *Store) CompleteUpload(ctx context.Context, env, bucket, key, id string, list []CompletePart, cond Conditions) (Object, error) {
	if len(list) == 0 {
		return Object{}, errorf(CodeMalformedXML, "You must specify at least one part")
	}
	for i := 1; i < len(list); i++ {
		if list[i].Number <= list[i-1].Number {
			return Object{}, errorf(CodeInvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number.")
		}
	}
	var o Object
	err := s.update(func(t *txn) error {
		u, err := upload(t.tx, env, bucket, key, id)
		if err != nil {
			return err
		}
		have, err := parts(t.tx, id)
		if err != nil {
			return err
		}
		byNum := map[int]Part{}
		for _, p := range have {
			byNum[p.Number] = p
		}
		o = Object{Bucket: bucket, Key: key, Modified: s.cfg.Now().UTC(), ContentType: u.ContentType, Headers: u.Headers, Parts: len(list)}
		md5s := md5.New()
		var sums hash.Hash
		if u.Algorithm != "" {
			sums = checksumAlgorithms[u.Algorithm]()
		}
		used := map[int]bool{}
		var size int64
		for i, cp := range list {
			p, ok := byNum[cp.Number]
			if !ok || trimQuotes(cp.ETag) != trimQuotes(p.ETag) {
				return errorf(CodeInvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag (part %d).", cp.Number)
			}
			if cp.Checksum != "" && p.Checksum.Value != "" && cp.Checksum != p.Checksum.Value {
				return errorf(CodeInvalidPart, "The checksum of part %d does not match the uploaded part's.", cp.Number)
			}
			if i < len(list)-1 && p.Size < s.cfg.MinPartSize {
				return errorf(CodeEntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size: part %d is %d bytes, the minimum is %d.", p.Number, p.Size, s.cfg.MinPartSize)
			}
			raw, _ := hex.DecodeString(trimQuotes(p.ETag))
			md5s.Write(raw)
			if sums != nil {
				b, _ := base64.StdEncoding.DecodeString(p.Checksum.Value)
				sums.Write(b)
			}
			o.Files = append(o.Files, p.File)
			o.Sizes = append(o.Sizes, p.Size)
			size += p.Size
			used[p.Number] = true
		}
		if size > MaxObjectSize {
			return errorf(CodeEntityTooLarge, "the object would be %d bytes, more than %d", size, int64(MaxObjectSize))
		}
		o.Size = size
		o.ETag = quote(fmt.Sprintf("%s-%d", hex.EncodeToString(md5s.Sum(nil)), len(list)))
		if sums != nil {
			o.Checksum = Checksum{Algorithm: u.Algorithm, Value: fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(sums.Sum(nil)), len(list))}
		}
		var pending, unused int64
		for _, p := range have {
			if used[p.Number] {
				pending += p.Size
				continue
			}
			unused += p.Size
			t.remove = append(t.remove, p.File)
		}
		if err := s.commitObject(t, env, o, cond, pending); err != nil {
			return err
		}
		t.add(env, Usage{Bytes: -unused})
		return s.deleteUploadRecords(t, id)
	})
	return o, err
}

func (s *Store) deleteUploadRecords(t *txn, id string) error {
	prefix := append([]byte(id), 0)
	c := t.tx.Bucket(bktParts).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return t.tx.Bucket(bktUploads).Delete([]byte(id))
}

// dropUpload removes an upload and its parts' files (and their bytes from
// the usage).
func (s *Store) dropUpload(t *txn, id string) error {
	v := t.tx.Bucket(bktUploads).Get([]byte(id))
	if v == nil {
		return nil
	}
	var u uploadRec
	json.Unmarshal(v, &u)
	ps, err := parts(t.tx, id)
	if err != nil {
		return err
	}
	var size int64
	for _, p := range ps {
		size += p.Size
		t.remove = append(t.remove, p.File)
	}
	t.add(u.Env, Usage{Bytes: -size})
	return s.deleteUploadRecords(t, id)
}

// AbortUpload removes an upload and its parts.
func (s *Store) AbortUpload(ctx context.Context, env, bucket, key, id string) error {
	return s.update(func(t *txn) error {
		if _, err := upload(t.tx, env, bucket, key, id); err != nil {
			return err
		}
		return s.dropUpload(t, id)
	})
}

// AbortStaleUploads aborts the uploads started more than UploadTTL ago.
func (s *Store) AbortStaleUploads(ctx context.Context) (int, error) {
	cutoff := s.cfg.Now().Add(-s.cfg.UploadTTL)
	var stale []string
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktUploads).ForEach(func(k, v []byte) error {
			var u uploadRec
			if json.Unmarshal(v, &u) == nil && u.Created.Before(cutoff) {
				stale = append(stale, string(k))
			}
			return nil
		})
	})
	if len(stale) == 0 {
		return 0, nil
	}
	err := s.update(func(t *txn) error {
		for _, id := range stale {
			if err := s.dropUpload(t, id); err != nil {
				return err
			}
		}
		return nil
	})
	return len(stale), err
}

// ListUploads lists bucket's uploads in progress, by key then start.
func (s *Store) ListUploads(ctx context.Context, env, bucket, prefix string) ([]Upload, error) {
	var out []Upload
	err := s.db.View(func(tx *bolt.Tx) error {
		if !bucketExists(tx, env, bucket) {
			return noSuchBucket(bucket)
		}
		return tx.Bucket(bktUploads).ForEach(func(k, v []byte) error {
			var u uploadRec
			if json.Unmarshal(v, &u) == nil && u.Env == env && u.Bucket == bucket && strings.HasPrefix(u.Key, prefix) {
				out = append(out, Upload{ID: string(k), Bucket: bucket, Key: u.Key, Created: u.Created, Algorithm: u.Algorithm})
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out, err
}

// ListParts lists an upload's parts.
func (s *Store) ListParts(ctx context.Context, env, bucket, key, id string) (Upload, []Part, error) {
	var out []Part
	var up Upload
	err := s.db.View(func(tx *bolt.Tx) error {
		u, err := upload(tx, env, bucket, key, id)
		if err != nil {
			return err
		}
		up = Upload{ID: id, Bucket: bucket, Key: key, Created: u.Created, Algorithm: u.Algorithm}
		out, err = parts(tx, id)
		return err
	})
	return up, out, err
}
