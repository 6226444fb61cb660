package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// parseDigest validates a digest from a request: well-formed and of an
// algorithm this registry can compute.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", errorf(http.StatusBadRequest, codeDigestInvalid, "invalid digest %q: %v", s, err)
	}
	return d, nil
}

func (g *Registry) serveBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.ref)
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !exists(g.layerLinkPath(rt.name, d)) {
			return blobUnknown(d)
		}
		f, err := os.Open(g.blobPath(d))
		if errors.Is(err, fs.ErrNotExist) {
			return blobUnknown(d)
		} else if err != nil {
			return err
		}
		defer f.Close()
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Etag", `"`+d.String()+`"`)
		w.Header().Set("Cache-Control", "max-age=31536000")
		// ServeContent does Range (206, 416 for unsatisfiable ranges),
		// HEAD and Content-Length.
		http.ServeContent(w, r, "", time.Time{}, f)
		return nil
	case http.MethodDelete:
		g.mu.Lock()
		defer g.mu.Unlock()
		p := g.layerLinkPath(rt.name, d)
		if !exists(p) {
			return blobUnknown(d)
		}
		// Only the repository's link goes; the content stays until GC finds
		// nothing else refers to it.
		if err := os.Remove(p); err != nil {
			return err
		}
		g.usage.reset()
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	return methodNotAllowed(r)
}

func blobUnknown(d digest.Digest) *regError {
	return errorf(http.StatusNotFound, codeBlobUnknown, "blob unknown to registry").withDetail(map[string]string{"digest": d.String()})
}

// upload is an upload session. Its bytes live in uploads/<id>; the offset is
// the file's size, so the mutex only keeps two requests of one session from
// interleaving.
type upload struct {
	mu    chan struct{} // 1-slot semaphore; a request holding it owns the file
	repo  string
	owner string // credential key whose MaxUploads the session counts against
	size  int64
	// touched is when the last request ended (or began, while one runs);
	// ExpireUploads drops sessions idle beyond UploadTTL.
	touched time.Time
}

