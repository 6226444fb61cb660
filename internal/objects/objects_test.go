package objects_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/objects"
)

func open(t *testing.T, dir string, cfg objects.Config) *objects.Store {
	t.Helper()
	cfg.Dir = dir
	s, err := objects.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func read(t *testing.T, s *objects.Store, env, bucket, key string) string {
	t.Helper()
	o, r, err := s.Get(context.Background(), env, bucket, key, objects.Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r.Section(0, o.Size))
	return string(b)
}

func dataFiles(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(filepath.Join(dir, "data"), func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func put(s *objects.Store, env, bucket, key, body string) (objects.Object, error) {
	return s.Put(context.Background(), env, bucket, key, strings.NewReader(body), objects.Meta{ContentType: "text/plain"},
		objects.WriteOptions{Size: int64(len(body))}, objects.Conditions{})
}

// Each environment has its own buckets: the same name in two environments
// is two buckets, and deleting an environment's store leaves the other's.
func TestEnvironmentsApart(t *testing.T) {
	s := open(t, t.TempDir(), objects.Config{})
	ctx := context.Background()
	for _, env := range []string{"dev", "prod"} {
		if err := s.CreateBucket(ctx, env, "data"); err != nil {
			t.Fatal(err)
		}
		if _, err := put(s, env, "data", "k", "value of "+env); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(t, s, "dev", "data", "k"); got != "value of dev" {
		t.Fatalf("dev read %q", got)
	}
	if err := s.DeleteEnvironment(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HeadBucket(ctx, "dev", "data"); objects.CodeOf(err) != objects.CodeNoSuchBucket {
		t.Fatalf("dev's bucket after DeleteEnvironment: %v", err)
	}
	if got := read(t, s, "prod", "data", "k"); got != "value of prod" {
		t.Fatalf("prod read %q", got)
	}
	if u := s.Usage("dev"); u != (objects.Usage{}) {
		t.Fatalf("dev usage = %+v", u)
	}
}

// A write that never committed (a crash between the data file and the
// record) leaves a file that Open removes; the committed objects stay.
func TestOpenRemovesUncommittedFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, objects.Config{})
	ctx := context.Background()
	s.CreateBucket(ctx, "dev", "bkt")
	if _, err := put(s, "dev", "bkt", "kept", "acknowledged"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.WriteFile(filepath.Join(dir, "data", "ab", "ab0123"), []byte("orphan"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "put-123"), []byte("half an upload"), 0o600)
	s = open(t, dir, objects.Config{})
	if n := dataFiles(t, dir); n != 1 {
		t.Fatalf("%d data files after reopening, want 1", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp holds %d files", len(ents))
	}
	if got := read(t, s, "dev", "bkt", "kept"); got != "acknowledged" {
		t.Fatalf("read %q", got)
	}
}

// A body that fails half way (a client gone, a signature that breaks)
// leaves neither an object nor a file.
func TestFailedBodyLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, objects.Config{})
	ctx := context.Background()
	s.CreateBucket(ctx, "dev", "bkt")
	put(s, "dev", "bkt", "k", "old")
	broken := io.MultiReader(strings.NewReader(strings.Repeat("x", 1<<20)), errReader{errors.New("connection reset")})
	_, err := s.Put(ctx, "dev", "bkt", "k", broken, objects.Meta{}, objects.WriteOptions{Size: 1 << 30}, objects.Conditions{})
	if err == nil {
		t.Fatal("a broken body was stored")
	}
	if got := read(t, s, "dev", "bkt", "k"); got != "old" {
		t.Fatalf("after a failed overwrite: %q", got)
	}
	if n := dataFiles(t, dir); n != 1 {
		t.Fatalf("%d data files, want 1", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("tmp holds %d files", len(ents))
	}
	if u := s.Usage("dev"); u.Bytes != 3 || u.Objects != 1 {
		t.Fatalf("usage = %+v", u)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Uploads left incomplete past UploadTTL are aborted, their parts removed
// and their bytes no longer counted.
func TestStaleUploadsAborted(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := open(t, dir, objects.Config{Now: func() time.Time { return now }, UploadTTL: time.Hour})
	ctx := context.Background()
	s.CreateBucket(ctx, "dev", "bkt")
	id, err := s.CreateUpload(ctx, "dev", "bkt", "big", objects.Meta{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPart(ctx, "dev", "bkt", "big", id, 1, strings.NewReader("part"), objects.WriteOptions{Size: 4}); err != nil {
		t.Fatal(err)
	}
	if u := s.Usage("dev"); u.Bytes != 4 || u.Objects != 0 {
		t.Fatalf("usage with a part = %+v", u)
	}
	if n, _ := s.AbortStaleUploads(ctx); n != 0 {
		t.Fatalf("aborted %d fresh uploads", n)
	}
	now = now.Add(2 * time.Hour)
	if n, err := s.AbortStaleUploads(ctx); n != 1 || err != nil {
		t.Fatalf("aborted %d, %v", n, err)
	}
	if _, _, err := s.ListParts(ctx, "dev", "bkt", "big", id); objects.CodeOf(err) != objects.CodeNoSuchUpload {
		t.Fatalf("list parts of an aborted upload: %v", err)
	}
	if n := dataFiles(t, dir); n != 0 {
		t.Fatalf("%d data files left", n)
	}
	if u := s.Usage("dev"); u.Bytes != 0 {
		t.Fatalf("usage = %+v", u)
	}
}

// Concurrent writers of one key: every read sees one writer's whole
// value, never a mix, and the usage counts one object.
func TestConcurrentOverwrites(t *testing.T) {
	s := open(t, t.TempDir(), objects.Config{})
	ctx := context.Background()
	s.CreateBucket(ctx, "dev", "bkt")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				v := strings.Repeat(fmt.Sprint(i), 1000+j)
				if _, err := put(s, "dev", "bkt", "k", v); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			o, r, err := s.Get(ctx, "dev", "bkt", "k", objects.Conditions{})
			if objects.CodeOf(err) == objects.CodeNoSuchKey {
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(r.Section(0, o.Size))
			r.Close()
			if len(b) == 0 || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) {
				t.Errorf("a read mixed writes: %q…", b[:min(len(b), 20)])
			}
		}
	}()
	wg.Wait()
	if u := s.Usage("dev"); u.Objects != 1 {
		t.Fatalf("usage = %+v", u)
	}
}

func TestListDelimiterPages(t *testing.T) {
	s := open(t, t.TempDir(), objects.Config{})
	ctx := context.Background()
	s.CreateBucket(ctx, "dev", "bkt")
	for _, k := range []string{"a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d"} {
		put(s, "dev", "bkt", k, "v")
	}
	var got []string
	after := ""
	for {
		res, err := s.List(ctx, "dev", "bkt", objects.ListOptions{Delimiter: "/", After: after, Max: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Objects {
			got = append(got, o.Key)
		}
		got = append(got, res.CommonPrefixes...)
		if !res.Truncated {
			break
		}
		after = res.Next
	}
	// Pages of two: [a/ b] [c/ d].
	if strings.Join(got, " ") != "b a/ d c/" {
		t.Fatalf("pages = %q", strings.Join(got, " "))
	}
	res, _ := s.List(ctx, "dev", "bkt", objects.ListOptions{Prefix: "c/", Delimiter: "/"})
	if len(res.Objects) != 1 || res.Objects[0].Key != "c/y" || strings.Join(res.CommonPrefixes, ",") != "c/x/" {
		t.Fatalf("prefix c/: %+v", res)
	}
}
