package gateway

import (
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one ready instance of a target.
type Endpoint struct {
	ID       string
	Address  string // ip:port
	Revision int64
	// Transport, when set, serves the endpoint in-process instead of over
	// the network (a Wasm function); Address then only names it.
	Transport http.RoundTripper
}

// Target is a Service or Function as the gateway sees it: where it is
// reachable and which endpoints serve it.
type Target struct {
	Environment string
	Name        string
	Kind        string // "Service" or "Function"
	// RoutePath, when set, also serves the target at this path prefix on
	// any host that is not NAME.ENV under the gateway's domain.
	RoutePath   string
	StripPrefix bool
	// Concurrency caps the requests one endpoint serves at once (a
	// Function's per-instance concurrency); 0 means no cap. Requests over
	// the cap wait in the gateway for a free endpoint.
	Concurrency int
	// Timeout bounds a request's wait for a cold start (a Function's
	// timeout); 0 means the activator's default.
	Timeout   time.Duration
	Endpoints []Endpoint
	// Split shares requests between revisions by percent (summing to
	// 100); empty sends each request to any endpoint. A request whose
	// revision has no usable endpoint goes to another revision's rather
	// than fail.
	Split []RevisionShare
	// Tags are revisions reachable at a host of their own,
	// TAG-NAME.ENV, whatever their share: such a host reaches only its
	// revision's endpoints.
	Tags []Tag
	// Sticky keeps a client on the revision that first answered it, by a
	// cookie (berth-rev-NAME).
	Sticky bool
}

// RevisionShare is one revision's share of a target's requests.
type RevisionShare struct {
	Revision int64
	Percent  int
}

// Tag names a revision reachable at TAG-NAME.ENV.
type Tag struct {
	Name     string
	Revision int64
}

// table is an immutable snapshot of the routing table; SetTargets swaps in a
// new one, so a request never sees half an update.
type table struct {
	byHost map[string]*route // "name.env"
	byPath []*route          // longest RoutePath first
}

type route struct {
	env, name, kind string
	key             string // its host in the table: "name.env", or a tag's
	path            string // normalised RoutePath, "" when none
	strip           bool
	concurrency     int64
	spanName        string // "gateway NAME.ENV"
	endpoints       []*endpoint
	stats           *targetStats
	// split holds each revision's cumulative share out of 100, in order;
	// nil when requests go to any endpoint.
	split []share
	// pin is the only revision a tag's route reaches (0: any).
	pin    int64
	sticky bool
	cookie string // the sticky cookie's name
}

type share struct {
	revision int64
	upTo     int
}

// choose picks the revision a request should reach (0: any): the tag's,
// the one its sticky cookie names while that revision still has a share,
// or the next by weight. fresh says a sticky client should be given the
// cookie.
func (r *route) choose(req *http.Request) (rev int64, fresh bool) {
	if r.pin != 0 {
		return r.pin, false
	}
	if len(r.split) == 0 {
		return 0, r.sticky
	}
	if r.sticky {
		if ck, err := req.Cookie(r.cookie); err == nil {
			if n, err := strconv.ParseInt(ck.Value, 10, 64); err == nil {
				prev := 0
				for _, s := range r.split {
					if s.revision == n && s.upTo > prev {
						return n, false
					}
					prev = s.upTo
				}
			}
		}
	}
	// The k-th split request takes slot k*37 mod 100: every 100 requests
	// in a row visit each of the 100 slots once, interleaved, so the
	// shares hold exactly over any hundred requests rather than within a
	// draw's chance (a random draw missed 70/30 by more than a point over
	// 10,000 requests about once in 35 runs).
	n := int(r.stats.splitSeq.Add(1) * 37 % 100)
	for _, s := range r.split {
		if n < s.upTo {
			return s.revision, r.sticky
		}
	}
	return 0, r.sticky
}

// endpoint is the live state of one endpoint. It outlives table snapshots:
// the same *endpoint is reused while SetTargets keeps listing its ID, so
// in-flight counts and the drained mark survive table swaps.
type endpoint struct {
	id       string
	address  string
	revision atomic.Int64 // a new table may name a new revision at the same address
	// transport serves the endpoint in-process (Endpoint.Transport).
	transport http.RoundTripper

	inflight atomic.Int64
	// limit is the target's per-endpoint concurrency (0: none) and freed
	// is told when a request ends below it.
	limit   atomic.Int64
	freed   atomic.Pointer[targetStats]
	drained atomic.Bool
	// removed is set once the endpoint is no longer listed; the gateway
	// forgets it when its last in-flight request ends.
	removed atomic.Bool

	mu   sync.Mutex
	idle chan struct{} // closed when a drained endpoint reaches zero in flight

	// pool holds idle HTTP/1.1 connections to the endpoint.
	pool connPool

	// Passive health: fails counts connection failures in a row; after
	// failThreshold of them the endpoint gets no requests until downUntil
	// (unix nanoseconds), unless every other endpoint is down too.
	fails     atomic.Int32
	downUntil atomic.Int64
}

// Passive health check bounds, as Caddy's: an endpoint whose connections
// fail this many times in a row rests for failCooldown.
const (
	failThreshold = 3
	failCooldown  = 10 * time.Second
)

// failed notes a connection failure (refused, reset, timed out).
func (e *endpoint) failed(g *Gateway) {
	if n := e.fails.Add(1); n >= failThreshold {
		until := time.Now().Add(failCooldown).UnixNano()
		if e.downUntil.Swap(until) < time.Now().UnixNano() {
			g.log.Warn("endpoint failing, taken out of rotation", "endpoint", e.id, "address", e.address,
				"failures", n, "for", failCooldown)
		}
	}
}

// succeeded notes an answer: the endpoint is healthy again.
func (e *endpoint) succeeded() {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
		e.downUntil.Store(0)
	}
}

