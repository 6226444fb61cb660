package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
)

const cookieName = "berth_session"

// session is one browser's login: the API token it acts with (kept here,
// never sent back to the browser after the login form), who that token
// is, the form token that proves a POST came from a page of this session,
// and the metrics history its charts draw.
type session struct {
	id      string
	token   string
	who     v1.WhoAmI
	csrf    string
	created time.Time

	mu       sync.Mutex
	lastSeen time.Time
	flash    string

	history *history
}

func (s *session) touch(now time.Time) {
	s.mu.Lock()
	s.lastSeen = now
	s.mu.Unlock()
}

// takeFlash answers the message an action left for the next page, once.
func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

// sessions are kept in memory: a restarted server asks everyone to log in
// again, which costs a paste or a `berth dashboard`, and no session
// outlives the process that could check it.
type sessions struct {
	idle, max time.Duration
	now       func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, max: max, now: now, byID: map[string]*session{}}
}

func randomID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (ss *sessions) create(token string, who v1.WhoAmI, h *history) *session {
	now := ss.now()
	s := &session{id: randomID(), token: token, who: who, csrf: randomID(), created: now, lastSeen: now, history: h}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweepLocked(now)
	ss.byID[s.id] = s
	return s
}

// get answers the live session of r's cookie, or nil.
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[c.Value]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	expired := now.Sub(s.lastSeen) > ss.idle || now.Sub(s.created) > ss.max
	s.mu.Unlock()
	if expired {
		ss.dropLocked(s)
		return nil
	}
	s.touch(now)
	return s
}

func (ss *sessions) drop(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.dropLocked(s)
}

func (ss *sessions) dropLocked(s *session) {
	delete(ss.byID, s.id)
	s.history.close()
}

func (ss *sessions) sweepLocked(now time.Time) {
	for _, s := range ss.byID {
		s.mu.Lock()
		expired := now.Sub(s.lastSeen) > ss.idle || now.Sub(s.created) > ss.max
		s.mu.Unlock()
		if expired {
			ss.dropLocked(s)
		}
	}
}

// setCookie: HttpOnly (no script reads it), SameSite=Strict (no other
// site's page sends it), and scoped to /ui/ (the API never sees it: it
// takes bearer tokens only).
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: "/ui/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// validCSRF says whether a form carries the session's form token.
func (s *session) validCSRF(r *http.Request) bool {
	got := r.PostFormValue("_csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// loginLinks are one-use codes that stand for a token for a short while:
// `berth dashboard` asks for one with its token and prints a link, so the
// token itself never appears in a URL, a browser's history or a terminal's
// scrollback.
type loginLinks struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	codes map[string]loginLink
}

type loginLink struct {
	token   string
	expires time.Time
}

func newLoginLinks(ttl time.Duration, now func() time.Time) *loginLinks {
	return &loginLinks{ttl: ttl, now: now, codes: map[string]loginLink{}}
}

func (l *loginLinks) issue(token string) (string, time.Time) {
	now := l.now()
	code := randomID()
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, ln := range l.codes {
		if now.After(ln.expires) {
			delete(l.codes, c)
		}
	}
	exp := now.Add(l.ttl)
	l.codes[code] = loginLink{token: token, expires: exp}
	return code, exp
}

// redeem answers the token of code and forgets the code: a link works
// once, and not after it expired.
func (l *loginLinks) redeem(code string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln, ok := l.codes[code]
	delete(l.codes, code)
	if !ok || l.now().After(ln.expires) {
		return "", false
	}
	return ln.token, true
}
