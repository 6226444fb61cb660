package registry

import (
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
	mu      chan struct{} // 1-slot semaphore; a request holding it owns the file
	repo    string
	size    int64
	touched time.Time // last request; GC drops sessions idle beyond GCGrace
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
	u.touched = g.now()
	switch r.Method {
	case http.MethodGet:
		g.uploadStatus(w, rt.name, rt.ref, u, http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := g.appendChunk(r, rt.ref, u); err != nil {
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
		if err := g.appendChunk(r, rt.ref, u); err != nil {
			return err
		}
		// Whatever the outcome the session is over: a digest mismatch
		// discards what was sent, as the spec allows.
		g.uploads.Delete(rt.ref)
		defer os.Remove(g.uploadPath(rt.ref))
		if err := g.finishBlob(rt.name, g.uploadPath(rt.ref), d); err != nil {
			return err
		}
		blobCreated(w, rt.name, d)
		return nil
	case http.MethodDelete:
		g.uploads.Delete(rt.ref)
		_ = os.Remove(g.uploadPath(rt.ref))
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
		if _, err := g.receive(r, tmp, 0); err != nil {
			return err
		}
		if err := g.finishBlob(name, tmp, d); err != nil {
			return err
		}
		blobCreated(w, name, d)
		return nil
	}
	id := newID()
	f, err := g.fs.OpenFile(g.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	u := &upload{mu: make(chan struct{}, 1), repo: name, touched: g.now()}
	g.uploads.Store(id, u)
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
		if !g.blobLinked(src, d) {
			return false, nil
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
// session stays where the client can resume it.
func (g *Registry) appendChunk(r *http.Request, id string, u *upload) error {
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
	n, err := g.receive(r, g.uploadPath(id), u.size)
	if err != nil {
		return err
	}
	u.size += n
	return nil
}

// receive writes the request body to path at offset, fsyncs it, and on any
// failure truncates the file back to offset.
func (g *Registry) receive(r *http.Request, path string, offset int64) (int64, error) {
	if r.Body == nil {
		return 0, nil
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
		n, err := io.Copy(f, &readErr{r: r.Body})
		if err != nil {
			return n, err
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
// the store and repo name. A mismatch stores nothing.
func (g *Registry) finishBlob(name, tmp string, d digest.Digest) error {
	if !d.Algorithm().Available() {
		return errorf(http.StatusBadRequest, codeDigestInvalid, "unsupported digest algorithm %s", d.Algorithm())
	}
	got, err := fileDigest(tmp, d.Algorithm().Hash())
	if err != nil {
		return err
	}
	if got != d.Encoded() {
		return errorf(http.StatusBadRequest, codeDigestInvalid, "content does not match digest %s", d).
			withDetail(map[string]string{"digest": d.String()})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.commitBlob(tmp, d); err != nil {
		return err
	}
	return g.linkBlob(name, d)
}

func fileDigest(path string, h hash.Hash) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
