package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the dashboard is built from.
type Config struct {
	// API is the handler of the HTTP API (/api/v1/ and /metrics). Every
	// read and every action goes through it, with the user's token, as
	// the CLI's requests do.
	API http.Handler
	// Gateway is the gateway's host:port, to show a workload's URL; Domain
	// the suffix of workload hosts (NAME.ENV.DOMAIN).
	Gateway string
	Domain  string
	Logger  *slog.Logger
	// SessionIdle ends a session unused that long (default 8h);
	// SessionMax ends any session that old (default 24h).
	SessionIdle, SessionMax time.Duration
	// LinkTTL is how long a login link works (default 2m).
	LinkTTL time.Duration
	// SampleEvery is the interval of the charts' points (default 5s) and
	// SampleKeep how many each keeps (default 360: half an hour).
	SampleEvery time.Duration
	SampleKeep  int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Dashboard serves the web dashboard under /ui/.
type Dashboard struct {
	cfg       Config
	log       *slog.Logger
	transport http.RoundTripper
	sessions  *sessions
	links     *loginLinks
	pages     map[string]*template.Template
	static    http.Handler
	assetTag  string

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// New builds the dashboard; it starts nothing until a user logs in.
func New(cfg Config) (*Dashboard, error) {
	if cfg.API == nil {
		return nil, errors.New("web: Config.API is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Domain == "" {
		cfg.Domain = "berth.localhost"
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 8 * time.Hour
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = 24 * time.Hour
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 2 * time.Minute
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	if cfg.SampleKeep <= 0 {
		cfg.SampleKeep = 360
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	static, _ := fs.Sub(staticFS, "static")
	tag, err := assetTag(static)
	if err != nil {
		return nil, err
	}
	// Samplers live with the dashboard, not with the request that started
	// them; Run's context (or Close) ends them.
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dashboard{
		cfg: cfg, log: cfg.Logger,
		transport: handlerTransport{h: cfg.API},
		sessions:  newSessions(cfg.SessionIdle, cfg.SessionMax, cfg.Now),
		links:     newLoginLinks(cfg.LinkTTL, cfg.Now),
		pages:     pages,
		static:    http.StripPrefix("/ui/static/", http.FileServerFS(static)),
		assetTag:  tag,
		ctx:       ctx, cancel: cancel,
	}
	return d, nil
}

// Run holds the dashboard's background work (chart sampling) until ctx
// ends.
func (d *Dashboard) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-d.ctx.Done():
	}
	d.Close()
	return nil
}

// Close ends every sampler.
func (d *Dashboard) Close() { d.once.Do(d.cancel) }

// section is an entry of the navigation. A new page (the advisor's
// comparison) adds one here and a route in routes.
type section struct {
	ID, Title, Path string
}

var sections = []section{
	{"environments", "Environments", "/ui/environments"},
	{"traces", "Traces", "/ui/traces"},
	{"images", "Images", "/ui/images"},
}

// Handler serves /ui/ (mount it at /ui/ on the API's mux).
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", d.staticHandler())
	mux.HandleFunc("GET /ui/login", d.loginPage)
	mux.HandleFunc("POST /ui/login", d.loginSubmit)
	mux.HandleFunc("GET /ui/login/link", d.loginLink)
	mux.HandleFunc("POST /ui/login-links", d.issueLoginLink)
	mux.HandleFunc("POST /ui/logout", d.logout)

	page := func(pattern string, get pageFunc, actions map[string]actionFunc) {
		mux.Handle("GET "+pattern, d.authed(d.pageHandler(get, nil)))
		if actions != nil {
			mux.Handle("POST "+pattern, d.authed(d.pageHandler(get, actions)))
		}
	}
	mux.Handle("GET /ui/{$}", d.authed(func(w http.ResponseWriter, r *http.Request, rq *request) {
		http.Redirect(w, r, "/ui/environments", http.StatusSeeOther)
	}))
	page("/ui/environments", d.environmentsPage, nil)
	page("/ui/env/{env}", d.environmentPage, map[string]actionFunc{
		"publish": d.publishAction, "delete": d.deleteEnvironmentAction,
	})
	for _, plural := range []string{"services", "functions"} {
		page("/ui/env/{env}/"+plural+"/{name}", d.workloadPage, map[string]actionFunc{
			"scale": d.scaleAction, "undo": d.undoAction, "invoke": d.invokeAction, "delete": d.deleteWorkloadAction,
		})
		page("/ui/env/{env}/"+plural+"/{name}/logs", d.logsPage, nil)
		mux.Handle("GET /ui/env/{env}/"+plural+"/{name}/logs/stream", d.authed(d.logStream))
	}
	page("/ui/env/{env}/workflows/{name}", d.workflowPage, map[string]actionFunc{
		"start": d.startAction, "delete": d.deleteWorkflowAction,
	})
	page("/ui/env/{env}/executions/{id}", d.executionPage, map[string]actionFunc{"stop": d.stopAction})
	page("/ui/traces", d.tracesPage, nil)
	page("/ui/traces/{id}", d.tracePage, nil)
	page("/ui/images", d.imagesPage, map[string]actionFunc{"remove": d.removeImageAction})
	mux.Handle("GET /ui/live", d.authed(d.live))
	mux.Handle("/ui/", d.authed(func(w http.ResponseWriter, r *http.Request, rq *request) {
		d.renderError(w, r, rq, v1.NotFound("no dashboard page at %s", r.URL.Path))
	}))
	return d.secure(mux)
}

// secure sets the headers every answer carries: scripts, styles and
// connections only from this origin (no inline script or style: the
// templates need none), no framing, no referrer to other sites (a login
// link's code must not leak through one).
func (d *Dashboard) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func (d *Dashboard) staticHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Asset URLs carry a hash of the assets (?v=), so they may be
		// kept for long: a new binary's pages ask for new URLs.
		if r.URL.Query().Get("v") == d.assetTag {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		d.static.ServeHTTP(w, r)
	})
}

