package registry

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	v1 "berth.dev/berth/api/v1"
)

// A blob over MaxBlobBytes is refused whichever way it comes, and nothing
// of it is stored; a chunk that would pass the limit is rolled back so the
// session can still finish within it.
func TestBlobSizeLimit(t *testing.T) {
	reg, srv := newTestRegistry(t, func(c *Config) { c.MaxBlobBytes = 1000 })
	big := randBytes(1001)
	d := digest.FromBytes(big)
	st, _, b := do(t, srv, "POST", "/v2/app/blobs/uploads/?digest="+d.String(), big)
	if st != http.StatusRequestEntityTooLarge || errCode(t, b) != codeSizeInvalid {
		t.Fatalf("monolithic push over the limit: %d %s", st, b)
	}
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}

	content := randBytes(1000)
	st, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	if st != http.StatusAccepted {
		t.Fatalf("start: %d", st)
	}
	loc := h.Get("Location")
	if st, _, b = do(t, srv, "PATCH", loc, content[:600], "Content-Range", "0-599"); st != http.StatusAccepted {
		t.Fatalf("first chunk: %d %s", st, b)
	}
	// Streamed without Content-Length: the limit is met while reading.
	req, _ := http.NewRequestWithContext(t.Context(), "PATCH", srv.URL+loc, struct{ *bytes.Reader }{bytes.NewReader(big[:500])})
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunk past the limit: %d", resp.StatusCode)
	}
	if st, h, _ = do(t, srv, "GET", loc, nil); st != http.StatusNoContent || h.Get("Range") != "0-599" {
		t.Fatalf("session after the refused chunk: %d Range %q", st, h.Get("Range"))
	}
	full := digest.FromBytes(content)
	if st, _, b = do(t, srv, "PUT", loc+"?digest="+full.String(), content[600:], "Content-Range", "600-999"); st != http.StatusCreated {
		t.Fatalf("finish within the limit: %d %s", st, b)
	}

	err = reg.PutBlob(t.Context(), "app", d.String(), int64(len(big)), bytes.NewReader(big))
	if v1.KindOf(err) != v1.ErrTooLarge {
		t.Fatalf("PutBlob over the limit: %v", err)
	}
}

// One credential holds at most MaxUploads sessions; others are not
// affected, and a finished or cancelled session frees its slot.
func TestUploadSessionsPerCredential(t *testing.T) {
	_, srv := newTestRegistry(t, func(c *Config) { c.MaxUploads = 2; c.Authorizer = nil })
	start := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v2/app/blobs/uploads/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	st, first := start("alice")
	if st != http.StatusAccepted {
		t.Fatalf("first session: %d", st)
	}
	if st, _ = start("alice"); st != http.StatusAccepted {
		t.Fatalf("second session: %d", st)
	}
	if st, _ = start("alice"); st != http.StatusTooManyRequests {
		t.Fatalf("third session of one token: %d, want 429", st)
	}
	if st, _ = start("bob"); st != http.StatusAccepted {
		t.Fatalf("another token: %d", st)
	}
	if st, _, _ := do(t, srv, "DELETE", first, nil); st != http.StatusNoContent {
		t.Fatalf("cancel: %d", st)
	}
	if st, _ = start("alice"); st != http.StatusAccepted {
		t.Fatalf("after a cancel: %d", st)
	}
}

// Sessions nobody touches for UploadTTL are dropped by the janitor (Run),
// their bytes and their slot with them; one in use is kept. The clock is
// the registry's, so the test moves it instead of waiting.
func TestAbandonedUploadsExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reg, srv := newTestRegistry(t, func(c *Config) {
		c.Now = clock
		c.UploadTTL = 20 * time.Millisecond // the janitor looks every 5ms of real time
		c.MaxUploads = 2
	})
	_, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	abandoned := h.Get("Location")
	do(t, srv, "PATCH", abandoned, randBytes(100), "Content-Range", "0-99")
	_, h, _ = do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	busy := h.Get("Location")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	defer func() { cancel(); <-done }()

	advance(15 * time.Millisecond)
	if st, _, _ := do(t, srv, "GET", busy, nil); st != http.StatusNoContent { // touches it
		t.Fatalf("busy session: %d", st)
	}
	advance(10 * time.Millisecond) // abandoned: idle 25ms; busy: 10ms
	// Polled without a request: a GET would touch the session.
	waitFor(t, "the abandoned session to be dropped", func() bool {
		_, open := reg.uploads.Load(path.Base(abandoned))
		return !open
	})
	if st, _, _ := do(t, srv, "GET", abandoned, nil); st != http.StatusNotFound {
		t.Fatalf("dropped session still answers: %d", st)
	}
	if st, _, _ := do(t, srv, "GET", busy, nil); st != http.StatusNoContent {
		t.Fatalf("session in use was dropped: %d", st)
	}
	ents, _ := os.ReadDir(filepath.Join(reg.dir, dirUploads))
	if len(ents) != 1 {
		t.Fatalf("upload files left: %v", ents)
	}
	// Its slot is free again.
	if st, _, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil); st != http.StatusAccepted {
		t.Fatalf("new session after expiry: %d", st)
	}
}

