package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// do sends one request with the test token and returns status, headers and
// body.
func do(t *testing.T, srv *httptest.Server, method, path string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("not an error body: %q", body)
	}
	return eb.Errors[0].Code
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// pushBlob pushes content monolithically and fails the test unless it is
// created.
func pushBlob(t *testing.T, srv *httptest.Server, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	st, _, b := do(t, srv, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content)
	if st != http.StatusCreated {
		t.Fatalf("push blob: %d %s", st, b)
	}
	return d
}

// pushImage pushes a config, one layer and a manifest tagged tag, and
// returns the manifest's digest and the blob digests.
func pushImage(t *testing.T, srv *httptest.Server, repo, tag string) (digest.Digest, []digest.Digest) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := randBytes(4096)
	cd, ld := pushBlob(t, srv, repo, cfg), pushBlob(t, srv, repo, layer)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(layer))}},
	}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	st, h, b := do(t, srv, "PUT", "/v2/"+repo+"/manifests/"+tag, mb, "Content-Type", ocispec.MediaTypeImageManifest)
	if st != http.StatusCreated {
		t.Fatalf("push manifest: %d %s", st, b)
	}
	return digest.Digest(h.Get("Docker-Content-Digest")), []digest.Digest{cd, ld}
}

// storedBlobs lists every file under blobs/, temp files included: what a
// reader of the store could see.
func storedBlobs(t *testing.T, reg *Registry) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(filepath.Join(reg.dir, dirBlobs), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWrongDigestIsRejectedAndNothingStored(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	content := randBytes(2048)
	wrong := digest.FromBytes([]byte("something else"))

	// Monolithic.
	st, _, b := do(t, srv, "POST", "/v2/app/blobs/uploads/?digest="+wrong.String(), content)
	if st != http.StatusBadRequest || errCode(t, b) != codeDigestInvalid {
		t.Fatalf("monolithic with wrong digest: %d %s", st, b)
	}
	// POST then PUT.
	st, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	if st != http.StatusAccepted {
		t.Fatalf("start upload: %d", st)
	}
	st, _, b = do(t, srv, "PUT", h.Get("Location")+"?digest="+wrong.String(), content)
	if st != http.StatusBadRequest || errCode(t, b) != codeDigestInvalid {
		t.Fatalf("PUT with wrong digest: %d %s", st, b)
	}
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("store holds %v after rejected pushes", got)
	}
	for _, d := range []digest.Digest{wrong, digest.FromBytes(content)} {
		if st, _, _ := do(t, srv, "HEAD", "/v2/app/blobs/"+d.String(), nil); st != http.StatusNotFound {
			t.Fatalf("HEAD %s after rejected push: %d", d, st)
		}
	}
	// A manifest whose body does not match the digest it is pushed by.
	st, _, b = do(t, srv, "PUT", "/v2/app/manifests/"+wrong.String(), []byte(`{"schemaVersion":2}`), "Content-Type", ocispec.MediaTypeImageIndex)
	if st != http.StatusBadRequest || errCode(t, b) != codeDigestInvalid {
		t.Fatalf("manifest with wrong digest: %d %s", st, b)
	}
}

// rawRequest sends a request whose body is shorter than its Content-Length
// and hangs up, as a client that dies mid-upload does.
func rawRequest(t *testing.T, srv *httptest.Server, method, path string, declared int, body []byte, hdr ...string) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n", method, path, testToken, declared)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(w, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	fmt.Fprintf(w, "\r\n")
	_, _ = w.Write(body)
	_ = w.Flush()
	_ = conn.Close()
}