// request is what a page handler gets: the session and a client that
// calls the API as the session's token.
type request struct {
	s *session
	c *client.Client
}

func (d *Dashboard) clientFor(r *http.Request, token string) *client.Client {
	return client.New(client.Config{Addr: "http://api.berth.internal", Token: token,
		HTTPClient: &http.Client{Transport: d.transport}})
}

// apiContext is r's context carrying the browser's address for the API.
func apiContext(r *http.Request) context.Context {
	return withRemoteAddr(r.Context(), r.RemoteAddr)
}

type authedFunc func(w http.ResponseWriter, r *http.Request, rq *request)

// authed admits requests of a live session; others go to the login page
// (a page) or get 401 (the live stream, whose script reloads to the
// login).
func (d *Dashboard) authed(h authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.sessions.get(r)
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("X-Berth-Live") == "" && !strings.HasSuffix(r.URL.Path, "/stream") && r.URL.Path != "/ui/live" {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		h(w, r.WithContext(apiContext(r)), &request{s: s, c: d.clientFor(r, s.token)})
	})
}

// view is what every template gets.
type view struct {
	Title    string
	Section  string
	Who      v1.WhoAmI
	CSRF     string
	Flash    string
	Result   *actionResult
	Env      string
	Envs     []string
	Watch    string // "Kind:name …": the changes that refresh the page
	Metrics  bool   // refresh on each new chart point
	Crumbs   []crumb
	Sections []section
	Asset    string
	Data     any
}

type crumb struct{ Title, Path string }

// pageFunc fills a page's view (Title, Data…) or answers an error.
type pageFunc func(r *http.Request, rq *request, v *view) (string, error)

// actionResult is what an action did: a message, its output, or the API's
// error, shown on the page the form was on.
type actionResult struct {
	Action   string
	Message  string
	Err      *v1.Error
	Output   string
	Status   int
	Redirect string // after success: go there (Post/Redirect/Get)
	Form     map[string]string
}

type actionFunc func(r *http.Request, rq *request) *actionResult

