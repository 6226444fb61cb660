package registry

import (
	"context"
	_ "crypto/sha256" // digest algorithms the registry accepts
	_ "crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Config is everything the registry needs from the composition root.
type Config struct {
	// Dir holds blobs, repositories and uploads in progress. Created if missing.
	Dir string
	// Authorizer decides whether r may pull from (push=false) or push to
	// (push=true) repo; repo is "" for the /v2/ version check. Basic
	// credentials are presented to it as "Authorization: Bearer PASSWORD",
	// so a bearer-token check serves docker, skopeo and containerd alike.
	// It returns an error wrapping ErrDenied for a known caller without the
	// right (403), any other error for a missing or bad credential (401).
	// Nil allows everything.
	Authorizer func(r *http.Request, repo string, push bool) error
	// AnonymousPull lets requests without credentials from a loopback
	// address pull (GET/HEAD), for the node's own containerd.
	AnonymousPull bool
	// Realm names the registry in WWW-Authenticate challenges; default "berth".
	Realm string
	// GCGrace is how old an unreferenced blob must be before GC removes it,
	// so a blob pushed just before its manifest survives; default 1h.
	GCGrace time.Duration
	// GCInterval is how often Run collects garbage; default 1h.
	GCInterval time.Duration

	// MaxBlobBytes bounds one blob, and so what one upload session may
	// hold; default DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// MaxUploads bounds the upload sessions one credential (one token; all
	// anonymous callers together) has open at once; default
	// DefaultMaxUploads.
	MaxUploads int
	// UploadTTL is how long an upload session may sit without a request
	// before Run drops it and its bytes; default DefaultUploadTTL.
	UploadTTL time.Duration
	// Quota, when set, names the quota a repository's content counts
	// against. It is asked on every push; an error fails the push.
	Quota func(ctx context.Context, repo string) (Quota, error)

	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Limits a registry has unless configured otherwise.
const (
	// DefaultMaxBlobBytes: the largest layers in common use (CUDA and ML
	// framework bases) are a few GiB compressed; 10 GiB leaves them room
	// while one runaway or hostile upload cannot fill a disk on its own.
	DefaultMaxBlobBytes = 10 << 30
	// DefaultMaxUploads: clients push a handful of layers at once (docker
	// 3, containerd and skopeo up to about 8); 16 leaves room for two
	// pushes from one token, and bounds the files an abandoned client can
	// leave open to as many.
	DefaultMaxUploads = 16
	// DefaultUploadTTL: clients send a chunk, or finish, well within a
	// minute unless they are gone; five minutes of silence means gone.
	DefaultUploadTTL = 5 * time.Minute
)

// Quota is what a repository's content counts against: every repository
// with the same Group shares Limit bytes, each blob and manifest counted
// once per group however many of its repositories hold it. An empty Group
// or a Limit of 0 counts nothing.
type Quota struct {
	Group string
	Limit int64
}

// Registry serves the OCI distribution API over a store on disk.
type Registry struct {
	dir     string
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	fs      fileSystem
	mu      sync.Mutex // serialises metadata writes (links, tags) with GC
	uploads sync.Map   // upload id → *upload

	openMu sync.Mutex
	open   map[string]int // credential key → upload sessions open

	usage usageCache // guarded by mu
}

// maxManifestSize is the spec's "at least 4 MiB" a registry should accept.
const maxManifestSize = 4 << 20

// New validates cfg and prepares Dir. Uploads left by a previous process are
// dropped: their sessions lived in memory and cannot be resumed.
func New(cfg Config) (*Registry, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("registry: Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Realm == "" {
		cfg.Realm = "berth"
	}
	if cfg.GCGrace == 0 {
		cfg.GCGrace = time.Hour
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = time.Hour
	}
	if cfg.MaxBlobBytes == 0 {
		cfg.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if cfg.MaxUploads == 0 {
		cfg.MaxUploads = DefaultMaxUploads
	}
	if cfg.UploadTTL == 0 {
		cfg.UploadTTL = DefaultUploadTTL
	}
	if cfg.MaxBlobBytes < 0 || cfg.MaxUploads < 0 || cfg.UploadTTL < 0 {
		return nil, fmt.Errorf("registry: negative limit")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Registry{dir: cfg.Dir, cfg: cfg, log: cfg.Logger, now: cfg.Now, fs: osFS{}, open: map[string]int{}}
	if err := os.RemoveAll(filepath.Join(cfg.Dir, dirUploads)); err != nil {
		return nil, fmt.Errorf("registry: clear uploads: %w", err)
	}
	for _, d := range []string{dirBlobs, dirRepos, dirUploads} {
		if err := g.mkdirAll(filepath.Join(cfg.Dir, d)); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	return g, nil
}

// Run is the registry's janitor until ctx ends: it drops upload sessions
// idle for longer than UploadTTL (checked every UploadTTL/4, at least
// every minute) and collects garbage every GCInterval.
func (g *Registry) Run(ctx context.Context) error {
	every := min(g.cfg.UploadTTL/4, time.Minute)
	if every <= 0 {
		every = time.Second
	}
	expire := time.NewTicker(every)
	defer expire.Stop()
	gc := time.NewTicker(g.cfg.GCInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-expire.C:
			if n := g.ExpireUploads(); n > 0 {
				g.log.Info("registry dropped abandoned uploads", "sessions", n)
			}
		case <-gc.C:
			if _, _, err := g.GC(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("registry garbage collection", "err", err)
			}
		}
	}
}

// Handler serves /v2/ and everything under it.
func (g *Registry) Handler() http.Handler { return http.HandlerFunc(g.serveHTTP) }

// nameRE is the spec's repository name grammar.
var nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// tagRE is the spec's tag grammar.
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

func validName(name string) bool { return len(name) <= 255 && nameRE.MatchString(name) }

// route is a parsed /v2/ path.
type route struct {
	kind string // "base", "manifest", "blob", "upload", "tags", "referrers"
	name string
	ref  string // tag or digest, blob digest, upload id, referrers subject
}

func parseRoute(p string) (route, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if p == "/v2" {
			return route{kind: "base"}, true
		}
		return route{}, false
	}
	if rest == "" {
		return route{kind: "base"}, true
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	join := func(k int) string { return strings.Join(segs[:k], "/") }
	switch {
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return route{kind: "upload", name: join(n - 3), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return route{kind: "tags", name: join(n - 2)}, true
	case n >= 3 && segs[n-2] == "manifests":
		return route{kind: "manifest", name: join(n - 2), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "blobs":
		return route{kind: "blob", name: join(n - 2), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "referrers":
		return route{kind: "referrers", name: join(n - 2), ref: segs[n-1]}, true
	}
	return route{}, false
}

func (g *Registry) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		g.writeError(w, r, errorf(http.StatusNotFound, codeUnsupported, "no such endpoint %s", r.URL.Path))
		return
	}
	if rt.kind != "base" && !validName(rt.name) {
		g.writeError(w, r, errorf(http.StatusBadRequest, codeNameInvalid, "invalid repository name %q", rt.name))
		return
	}
	push := r.Method != http.MethodGet && r.Method != http.MethodHead
	if err := g.authorize(r, rt.name, push); err != nil {
		g.writeError(w, r, err)
		return
	}
	var err error
	switch rt.kind {
	case "base":
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	case "manifest":
		err = g.serveManifest(w, r, rt)
	case "blob":
		err = g.serveBlob(w, r, rt)
	case "upload":
		err = g.serveUpload(w, r, rt)
	case "tags":
		err = g.serveTags(w, r, rt)
	case "referrers":
		err = g.serveReferrers(w, r, rt)
	}
	if err != nil {
		g.writeError(w, r, err)
	}
}

func methodNotAllowed(r *http.Request) *regError {
	return errorf(http.StatusMethodNotAllowed, codeUnsupported, "method %s not allowed here", r.Method)
}

// authorize applies AnonymousPull and the Authorizer, and turns a refusal
// into 401 with a challenge clients understand, or 403.
func (g *Registry) authorize(r *http.Request, repo string, push bool) error {
	cred, hasCred := Credential(r)
	if !hasCred && !push && g.cfg.AnonymousPull && isLoopback(r.RemoteAddr) {
		return nil
	}
	if g.cfg.Authorizer == nil {
		return nil
	}
	ar := r
	if hasCred {
		// Present any credential as a bearer token: Basic auth from docker,
		// skopeo and containerd carries the token as its password.
		ar = r.Clone(r.Context())
		ar.Header.Set("Authorization", "Bearer "+cred)
	}
	err := g.cfg.Authorizer(ar, repo, push)
	if err == nil {
		return nil
	}
	if hasCred && errors.Is(err, ErrDenied) {
		return errorf(http.StatusForbidden, codeDenied, "access to %q denied", repo)
	}
	// A Basic challenge: every client we care about answers it by sending
	// the configured username and password (the token) on each request,
	// with no token-service round trip that a Bearer challenge would need.
	e := errorf(http.StatusUnauthorized, codeUnauthorized, "authentication required")
	e.header = http.Header{"Www-Authenticate": {fmt.Sprintf("Basic realm=%q", g.cfg.Realm)}}
	return e
}

// Credential returns the token a request carries: a bearer token, or the
// password of Basic auth.
func Credential(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && tok != "" {
		return tok, true
	}
	if _, pw, ok := r.BasicAuth(); ok && pw != "" {
		return pw, true
	}
	return "", false
}

// TokenAuthorizer is the Authorizer for a single shared token: any request
// carrying it may pull and push.
func TokenAuthorizer(token string) func(*http.Request, string, bool) error {
	return func(r *http.Request, _ string, _ bool) error {
		got, ok := Credential(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return errors.New("bad or missing token")
		}
		return nil
	}
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