// down reports an endpoint resting after repeated failures.
func (e *endpoint) down(now int64) bool {
	u := e.downUntil.Load()
	return u != 0 && now < u
}

// tryAcquire counts a request against e unless e is drained. The increment
// comes before the drained check so that Drain, which sets drained before
// reading the count, either sees this request or this request sees drained.
func (e *endpoint) tryAcquire(g *Gateway) bool {
	if limit := e.limit.Load(); limit > 0 {
		for {
			n := e.inflight.Load()
			if n >= limit {
				return false
			}
			if e.inflight.CompareAndSwap(n, n+1) {
				break
			}
		}
	} else {
		e.inflight.Add(1)
	}
	if e.drained.Load() {
		e.release(g)
		return false
	}
	return true
}

// full reports an endpoint serving as many requests as it may.
func (e *endpoint) full() bool {
	limit := e.limit.Load()
	return limit > 0 && e.inflight.Load() >= limit
}

func (e *endpoint) release(g *Gateway) {
	n := e.inflight.Add(-1)
	if f := e.freed.Load(); f != nil && e.limit.Load() > 0 {
		f.signal()
	}
	if n != 0 {
		return
	}
	if e.drained.Load() {
		e.mu.Lock()
		if e.idle != nil {
			close(e.idle)
			e.idle = nil
		}
		e.mu.Unlock()
	}
	if e.removed.Load() {
		g.forget(e)
	}
}

// idleChan returns nil when e has nothing in flight, otherwise a channel
// closed when it reaches zero. Only meaningful once e is drained.
func (e *endpoint) idleChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight.Load() == 0 {
		return nil
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
	}
	return e.idle
}

// pick chooses an endpoint of r by power of two random choices on in-flight
// count, skipping drained endpoints and those in exclude, and returns it
// acquired. It prefers endpoints of revision want (0: any), and takes
// another revision's when want has none eligible. It returns nil when no
// endpoint is eligible, with full set when that is only because every one
// left is at its concurrency cap: the caller should wait for a slot. The
// verdict is the scan's own: asked again afterwards, a slot freed in
// between would turn "all full" into "none at all", and a request that
// should have waited failed with 503 (under steady load on a function
// scaled down to one instance).
func (r *route) pick(g *Gateway, exclude []*endpoint, want int64) (e *endpoint, full bool) {
	var buf [16]*endpoint
	var now int64
	for {
		cands := buf[:0]
		resting, usable := 0, 0
		for _, e := range r.endpoints {
			if want != 0 && e.revision.Load() != want {
				continue
			}
			if !e.drained.Load() && !contains(exclude, e) {
				usable++
			}
			if !e.drained.Load() && !contains(exclude, e) && !e.full() {
				if d := e.downUntil.Load(); d != 0 {
					if now == 0 {
						now = time.Now().UnixNano()
					}
					if now < d {
						resting++
						continue
					}
				}
				cands = append(cands, e)
			}
		}
		if len(cands) == 0 && resting > 0 {
			// Every eligible endpoint is resting: try them rather than
			// fail without trying.
			for _, e := range r.endpoints {
				if want != 0 && e.revision.Load() != want {
					continue
				}
				if !e.drained.Load() && !contains(exclude, e) && !e.full() {
					cands = append(cands, e)
				}
			}
		}
		switch len(cands) {
		case 0:
			if want != 0 {
				// The revision has nothing to offer (starting, drained,
				// failing): another revision serves rather than nobody.
				want = 0
				continue
			}
			// Every usable endpoint was full, or there was none.
			return nil, usable > 0
		case 1:
			e = cands[0]
		default:
			i := rand.IntN(len(cands))
			j := rand.IntN(len(cands) - 1)
			if j >= i {
				j++
			}
			e = cands[i]
			if cands[j].inflight.Load() < e.inflight.Load() {
				e = cands[j]
			}
		}
		if e.tryAcquire(g) {
			return e, false
		}
		// Drained or filled between the scan and the acquire: scan again.
	}
}

func (r *route) ready() bool {
	for _, e := range r.endpoints {
		if !e.drained.Load() {
			return true
		}
	}
	return false
}

func contains(es []*endpoint, e *endpoint) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

// normalisePath makes "/api/" and "api" into "/api"; "/" stays "/".
func normalisePath(p string) string {
	if p == "" {
		return ""
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	return p
}

// matchPath reports whether path is under prefix on a segment boundary:
// "/api" matches "/api" and "/api/x" but not "/api2".
func matchPath(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func (t *table) lookupPath(path string) *route {
	for _, r := range t.byPath {
		if matchPath(r.path, path) {
			return r
		}
	}
	return nil
}

func sortByPath(rs []*route) {
	sort.SliceStable(rs, func(i, j int) bool {
		if len(rs[i].path) != len(rs[j].path) {
			return len(rs[i].path) > len(rs[j].path)
		}
		if rs[i].env != rs[j].env {
			return rs[i].env < rs[j].env
		}
		return rs[i].name < rs[j].name
	})
}

// inProcess reports a route served by in-process endpoints (a Wasm
// function's), which the gateway's own HTTP/1.1 client cannot dial.
func (r *route) inProcess() bool {
	for _, e := range r.endpoints {
		if e.transport != nil {
			return true
		}
	}
	return false
}
