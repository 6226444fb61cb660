package kv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Identity is who a request acts as.
type Identity interface {
	// Allowed says whether it may read (write false) or write env's
	// keys: nil, or an error (v1 kind Forbidden) saying why not.
	CanAccess(env string, write bool) error
}

// Authenticator finds who a request to the gateway's KV endpoint is: an
// access key pair (HTTP Basic: the key ID and its secret) or a Berth
// token (Bearer). An error is of kind Unauthorized.
type Authenticator func(r *http.Request) (Identity, error)

// Handler is the KV store over HTTP:
//
//	GET    /KEY                 the value (body); X-Berth-Revision, ETag, X-Berth-Expires
//	PUT    /KEY                 set it; If-Match: REV or If-None-Match: * (compare-and-swap),
//	                            X-Berth-TTL: 30s (or ?ttl=30s); answers {"key","revision"}
//	DELETE /KEY                 remove it; If-Match: REV
//	GET    /?prefix=P           {"items":[{"key","revision","created"}…],"more"}; &values=true adds
//	                            "value" (base64), &after=KEY&limit=N pages
//	GET    /?prefix=P&watch=true  one JSON event per line: {"op":"put"|"delete","key","revision","value"}
//
// On the gateway it is served at kv.ENV.DOMAIN; the API server serves the
// same under /api/v1/environments/ENV/kv/.
type Handler struct {
	store *Store
	auth  Authenticator
	log   *slog.Logger
}

// NewHandler serves store; auth authenticates the gateway's requests.
func NewHandler(store *Store, auth Authenticator, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{store: store, auth: auth, log: logger}
}

// ServePlatform answers a request to env's KV endpoint on the gateway
// (sub, the host's part before "kv.", must be empty).
func (h *Handler) ServePlatform(w http.ResponseWriter, r *http.Request, env, sub string) {
	if sub != "" {
		writeError(w, v1.NotFound("no key-value endpoint at %s", r.Host))
		return
	}
	if h.auth == nil {
		writeError(w, v1.Errorf(v1.ErrUnauthorized, "the key-value endpoint takes no credentials yet"))
		return
	}
	who, err := h.auth(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="berth-kv"`)
		writeError(w, err)
		return
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if err := who.CanAccess(env, write); err != nil {
		writeError(w, err)
		return
	}
	if err := h.Serve(w, r, env, strings.TrimPrefix(r.URL.Path, "/")); err != nil {
		writeError(w, err)
	}
}

// Serve answers a request for key of env (the list when key is ""), the
// caller having checked who may.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, env, key string) error {
	ctx := r.Context()
	if key == "" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return v1.Invalid("%s is not allowed on the key list; GET lists or watches", r.Method)
		}
		q := r.URL.Query()
		if b, _ := strconv.ParseBool(q.Get("watch")); b {
			return h.watch(w, r, env, q.Get("prefix"))
		}
		limit, _ := strconv.Atoi(q.Get("limit"))
		values, _ := strconv.ParseBool(q.Get("values"))
		items, more, err := h.store.List(ctx, env, q.Get("prefix"), q.Get("after"), limit, values)
		if err != nil {
			return err
		}
		if items == nil {
			items = []Entry{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items, "more": more})
		return nil
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		e, err := h.store.Get(ctx, env, key)
		if err != nil {
			return err
		}
		hd := w.Header()
		hd.Set("Content-Type", "application/octet-stream")
		hd.Set("X-Berth-Revision", strconv.FormatUint(e.Revision, 10))
		hd.Set("ETag", `"`+strconv.FormatUint(e.Revision, 10)+`"`)
		hd.Set("Last-Modified", e.Created.Format(http.TimeFormat))
		if e.Expires != nil {
			hd.Set("X-Berth-Expires", e.Expires.UTC().Format(time.RFC3339))
		}
		hd.Set("Content-Length", strconv.Itoa(len(e.Value)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(e.Value)
		}
		return nil
	case http.MethodPut, http.MethodPost:
		var opts PutOptions
		var err error
		if opts.Revision, err = revisionCondition(r); err != nil {
			return err
		}
		ttl := r.Header.Get("X-Berth-Ttl")
		if ttl == "" {
			ttl = r.URL.Query().Get("ttl")
		}
		if ttl != "" {
			if opts.TTL, err = time.ParseDuration(ttl); err != nil || opts.TTL <= 0 {
				return v1.FieldError("ttl", "%q is not a duration such as 30s or 1h", ttl)
			}
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(h.store.cfg.MaxValueBytes)+1))
		if err != nil {
			return v1.Invalid("reading the value: %v", err)
		}
		rev, err := h.store.Put(ctx, env, key, body, opts)
		if err != nil {
			return err
		}
		w.Header().Set("X-Berth-Revision", strconv.FormatUint(rev, 10))
		writeJSON(w, http.StatusOK, map[string]any{"key": key, "revision": rev})
		return nil
	case http.MethodDelete:
		rev, err := revisionCondition(r)
		if err != nil {
			return err
		}
		if err := h.store.Delete(ctx, env, key, rev); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return v1.Invalid("%s is not allowed on a key; GET, PUT or DELETE", r.Method)
}

// revisionCondition reads If-Match: REV and If-None-Match: *.
func revisionCondition(r *http.Request) (*uint64, error) {
	if m := strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`); m != "" {
		rev, err := strconv.ParseUint(m, 10, 64)
		if err != nil {
			return nil, v1.FieldError("If-Match", "%q is not a revision", m)
		}
		return &rev, nil
	}
	if r.Header.Get("If-None-Match") == "*" {
		var zero uint64
		return &zero, nil
	}
	return nil, nil
}

func (h *Handler) watch(w http.ResponseWriter, r *http.Request, env, prefix string) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// In place before the answer starts: a change the client makes once
	// it has the headers is seen.
	events, err := h.store.Watch(ctx, env, prefix)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// A watch lasts: no write deadline from the server's defaults.
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	enc := json.NewEncoder(w)
	// A blank line now and then shows a client (and proxies) that the
	// watch is alive.
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return nil
			}
			if err := enc.Encode(e); err != nil {
				return nil
			}
		case <-tick.C:
			if _, err := w.Write([]byte("\n")); err != nil {
				return nil
			}
		}
		rc.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers err in the API's error shape.
func writeError(w http.ResponseWriter, err error) {
	kind := v1.KindOf(err)
	status, _ := v1.HTTPStatus(kind)
	body := v1.ErrorBody{Kind: kind, Message: err.Error()}
	var ve *v1.Error
	if errors.As(err, &ve) {
		body.Message, body.Field = ve.Message, ve.Field
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, v1.Status{Error: body})
}