// Repositories of one quota group share its limit; content the group holds
// already is free; a delete gives room back; repositories outside any
// group are not counted.
func TestRegistryQuota(t *testing.T) {
	quota := func(_ context.Context, repo string) (Quota, error) {
		if team, _, ok := strings.Cut(repo, "/"); ok && team == "team" {
			return Quota{Group: "team", Limit: 10_000}, nil
		}
		return Quota{}, nil
	}
	reg, srv := newTestRegistry(t, func(c *Config) { c.Quota = quota })
	ctx := t.Context()
	first := randBytes(6000)
	d1 := pushBlob(t, srv, "team/a", first)

	second := randBytes(6000)
	d2 := digest.FromBytes(second)
	st, _, b := do(t, srv, "POST", "/v2/team/b/blobs/uploads/?digest="+d2.String(), second)
	if st != http.StatusForbidden || errCode(t, b) != codeDenied || !strings.Contains(string(b), "quota") {
		t.Fatalf("push over the quota: %d %s", st, b)
	}
	// Chunked, the refusal comes with the chunk that would pass it.
	_, h, _ := do(t, srv, "POST", "/v2/team/b/blobs/uploads/", nil)
	if st, _, b = do(t, srv, "PATCH", h.Get("Location"), second, "Content-Range", "0-5999"); st != http.StatusForbidden {
		t.Fatalf("chunk over the quota: %d %s", st, b)
	}
	do(t, srv, "DELETE", h.Get("Location"), nil)
	if err := reg.PutBlob(ctx, "team/b", d2.String(), int64(len(second)), bytes.NewReader(second)); v1.KindOf(err) != v1.ErrForbidden {
		t.Fatalf("PutBlob over the quota: %v", err)
	}

	// Already in the group: no cost, pushed or mounted.
	pushBlob(t, srv, "team/b", first)
	if st, _, _ := do(t, srv, "POST", "/v2/team/c/blobs/uploads/?mount="+d1.String()+"&from=team/a", nil); st != http.StatusCreated {
		t.Fatalf("mount within the group: %d", st)
	}
	// Outside the group: not counted.
	pushBlob(t, srv, "other/x", second)
	// A manifest counts too: the group holds 6000, this one is small.
	cfg := pushBlob(t, srv, "team/a", []byte("{}"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":6000}]}`, cfg, d1)
	st, h, b = do(t, srv, "PUT", "/v2/team/a/manifests/v1", []byte(m), "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if st != http.StatusCreated {
		t.Fatalf("manifest within the quota: %d %s", st, b)
	}
	md := h.Get("Docker-Content-Digest")
	// Copying into another repository of the group costs nothing more.
	if _, err := reg.Copy(ctx, "team/a", "v1", "team/d", "v1"); err != nil {
		t.Fatalf("Copy within the group: %v", err)
	}

	// Deleting the manifests and every link to the first blob frees its
	// 6000 bytes.
	for _, repo := range []string{"team/a", "team/d"} {
		if err := reg.Delete(ctx, repo, md); err != nil {
			t.Fatal(err)
		}
	}
	for _, repo := range []string{"team/a", "team/b", "team/c", "team/d"} {
		if st, _, _ := do(t, srv, "DELETE", "/v2/"+repo+"/blobs/"+d1.String(), nil); st != http.StatusAccepted {
			t.Fatalf("delete blob link in %s: %d", repo, st)
		}
	}
	pushBlob(t, srv, "team/b", second)
}

// recordingFS logs the directories made and synced, in order.
type recordingFS struct {
	osFS
	mu  sync.Mutex
	ops []string
}

func (f *recordingFS) Mkdir(name string, perm os.FileMode) error {
	err := f.osFS.Mkdir(name, perm)
	if err == nil {
		f.mu.Lock()
		f.ops = append(f.ops, "mkdir "+name)
		f.mu.Unlock()
	}
	return err
}

func (f *recordingFS) SyncDir(name string) error {
	f.mu.Lock()
	f.ops = append(f.ops, "sync "+name)
	f.mu.Unlock()
	return f.osFS.SyncDir(name)
}

// A first push makes the blob's fan-out directory and the repository's
// whole tree; each new directory is synced into its parent after it is
// made, so a power cut after the push was acknowledged loses none of it.
func TestFirstPushSyncsNewDirectories(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	rec := &recordingFS{}
	reg.fs = rec
	pushImage(t, srv, "team/app", "v1")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	made := 0
	for i, op := range rec.ops {
		dir, ok := strings.CutPrefix(op, "mkdir ")
		if !ok {
			continue
		}
		made++
		synced := false
		for _, later := range rec.ops[i+1:] {
			if later == "sync "+filepath.Dir(dir) {
				synced = true
				break
			}
		}
		if !synced {
			t.Errorf("%s was made but its parent never synced after", dir)
		}
	}
	// blobs/sha256/XX for config, layer and manifest (some may share),
	// and repositories/team, team/app, _layers, _layers/sha256,
	// _manifests, _manifests/sha256, _tags.
	if made < 8 {
		t.Fatalf("only %d directories made: %v", made, rec.ops)
	}
	for _, p := range []string{filepath.Join(reg.dir, dirRepos, "team"), filepath.Join(reg.dir, dirRepos, "team", "app", dirTags)} {
		if !strings.Contains(strings.Join(rec.ops, "\n"), "mkdir "+p) {
			t.Errorf("%s not made through the seam: %v", p, rec.ops)
		}
	}
}

// The Go API keeps the HTTP API's promises: content is checked before it
// is visible, a manifest must name what its repository holds, and a copy
// across repositories brings an index's manifests along.
func TestGoAPI(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	ctx := t.Context()
	content := randBytes(2048)
	d := digest.FromBytes(content)
	wrong := digest.FromBytes([]byte("something else"))
	if err := reg.PutBlob(ctx, "app", wrong.String(), int64(len(content)), bytes.NewReader(content)); !v1.IsInvalid(err) {
		t.Fatalf("PutBlob with the wrong digest: %v", err)
	}
	if err := reg.PutBlob(ctx, "app", d.String(), int64(len(content))+1, bytes.NewReader(content)); !v1.IsInvalid(err) {
		t.Fatalf("PutBlob of a short body: %v", err)
	}
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("refused blobs stored: %v", got)
	}

	cfg := []byte("{}")
	cd := digest.FromBytes(cfg)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":2048}]}`, cd, d)
	if _, err := reg.PutManifest(ctx, "app", "v1", "application/vnd.oci.image.manifest.v1+json", []byte(m)); !v1.IsInvalid(err) {
		t.Fatalf("manifest naming blobs the repository lacks: %v", err)
	}
	for _, b := range [][]byte{cfg, content} {
		if err := reg.PutBlob(ctx, "app", digest.FromBytes(b).String(), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	md, err := reg.PutManifest(ctx, "app", "", "application/vnd.oci.image.manifest.v1+json", []byte(m))
	if err != nil {
		t.Fatal(err)
	}
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, md, len(m))
	id, err := reg.PutManifest(ctx, "app", "multi", "application/vnd.oci.image.index.v1+json", []byte(idx))
	if err != nil {
		t.Fatal(err)
	}
	if img, err := reg.Resolve(ctx, "app", "multi"); err != nil || img.Digest != id || img.Tag != "multi" {
		t.Fatalf("Resolve = %+v, %v", img, err)
	}
	if _, err := reg.Resolve(ctx, "app", "nope"); !v1.IsNotFound(err) {
		t.Fatalf("Resolve of a missing tag: %v", err)
	}

	if _, err := reg.Copy(ctx, "app", "multi", "other/app", "v1"); err != nil {
		t.Fatal(err)
	}
	// Pullable in full from the copy, over HTTP.
	for _, p := range []string{"manifests/v1", "manifests/" + md, "blobs/" + d.String(), "blobs/" + cd.String()} {
		if st, _, b := do(t, srv, "GET", "/v2/other/app/"+p, nil); st != http.StatusOK {
			t.Fatalf("GET %s from the copy: %d %s", p, st, b)
		}
	}
}