func TestTruncatedUploadIsNotCommitted(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	content := randBytes(64 << 10)
	d := digest.FromBytes(content)

	// Monolithic push cut short: nothing stored, and the temp file goes.
	rawRequest(t, srv, "POST", "/v2/app/blobs/uploads/?digest="+d.String(), len(content), content[:1000])
	waitFor(t, "the truncated upload's temp file to go", func() bool {
		ents, _ := os.ReadDir(filepath.Join(reg.dir, dirUploads))
		return len(ents) == 0
	})
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("store holds %v after a truncated push", got)
	}
	if st, _, _ := do(t, srv, "HEAD", "/v2/app/blobs/"+d.String(), nil); st != http.StatusNotFound {
		t.Fatalf("HEAD after truncated push: %d", st)
	}

	// A chunk cut short is rolled back: the session stays where it was, so
	// the client can resend the chunk from its start and finish.
	st, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	if st != http.StatusAccepted {
		t.Fatalf("start upload: %d", st)
	}
	loc := h.Get("Location")
	rawRequest(t, srv, "PATCH", loc, len(content), content[:1000], "Content-Range", fmt.Sprintf("0-%d", len(content)-1))
	st, _, b := do(t, srv, "PATCH", loc, content, "Content-Range", fmt.Sprintf("0-%d", len(content)-1))
	if st != http.StatusAccepted {
		t.Fatalf("resending the whole chunk after a truncated one: %d %s", st, b)
	}
	st, _, b = do(t, srv, "PUT", loc+"?digest="+d.String(), nil)
	if st != http.StatusCreated {
		t.Fatalf("finishing the upload: %d %s", st, b)
	}
	st, _, got := do(t, srv, "GET", "/v2/app/blobs/"+d.String(), nil)
	if st != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("GET after resumed upload: %d, %d bytes", st, len(got))
	}
}

func TestManifestNamingMissingBlobIsRejected(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	cfg := []byte(`{}`)
	cd := pushBlob(t, srv, "app", cfg)
	missing := digest.FromBytes([]byte("never pushed"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[{"mediaType":%q,"digest":%q,"size":12}]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, cd, ocispec.MediaTypeImageLayer, missing)
	st, _, b := do(t, srv, "PUT", "/v2/app/manifests/v1", []byte(m), "Content-Type", ocispec.MediaTypeImageManifest)
	if st != http.StatusBadRequest || errCode(t, b) != codeManifestBlobUnknown || !strings.Contains(string(b), missing.String()) {
		t.Fatalf("manifest with a missing layer: %d %s", st, b)
	}
	if st, _, _ := do(t, srv, "GET", "/v2/app/manifests/v1", nil); st != http.StatusNotFound {
		t.Fatalf("tag exists after a rejected manifest: %d", st)
	}
	// A blob pushed to another repository does not count.
	other := pushBlob(t, srv, "other", []byte("layer in another repo"))
	m = strings.Replace(m, missing.String(), other.String(), 1)
	st, _, b = do(t, srv, "PUT", "/v2/app/manifests/v1", []byte(m), "Content-Type", ocispec.MediaTypeImageManifest)
	if st != http.StatusBadRequest || errCode(t, b) != codeManifestBlobUnknown {
		t.Fatalf("manifest naming another repository's blob: %d %s", st, b)
	}
	// An index naming a manifest the repository lacks.
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":10}]}`,
		ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, missing)
	st, _, b = do(t, srv, "PUT", "/v2/app/manifests/idx", []byte(idx), "Content-Type", ocispec.MediaTypeImageIndex)
	if st != http.StatusBadRequest || errCode(t, b) != codeManifestBlobUnknown {
		t.Fatalf("index naming a missing manifest: %d %s", st, b)
	}
}

func TestInvalidRepositoryName(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	for _, p := range []string{
		"/v2/UPPER/tags/list",
		"/v2/a..b/manifests/latest",
		"/v2/-app/blobs/uploads/",
		"/v2/app//x/manifests/latest",
		"/v2/" + strings.Repeat("a", 256) + "/tags/list",
	} {
		st, _, b := do(t, srv, "GET", p, nil)
		if st != http.StatusBadRequest || errCode(t, b) != codeNameInvalid {
			t.Errorf("GET %s: %d %s, want 400 NAME_INVALID", p, st, b)
		}
	}
}