func (d *Dashboard) pageHandler(get pageFunc, actions map[string]actionFunc) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		var res *actionResult
		status := http.StatusOK
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 2<<20)
			if err := r.ParseForm(); err != nil {
				d.renderError(w, r, rq, v1.Invalid("the form did not read: %v", err))
				return
			}
			if !rq.s.validCSRF(r) {
				d.renderError(w, r, rq, v1.Errorf(v1.ErrForbidden, "this form is from an older page or another session; reload the page and try again"))
				return
			}
			name := r.PostFormValue("action")
			act := actions[name]
			if act == nil {
				d.renderError(w, r, rq, v1.Invalid("no action %q on this page", name))
				return
			}
			res = act(r, rq)
			res.Action = name
			if res.Err == nil && res.Redirect != "" {
				rq.s.setFlash(res.Message)
				http.Redirect(w, r, res.Redirect, http.StatusSeeOther)
				return
			}
			if res.Err != nil {
				if res.Err.Kind == v1.ErrUnauthorized {
					d.expired(w, r, rq)
					return
				}
				status = statusOf(res.Err.Kind)
			}
		}
		v := d.newView(r, rq)
		v.Result = res
		tmpl, err := get(r, rq, v)
		if err != nil {
			d.renderError(w, r, rq, err)
			return
		}
		d.render(w, tmpl, status, v)
	}
}

func (d *Dashboard) newView(r *http.Request, rq *request) *view {
	v := &view{Who: rq.s.who, CSRF: rq.s.csrf, Sections: sections, Asset: d.assetTag}
	if r.Header.Get("X-Berth-Live") == "" {
		v.Flash = rq.s.takeFlash()
	}
	return v
}

func (d *Dashboard) render(w http.ResponseWriter, name string, status int, v *view) {
	t := d.pages[name]
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		d.log.Error("dashboard template", "template", name, "err", err)
		http.Error(w, "the page could not be drawn; the server log has the details", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// asAPIError is err as the API said it, or an Internal one.
func asAPIError(err error) *v1.Error {
	var e *v1.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return v1.Errorf(v1.ErrUnavailable, "%v", err)
	}
	return v1.Errorf(v1.ErrInternal, "%v", err)
}

func (d *Dashboard) renderError(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	e := asAPIError(err)
	if e.Kind == v1.ErrUnauthorized && rq != nil {
		d.expired(w, r, rq)
		return
	}
	v := &view{Title: e.Kind, Sections: sections, Asset: d.assetTag, Data: e}
	if rq != nil {
		v.Who, v.CSRF = rq.s.who, rq.s.csrf
	}
	d.render(w, "error", statusOf(e.Kind), v)
}

// expired ends a session whose token the API no longer takes (revoked,
// or its environment deleted) and sends the user to log in again.
func (d *Dashboard) expired(w http.ResponseWriter, r *http.Request, rq *request) {
	d.sessions.drop(rq.s)
	setCookie(w, r, "", -1)
	if r.Header.Get("X-Berth-Live") != "" {
		http.Error(w, "the session's token is no longer valid", http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, "/ui/login?expired=1", http.StatusSeeOther)
}

// ---- login ----

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Log in", Asset: d.assetTag}
	msg := ""
	switch {
	case r.URL.Query().Get("expired") != "":
		msg = "Your session ended, or its token is no longer valid. Log in again."
	case r.URL.Query().Get("link") != "":
		msg = "That login link has expired or was already used. Run `berth dashboard` again, or paste a token."
	}
	v.Data = loginData{Next: safeNext(r.URL.Query().Get("next")), Message: msg}
	d.render(w, "login", http.StatusOK, v)
}

type loginData struct {
	Next, Message string
	Err           *v1.Error
}

// safeNext keeps a post-login destination on this dashboard.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/environments"
	}
	if p := path.Clean(strings.SplitN(next, "?", 2)[0]); !strings.HasPrefix(p+"/", "/ui/") {
		return "/ui/environments"
	}
	return next
}

// sameOrigin refuses a login or logout posted from another site's page
// (the session cookie is SameSite=Strict; the login has no session yet).
// A browser says where a request comes from in Sec-Fetch-Site; one that
// does not, in Origin.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (d *Dashboard) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	fail := func(e *v1.Error) {
		v := &view{Title: "Log in", Asset: d.assetTag, Data: loginData{Next: next, Err: e}}
		d.render(w, "login", statusOf(e.Kind), v)
	}
	if !sameOrigin(r) {
		fail(v1.Errorf(v1.ErrForbidden, "a login must come from this dashboard's own page"))
		return
	}
	if token == "" {
		fail(v1.FieldError("token", "paste a token: `berth token create` makes one, and the server wrote the admin token to DATA/token"))
		return
	}
	if err := d.startSession(w, r, token); err != nil {
		fail(asAPIError(err))
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) startSession(w http.ResponseWriter, r *http.Request, token string) error {
	c := d.clientFor(r, token)
	who, err := c.WhoAmI(apiContext(r))
	if err != nil {
		return err
	}
	h := newHistory(d.ctx, d.cfg.SampleEvery, d.cfg.SampleKeep, c.Metrics, d.cfg.Now, d.log)
	s := d.sessions.create(token, who, h)
	setCookie(w, r, s.id, 0)
	d.log.Info("dashboard login", "token", who.Name, "role", who.Role, "remote", r.RemoteAddr)
	return nil
}