func (u *upload) lock(r *http.Request) error {
	select {
	case u.mu <- struct{}{}:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func (u *upload) unlock() { <-u.mu }

// credentialKey names the caller for MaxUploads: a hash of its credential,
// so the map never holds a token.
func credentialKey(r *http.Request) string {
	cred, ok := Credential(r)
	if !ok {
		return "anonymous"
	}
	sum := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(sum[:8])
}

// reserveUpload takes one of owner's MaxUploads session slots.
func (g *Registry) reserveUpload(owner string) bool {
	g.openMu.Lock()
	defer g.openMu.Unlock()
	if g.open[owner] >= g.cfg.MaxUploads {
		return false
	}
	g.open[owner]++
	return true
}

// endUpload ends session id, once, however many ways it ends at once
// (finished, cancelled, expired): its slot and its bytes go.
func (g *Registry) endUpload(id string) {
	v, ok := g.uploads.LoadAndDelete(id)
	if !ok {
		return
	}
	_ = os.Remove(g.uploadPath(id))
	owner := v.(*upload).owner
	g.openMu.Lock()
	defer g.openMu.Unlock()
	if g.open[owner]--; g.open[owner] <= 0 {
		delete(g.open, owner)
	}
}

// ExpireUploads drops the upload sessions idle for longer than UploadTTL
// and returns how many. A session busy with a request is left alone.
func (g *Registry) ExpireUploads() int {
	cutoff := g.now().Add(-g.cfg.UploadTTL)
	n := 0
	g.uploads.Range(func(k, v any) bool {
		u := v.(*upload)
		select {
		case u.mu <- struct{}{}:
			if u.touched.Before(cutoff) {
				g.endUpload(k.(string))
				n++
			}
			<-u.mu
		default:
		}
		return true
	})
	return n
}

func (g *Registry) serveUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	if rt.ref == "" {
		if r.Method != http.MethodPost {
			return methodNotAllowed(r)
		}
		return g.startUpload(w, r, rt.name)
	}
	v, ok := g.uploads.Load(rt.ref)
	if !ok || v.(*upload).repo != rt.name {
		return errorf(http.StatusNotFound, codeBlobUploadUnknown, "upload %s unknown", rt.ref)
	}
	u := v.(*upload)
	if err := u.lock(r); err != nil {
		return err
	}
	defer u.unlock()
	if _, still := g.uploads.Load(rt.ref); !still {
		return errorf(http.StatusNotFound, codeBlobUploadUnknown, "upload %s unknown", rt.ref)
	}
	// A chunk may stream for longer than UploadTTL; the session is idle
	// from when the request ends.
	u.touched = g.now()
	defer func() { u.touched = g.now() }()
	switch r.Method {
	case http.MethodGet:
		g.uploadStatus(w, rt.name, rt.ref, u, http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := g.appendChunk(r, rt.ref, u, ""); err != nil {
			if re := (*regError)(nil); errors.As(err, &re) && re.status == http.StatusRequestedRangeNotSatisfiable {
				setUploadHeaders(w, rt.name, rt.ref, u)
			}
			return err
		}
		g.uploadStatus(w, rt.name, rt.ref, u, http.StatusAccepted)
		return nil
	case http.MethodPut:
		d, err := parseDigest(r.URL.Query().Get("digest"))
		if err != nil {
			return err
		}
		if err := g.appendChunk(r, rt.ref, u, d); err != nil {
			return err
		}
		// Whatever the outcome the session is over: a digest mismatch
		// discards what was sent, as the spec allows. The file goes once
		// its content is committed (renamed away) or refused.
		tmp := g.uploadPath(rt.ref) + ".done"
		if err := os.Rename(g.uploadPath(rt.ref), tmp); err != nil {
			g.endUpload(rt.ref)
			return err
		}
		g.endUpload(rt.ref)
		defer os.Remove(tmp)
		if err := g.finishBlob(r.Context(), rt.name, tmp, d); err != nil {
			return err
		}
		blobCreated(w, rt.name, d)
		return nil
	case http.MethodDelete:
		g.endUpload(rt.ref)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(r)
}

func setUploadHeaders(w http.ResponseWriter, name, id string, u *upload) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	w.Header().Set("Docker-Upload-UUID", id)
	end := u.size - 1
	if end < 0 {
		end = 0
	}
	w.Header().Set("Range", fmt.Sprintf("0-%d", end))
}

func (g *Registry) uploadStatus(w http.ResponseWriter, name, id string, u *upload, status int) {
	setUploadHeaders(w, name, id, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (g *Registry) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := parseDigest(m)
		if err != nil {
			return err
		}
		ok, err := g.mount(r, name, q.Get("from"), d)
		if err != nil {
			return err
		}
		if ok {
			blobCreated(w, name, d)
			return nil
		}
		// Not mountable: fall through to a plain upload session (202), as
		// the spec asks.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		tmp := g.uploadPath(newID())
		defer os.Remove(tmp)
		limit, over, err := g.uploadLimit(r.Context(), name, d)
		if err != nil {
			return err
		}
		if _, err := g.receive(r, tmp, 0, limit, over); err != nil {
			return err
		}
		if err := g.finishBlob(r.Context(), name, tmp, d); err != nil {
			return err
		}
		blobCreated(w, name, d)
		return nil
	}
	owner := credentialKey(r)
	if !g.reserveUpload(owner) {
		return errorf(http.StatusTooManyRequests, codeTooManyRequests,
			"%d upload sessions are open for this credential; finish or cancel one (abandoned sessions expire after %s)",
			g.cfg.MaxUploads, g.cfg.UploadTTL)
	}
	id := newID()
	f, err := g.fs.OpenFile(g.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err == nil {
		err = f.Close()
	}
	u := &upload{mu: make(chan struct{}, 1), repo: name, owner: owner, touched: g.now()}
	g.uploads.Store(id, u)
	if err != nil {
		g.endUpload(id)
		return err
	}
	g.uploadStatus(w, name, id, u, http.StatusAccepted)
	return nil
}

// mount links blob d into repo name if the caller may read it somewhere:
// in from when given, else in any repository the caller may pull from, so a
// mount never exposes a blob the caller could not have pulled.
func (g *Registry) mount(r *http.Request, name, from string, d digest.Digest) (bool, error) {
	var sources []string
	if from != "" {
		if !validName(from) {
			return false, nil
		}
		sources = []string{from}
	} else {
		all, err := g.repositories()
		if err != nil {
			return false, err
		}
		sources = all
	}
	for _, src := range sources {
		if src == name || !g.blobLinked(src, d) {
			continue
		}
		if err := g.authorize(r, src, false); err != nil {
			continue
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		// Re-check under the lock: GC may have swept it meanwhile.
		fi, err := os.Stat(g.blobPath(d))
		if err != nil || !exists(g.layerLinkPath(src, d)) {
			return false, nil
		}
		if err := g.charge(r.Context(), name, sized{d, fi.Size()}); err != nil {
			return false, err
		}
		now := g.now()
		_ = os.Chtimes(g.blobPath(d), now, now)
		return true, g.linkBlob(name, d)
	}
	return false, nil
}

// parseContentRange reads a chunk's "start-end" (the spec's form; "bytes "
// prefixed is tolerated).
func parseContentRange(h string) (start, end int64, err error) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "bytes ")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	a, b, ok := strings.Cut(h, "-")
	if ok {
		start, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			end, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil || start < 0 || end < start {
		return 0, 0, errorf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, "invalid Content-Range %q", h)
	}
	return start, end, nil
}

// appendChunk appends the request body to the session's file. A chunk that
// does not start where the upload stands is refused with 416; a body cut
// short (the client went away, Content-Length not met) is rolled back so the
// session stays where the client can resume it. d is the blob's digest when
// the client has said it (the closing PUT).
func (g *Registry) appendChunk(r *http.Request, id string, u *upload, d digest.Digest) error {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			return err
		}
		if start != u.size {
			return errorf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				"chunk starts at %d, upload is at %d", start, u.size)
		}
		if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
			return errorf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				"Content-Range %d-%d does not match Content-Length %d", start, end, r.ContentLength)
		}
	}
	limit, over, err := g.uploadLimit(r.Context(), u.repo, d)
	if err != nil {
		return err
	}
	n, err := g.receive(r, g.uploadPath(id), u.size, limit, over)
	if err != nil {
		return err
	}
	u.size += n
	return nil
}