func TestOutOfOrderChunk(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	content := randBytes(3000)
	st, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	if st != http.StatusAccepted {
		t.Fatalf("start: %d", st)
	}
	loc := h.Get("Location")
	if st, h, _ = do(t, srv, "PATCH", loc, content[:1000], "Content-Range", "0-999"); st != http.StatusAccepted || h.Get("Range") != "0-999" {
		t.Fatalf("first chunk: %d Range %q", st, h.Get("Range"))
	}
	st, h, b := do(t, srv, "PATCH", loc, content[2000:], "Content-Range", "2000-2999")
	if st != http.StatusRequestedRangeNotSatisfiable || h.Get("Range") != "0-999" || h.Get("Location") == "" {
		t.Fatalf("skipping ahead: %d Range %q %s", st, h.Get("Range"), b)
	}
	if st, h, _ = do(t, srv, "GET", loc, nil); st != http.StatusNoContent || h.Get("Range") != "0-999" {
		t.Fatalf("status after refused chunk: %d Range %q", st, h.Get("Range"))
	}
	if st, _, _ = do(t, srv, "PATCH", loc, content[1000:2000], "Content-Range", "1000-1999"); st != http.StatusAccepted {
		t.Fatalf("second chunk: %d", st)
	}
	d := digest.FromBytes(content)
	if st, _, b = do(t, srv, "PUT", loc+"?digest="+d.String(), content[2000:], "Content-Range", "2000-2999"); st != http.StatusCreated {
		t.Fatalf("last chunk with PUT: %d %s", st, b)
	}
	st, _, got := do(t, srv, "GET", "/v2/app/blobs/"+d.String(), nil, "Range", "bytes=1000-1099")
	if st != http.StatusPartialContent || !bytes.Equal(got, content[1000:1100]) {
		t.Fatalf("range GET: %d %d bytes", st, len(got))
	}
	if st, _, _ = do(t, srv, "DELETE", loc, nil); st != http.StatusNotFound {
		t.Fatalf("cancel of a finished upload: %d", st)
	}
}

// fullDisk fails every write once limit bytes have been written in total,
// with ENOSPC, as a full filesystem does.
// fullDisk makes and syncs directories as the OS does; its files fill
// up after limit bytes.
type fullDisk struct {
	osFS
	limit int64
}

func (d *fullDisk) OpenFile(name string, flag int, perm os.FileMode) (writableFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fullFile{File: f, disk: d}, nil
}

type fullFile struct {
	*os.File
	disk *fullDisk
}

// ReadFrom hides *os.File's, which io.Copy would use instead of Write.
func (f *fullFile) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{f}, r)
}