func (d *Dashboard) loginLink(w http.ResponseWriter, r *http.Request) {
	token, ok := d.links.redeem(r.URL.Query().Get("code"))
	if !ok {
		http.Redirect(w, r, "/ui/login?link=expired", http.StatusSeeOther)
		return
	}
	if err := d.startSession(w, r, token); err != nil {
		v := &view{Title: "Log in", Asset: d.assetTag, Data: loginData{Next: "/ui/environments", Err: asAPIError(err)}}
		d.render(w, "login", http.StatusUnauthorized, v)
		return
	}
	// The code leaves the address bar and the history at once.
	http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// issueLoginLink makes a one-use login link for the bearer token of the
// request (`berth dashboard`), after the API has taken the token.
func (d *Dashboard) issueLoginLink(w http.ResponseWriter, r *http.Request) {
	writeErr := func(e *v1.Error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(statusOf(e.Kind))
		json.NewEncoder(w).Encode(v1.Status{Error: v1.ErrorBody{Kind: e.Kind, Message: e.Message, Field: e.Field}})
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		writeErr(v1.Errorf(v1.ErrUnauthorized, "missing bearer token: send Authorization: Bearer TOKEN"))
		return
	}
	if _, err := d.clientFor(r, token).WhoAmI(apiContext(r)); err != nil {
		writeErr(asAPIError(err))
		return
	}
	code, exp := d.links.issue(token)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(v1.DashboardLink{Path: "/ui/login/link?code=" + code, Expires: exp})
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if s := d.sessions.get(r); s != nil && sameOrigin(r) && s.validCSRF(r) {
		d.sessions.drop(s)
	}
	setCookie(w, r, "", -1)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// ---- live updates ----

// live is the page's event stream (server-sent events): the names of
// changed objects, from the API's watch with the session's token, a
// "resync" when a watch from now starts (the page redraws once: a change
// made since it was drawn came before the watch), and a tick after each
// new chart point. The page's script decides what to
// redraw; no page polls.
func (d *Dashboard) live(w http.ResponseWriter, r *http.Request, rq *request) {
	ctx := r.Context()
	env := r.URL.Query().Get("env")
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	send := func(event, data string) bool {
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if _, err := io.WriteString(w, "retry: 3000\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	ticks, stop := rq.s.history.subscribe()
	defer stop()

	ctx, cancel := context.WithCancel(ctx)
	ended := make(chan string, 1)
	watching := make(chan struct{})
	// The watch writes to w: it must be over before the handler returns.
	defer func() { cancel(); <-watching }()
	go func() {
		defer close(watching)
		var last uint64
		for ctx.Err() == nil {
			err := rq.c.Watch(ctx, client.WatchOptions{Environment: env, ResourceVersion: last}, func(ev v1.WatchEvent) error {
				first := last == 0
				last = ev.ResourceVersion
				if ev.Type == v1.WatchBookmark {
					// Watching from now: what changed between the page's
					// drawing and now is not in the stream, so the page
					// draws itself once more.
					if first && !send("resync", "{}") {
						return context.Canceled
					}
					return nil
				}
				b, _ := json.Marshal(ev)
				if !send("change", string(b)) {
					return context.Canceled
				}
				return nil
			})
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				// The server ended the stream: go on from the last change.
			case v1.KindOf(err) == v1.ErrConflict:
				// Too far behind: watch from now, which resyncs the page.
				last = 0
			default:
				ended <- asAPIError(err).Kind
				return
			}
		}
	}()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case kind := <-ended:
			// The page's script reloads on "expired" (the login page
			// follows); other ends it retries as EventSource does.
			if kind == v1.ErrUnauthorized {
				send("expired", "{}")
			}
			return
		case <-ticks:
			if !send("metrics", "{}") {
				return
			}
		case <-keepalive.C:
			mu.Lock()
			_, err := io.WriteString(w, ": keepalive\n\n")
			if err == nil {
				err = rc.Flush()
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}