// uploadLimit is the size a blob pushed to repo may reach: MaxBlobBytes, or
// less when repo's quota has less left (unless d, when known, is already
// counted there). over is the error for a blob past it. It only refuses
// early what the quota check at commit would refuse anyway.
func (g *Registry) uploadLimit(ctx context.Context, repo string, d digest.Digest) (limit int64, over func() error, err error) {
	limit = g.cfg.MaxBlobBytes
	over = func() error {
		return errorf(http.StatusRequestEntityTooLarge, codeSizeInvalid, "blob larger than this registry's limit of %d bytes", limit)
	}
	q, used, counted, err := g.quotaUsed(ctx, repo, d)
	if err != nil || q.Limit <= 0 || counted {
		return limit, over, err
	}
	if left := max(q.Limit-used, 0); left < limit {
		limit = left
		over = func() error { return quotaExceeded(q, used, limit+1) }
	}
	return limit, over, nil
}

// receive writes the request body to path at offset, fsyncs it, and on any
// failure (a body that would take the file past limit included) truncates
// the file back to offset.
func (g *Registry) receive(r *http.Request, path string, offset, limit int64, over func() error) (int64, error) {
	if r.Body == nil {
		return 0, nil
	}
	if r.ContentLength > 0 && offset+r.ContentLength > limit {
		return 0, over()
	}
	f, err := g.fs.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errorf(http.StatusNotFound, codeBlobUploadUnknown, "upload unknown")
		}
		return 0, err
	}
	n, err := func() (int64, error) {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return 0, err
		}
		room := max(limit-offset, 0)
		n, err := io.Copy(f, io.LimitReader(&readErr{r: r.Body}, room+1))
		if err != nil {
			return n, err
		}
		if n > room {
			return n, over()
		}
		if r.ContentLength >= 0 && n != r.ContentLength {
			return n, errorf(http.StatusBadRequest, codeBlobUploadInvalid, "body is %d bytes, Content-Length said %d", n, r.ContentLength)
		}
		return n, f.Sync()
	}()
	if err != nil {
		_ = f.Truncate(offset)
		_ = f.Close()
		var re *readErrT
		if errors.As(err, &re) {
			return 0, errorf(http.StatusBadRequest, codeBlobUploadInvalid, "upload body incomplete: %v", re.err)
		}
		return 0, err
	}
	return n, f.Close()
}

// readErr marks errors that come from reading the client's body, so they
// answer 400 rather than 500 (which a write error, e.g. ENOSPC, gives).
type readErr struct{ r io.Reader }

type readErrT struct{ err error }

func (e *readErrT) Error() string { return e.err.Error() }
func (e *readErrT) Unwrap() error { return e.err }

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readErrT{err: err}
	}
	return n, err
}

// finishBlob verifies that the file at tmp has digest d and commits it into
// the store and repo name, within name's quota. A mismatch stores nothing.
func (g *Registry) finishBlob(ctx context.Context, name, tmp string, d digest.Digest) error {
	if !d.Algorithm().Available() {
		return errorf(http.StatusBadRequest, codeDigestInvalid, "unsupported digest algorithm %s", d.Algorithm())
	}
	got, size, err := fileDigest(tmp, d.Algorithm().Hash())
	if err != nil {
		return err
	}
	if got != d.Encoded() {
		return digestMismatch(d)
	}
	return g.commitVerified(ctx, name, tmp, d, size)
}

func digestMismatch(d digest.Digest) *regError {
	return errorf(http.StatusBadRequest, codeDigestInvalid, "content does not match digest %s", d).
		withDetail(map[string]string{"digest": d.String()})
}

// commitVerified commits tmp, known to hold size bytes of digest d, into
// the store and repo name, within name's quota.
func (g *Registry) commitVerified(ctx context.Context, name, tmp string, d digest.Digest, size int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if exists(g.layerLinkPath(name, d)) {
		// Already there: only the store's copy is touched, for GC's grace.
		return g.commitBlob(tmp, d)
	}
	if err := g.charge(ctx, name, sized{d, size}); err != nil {
		return err
	}
	if err := g.commitBlob(tmp, d); err != nil {
		g.usage.reset()
		return err
	}
	if err := g.linkBlob(name, d); err != nil {
		g.usage.reset()
		return err
	}
	return nil
}

func fileDigest(path string, h hash.Hash) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), n, nil
}