func (f *fullFile) Write(p []byte) (int, error) {
	if int64(len(p)) > f.disk.limit {
		n, _ := f.File.Write(p[:f.disk.limit])
		f.disk.limit = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.disk.limit -= int64(len(p))
	return f.File.Write(p)
}

func TestDiskFullGivesCleanErrorAndNoPartialBlob(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	reg.fs = &fullDisk{limit: 10 << 10}
	content := randBytes(64 << 10)
	d := digest.FromBytes(content)

	st, _, b := do(t, srv, "POST", "/v2/app/blobs/uploads/?digest="+d.String(), content)
	if st != http.StatusInternalServerError || errCode(t, b) != codeUnknown || !strings.Contains(string(b), "no space left") {
		t.Fatalf("monolithic push on a full disk: %d %s", st, b)
	}
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("store holds %v after a failed write", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(reg.dir, dirUploads)); len(ents) != 0 {
		t.Fatalf("temp files left: %v", ents)
	}
	if st, _, _ := do(t, srv, "HEAD", "/v2/app/blobs/"+d.String(), nil); st != http.StatusNotFound {
		t.Fatalf("HEAD after failed write: %d", st)
	}

	// A chunk that fails midway leaves the session where it was.
	reg.fs = &fullDisk{limit: 1 << 30}
	st, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	if st != http.StatusAccepted {
		t.Fatalf("start: %d", st)
	}
	loc := h.Get("Location")
	reg.fs = &fullDisk{limit: 10 << 10}
	if st, _, b = do(t, srv, "PATCH", loc, content, "Content-Range", fmt.Sprintf("0-%d", len(content)-1)); st != http.StatusInternalServerError {
		t.Fatalf("chunk on a full disk: %d %s", st, b)
	}
	if st, h, _ = do(t, srv, "GET", loc, nil); st != http.StatusNoContent || h.Get("Range") != "0-0" {
		t.Fatalf("upload status after failed chunk: %d Range %q", st, h.Get("Range"))
	}

	// Space is back: the same push works.
	reg.fs = osFS{}
	pushBlob(t, srv, "app", content)
}

func TestDiskFullOnManifestWrite(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	cd := pushBlob(t, srv, "app", []byte("{}"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[]}`,
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, cd)
	reg.fs = &fullDisk{limit: 10}
	st, _, b := do(t, srv, "PUT", "/v2/app/manifests/v1", []byte(m), "Content-Type", ocispec.MediaTypeImageManifest)
	if st != http.StatusInternalServerError || errCode(t, b) != codeUnknown {
		t.Fatalf("manifest on a full disk: %d %s", st, b)
	}
	if st, _, _ := do(t, srv, "GET", "/v2/app/manifests/v1", nil); st != http.StatusNotFound {
		t.Fatalf("manifest visible after a failed write: %d", st)
	}
	for _, p := range storedBlobs(t, reg) {
		if strings.Contains(filepath.Base(p), ".tmp-") {
			t.Fatalf("temp file left visible: %s", p)
		}
	}
}

func TestBlobsAreScopedToRepositories(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	d := pushBlob(t, srv, "team-a/app", []byte("private layer"))
	if st, _, b := do(t, srv, "GET", "/v2/team-b/app/blobs/"+d.String(), nil); st != http.StatusNotFound || errCode(t, b) != codeBlobUnknown {
		t.Fatalf("blob readable from another repository: %d %s", st, b)
	}
	// Mounting from a repository that lacks it falls back to an upload.
	if st, h, _ := do(t, srv, "POST", "/v2/team-b/app/blobs/uploads/?mount="+d.String()+"&from=team-c/app", nil); st != http.StatusAccepted || h.Get("Location") == "" {
		t.Fatalf("mount from a repository without the blob: %d", st)
	}
	st, h, _ := do(t, srv, "POST", "/v2/team-b/app/blobs/uploads/?mount="+d.String()+"&from=team-a/app", nil)
	if st != http.StatusCreated || h.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("mount: %d", st)
	}
	if st, _, _ := do(t, srv, "GET", "/v2/team-b/app/blobs/"+d.String(), nil); st != http.StatusOK {
		t.Fatalf("mounted blob: %d", st)
	}
}

func TestAuth(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	resp, err := srv.Client().Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
		t.Fatalf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v2/", nil)
	req.SetBasicAuth("anyone", testToken)
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("Basic auth with the token: %d", resp.StatusCode)
	}
	req.SetBasicAuth("anyone", "wrong")
	resp, _ = srv.Client().Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}

	// AnonymousPull: loopback may pull without credentials, never push.
	_, anon := newTestRegistry(t, func(c *Config) { c.AnonymousPull = true })
	d := pushBlob(t, anon, "app", []byte("layer"))
	resp, _ = anon.Client().Get(anon.URL + "/v2/app/blobs/" + d.String())
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous pull from loopback: %d", resp.StatusCode)
	}
	resp, _ = anon.Client().Post(anon.URL+"/v2/app/blobs/uploads/", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous push: %d", resp.StatusCode)
	}
}

func TestTagListPagination(t *testing.T) {
	_, srv := newTestRegistry(t, nil)
	for _, tag := range []string{"c", "a", "b", "d"} {
		pushImage(t, srv, "app", tag)
	}
	st, h, b := do(t, srv, "GET", "/v2/app/tags/list?n=2", nil)
	if st != http.StatusOK || string(b) != `{"name":"app","tags":["a","b"]}` {
		t.Fatalf("first page: %d %s", st, b)
	}
	if link := h.Get("Link"); link != `</v2/app/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("Link: %q", link)
	}
	st, h, b = do(t, srv, "GET", "/v2/app/tags/list?n=2&last=b", nil)
	if st != http.StatusOK || string(b) != `{"name":"app","tags":["c","d"]}` || h.Get("Link") != "" {
		t.Fatalf("second page: %d %s Link %q", st, b, h.Get("Link"))
	}
	if st, _, b = do(t, srv, "GET", "/v2/nothing/tags/list", nil); st != http.StatusNotFound || errCode(t, b) != codeNameUnknown {
		t.Fatalf("unknown repository: %d %s", st, b)
	}
}

func TestGCRemovesOnlyUnreferencedOldBlobs(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	reg, srv := newTestRegistry(t, func(c *Config) { c.Now = clock; c.GCGrace = time.Hour })
	ctx := context.Background()

	md, blobs := pushImage(t, srv, "app", "v1")
	orphan := pushBlob(t, srv, "app", randBytes(1000))
	_, h, _ := do(t, srv, "POST", "/v2/app/blobs/uploads/", nil)
	abandoned := h.Get("Location")
	// Files carry real mtimes; move the clock past the grace period.
	now = now.Add(2 * time.Hour)
	fresh := pushBlob(t, srv, "app", randBytes(500)) // within grace: kept

	removed, freed, err := reg.GC(ctx)
	if err != nil || removed != 1 || freed != 1000 {
		t.Fatalf("GC = %d, %d, %v; want the orphan only", removed, freed, err)
	}
	if st, _, _ := do(t, srv, "HEAD", "/v2/app/blobs/"+orphan.String(), nil); st != http.StatusNotFound {
		t.Fatalf("orphan after GC: %d", st)
	}
	if st, _, _ := do(t, srv, "GET", abandoned, nil); st != http.StatusNotFound {
		t.Fatalf("abandoned upload after GC: %d", st)
	}
	for _, d := range append(blobs, fresh) {
		if st, _, _ := do(t, srv, "HEAD", "/v2/app/blobs/"+d.String(), nil); st != http.StatusOK {
			t.Fatalf("blob %s after GC: %d", d, st)
		}
	}
	if st, _, _ := do(t, srv, "GET", "/v2/app/manifests/v1", nil); st != http.StatusOK {
		t.Fatalf("manifest after GC: %d", st)
	}

	// Once the manifest is deleted its blobs go too.
	if err := reg.Delete(ctx, "app", md.String()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	if removed, _, err = reg.GC(ctx); err != nil || removed != 4 {
		t.Fatalf("GC after delete = %d, %v; want manifest, config, layer, fresh blob", removed, err)
	}
	if got := storedBlobs(t, reg); len(got) != 0 {
		t.Fatalf("store still holds %v", got)
	}
}

func TestImageHelpers(t *testing.T) {
	reg, srv := newTestRegistry(t, nil)
	ctx := context.Background()
	md, _ := pushImage(t, srv, "team/app", "v1")
	if err := reg.Tag(ctx, "team/app", "v1", "stable"); err != nil {
		t.Fatal(err)
	}
	imgs, err := reg.List(ctx)
	if err != nil || len(imgs) != 2 {
		t.Fatalf("List = %v, %v", imgs, err)
	}
	for _, im := range imgs {
		if im.Repository != "team/app" || im.Digest != md.String() || im.Size < 4096 {
			t.Fatalf("image %+v", im)
		}
	}
	if err := reg.Tag(ctx, "team/app", "nope", "x"); !v1.IsNotFound(err) {
		t.Fatalf("Tag of a missing ref: %v", err)
	}
	if err := reg.Delete(ctx, "team/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := do(t, srv, "GET", "/v2/team/app/manifests/stable", nil); st != http.StatusOK {
		t.Fatalf("other tag after deleting v1: %d", st)
	}
	if err := reg.Delete(ctx, "team/app", "v1"); !v1.IsNotFound(err) {
		t.Fatalf("deleting a deleted tag: %v", err)
	}
	if err := reg.Delete(ctx, "Bad Name", "v1"); !v1.IsInvalid(err) {
		t.Fatalf("invalid repository: %v", err)
	}
}
