//go:build linux

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/gateway/h1"
)

// The gateway's event loops: the plain HTTP/1.1 request to a ready
// endpoint over the network, the request nearly every client sends, is
// served as nginx serves it. A loop per core owns its connections, to the
// clients and to the endpoints alike, waits for all of them in one
// epoll_wait and reads a socket only once the kernel says it has bytes.
// A goroutine per connection (Server's, net/http's) pays on every request
// for a read that finds nothing yet, a park and a wake-up through Go's
// poller and scheduler; on two cores shared with the load and the
// workloads that cost as much as the proxying itself.
//
// A loop handles a request whose whole body (up to 64 KiB) it can hold
// and whose target has an endpoint with a free slot at once; the answer
// may be of any length and framing, and streams (server-sent events, a
// long poll) with backpressure: the endpoint is not read while the client
// has 256 KiB unread. Anything else (h2c, protocol switches, 100-continue,
// chunked or large request bodies, platform hosts, a target at zero or at
// its concurrency cap, a miss) hands the connection, with the bytes read
// of it, to Server's goroutines, which serve it from then on exactly as
// before.

const (
	loopSweepEvery  = 250 * time.Millisecond
	loopYieldEvery  = 500 * time.Microsecond
	loopMaxHead     = 8 << 10  // a plain head longer than this is Server's
	loopMaxAnswer   = 64 << 10 // response head bytes, trailers
	loopReadBufSize = 64 << 10
)

// loopHighWater is how many unsent bytes to a client pause its endpoint
// (a variable for one test; each server's loops take it when made).
var loopHighWater = 256 << 10

// loopSpin: while busy a loop polls without waiting (see run);
// BERTH_GATEWAY_LOOP_SPIN=0 makes every wait a blocking one, to compare.
var loopSpin = os.Getenv("BERTH_GATEWAY_LOOP_SPIN") != "0"

// loops are a Server's event loops for a *Gateway.
type loops struct {
	s       *Server
	g       *Gateway
	ls      []*evloop
	next    atomic.Uint32
	clients atomic.Int64
	closing atomic.Bool
	// served counts the requests the loops answered, handedOff the
	// connections they gave to Server (for tests and the bench).
	served    atomic.Int64
	handedOff atomic.Int64
	highWater int // loopHighWater when the loops were made
}

// loopsEnabled: BERTH_GATEWAY_LOOPS=0 serves every connection on
// goroutines, as before the loops (to compare them); a number above 0 is
// how many loops to run (default: GOMAXPROCS).
func loopsEnabled() bool { return os.Getenv("BERTH_GATEWAY_LOOPS") != "0" }

func newLoops(s *Server, g *Gateway) (*loops, error) {
	lp := &loops{s: s, g: g, highWater: loopHighWater}
	n := runtime.GOMAXPROCS(0)
	if v, err := strconv.Atoi(os.Getenv("BERTH_GATEWAY_LOOPS")); err == nil && v > 0 {
		n = v
	}
	for range n {
		l, err := newEvloop(lp)
		if err != nil {
			lp.close()
			return nil, err
		}
		lp.ls = append(lp.ls, l)
	}
	// The loops share the process's Ps with the rest of the server: one
	// more P per loop (tried) let more threads contend for the two cores
	// and cost a fifth of the throughput in bench/platform.
	for _, l := range lp.ls {
		go l.run()
	}
	return lp, nil
}

// take gives an accepted connection to a loop; false leaves it to the
// caller (not TCP, or no descriptor to be had).
func (lp *loops) take(nc net.Conn) bool {
	inner, slot := connlimit.Detach(nc)
	tc, ok := inner.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return false
	}
	remote := tc.RemoteAddr().String()
	// The duplicate shares the socket (non-blocking, TCP_NODELAY as Go
	// set them); closing Go's descriptor takes it out of Go's poller.
	tc.Close()
	c := &lconn{fd: fd, slot: slot, remote: remote, first: true}
	l := lp.ls[int(lp.next.Add(1))%len(lp.ls)]
	lp.clients.Add(1)
	if !l.do(func() { l.addClient(c) }) {
		lp.clients.Add(-1)
		unix.Close(fd)
		slot.Release()
	}
	return true
}

// shutdown closes idle connections and closes the others after their
// answer; done reports when none is left.
func (lp *loops) shutdown() {
	lp.closing.Store(true)
	for _, l := range lp.ls {
		l.do(l.closeIdleClients)
	}
}

func (lp *loops) active() int64 { return lp.clients.Load() }

// close cuts every connection and stops the loops.
func (lp *loops) close() {
	lp.closing.Store(true)
	for _, l := range lp.ls {
		l.do(l.exit)
	}
}

// evloop is one event loop: its epoll set, connections and idle
// connections to endpoints. Only its goroutine touches them; others hand
// it work through do.
type evloop struct {
	lp   *loops
	g    *Gateway
	epfd int
	// ep is epfd in Go's poller: an idle loop parks there, as any
	// goroutine waiting for a socket does, rather than block a thread
	// (and its P) in epoll_wait.
	ep    *os.File
	eprc  syscall.RawConn
	evfd  int
	mu    sync.Mutex
	tasks []func()
	dead  bool

	conns     map[int]*lconn // by descriptor, to go through them all
	byFD      []*lconn       // the same, indexed: the lookup of every event
	gen       int32          // of the last connection added
	idle      map[*endpoint][]*lconn
	rbuf      []byte
	now       time.Time
	lastSweep time.Time
	yielded   time.Time // the last time the loop let others run while busy
	stop      bool

	reqw    *bufio.Writer // serialises a request into sink
	sink    sliceWriter
	ew      memWriter
	dateSec int64
	date    []byte
}

func newEvloop(lp *loops) (*evloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(epfd), "gateway epoll")
	eprc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(evfd)
		return nil, err
	}
	l := &evloop{lp: lp, g: lp.g, epfd: epfd, ep: ep, eprc: eprc, evfd: evfd,
		conns: map[int]*lconn{}, idle: map[*endpoint][]*lconn{},
		rbuf: make([]byte, loopReadBufSize)}
	l.reqw = bufio.NewWriterSize(&l.sink, 4<<10)
	l.ew.hdr = make(http.Header, 4)
	return l, nil
}

// do runs f on the loop; false once the loop has stopped.
func (l *evloop) do(f func()) bool {
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		return false
	}
	l.tasks = append(l.tasks, f)
	wake := len(l.tasks) == 1
	l.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		unix.Write(l.evfd, one[:])
	}
	return true
}

func (l *evloop) runTasks() {
	var b [8]byte
	unix.Read(l.evfd, b[:])
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

func (l *evloop) run() {
	events := make([]unix.EpollEvent, 256)
	// While events keep coming the loop only looks (a wait of 0, outside
	// Go's scheduler). Once a look finds nothing it lets other goroutines
	// run and waits up to a millisecond in epoll_wait, holding its P: the
	// next request of a busy connection is usually that close, and
	// getting a P back after parking costs a wake-up. A loop idle for
	// that long parks in Go's poller (waitParked), where it holds no
	// thread and no P: a blocking wait of its own left other goroutines
	// queued on its P until Go's monitor took the P back, up to 10 ms
	// (route changes took 30 ms to reach the gateway under load).
	const (
		spinning = iota
		warm
		parked
	)
	mode := parked
	for !l.stop {
		var n int
		var err error
		switch {
		case mode == spinning && loopSpin:
			n, err = pollNow(l.epfd, events)
		case mode == warm || (mode == spinning && !loopSpin):
			n, err = unix.EpollWait(l.epfd, events, 1)
		default:
			n, err = l.wait(events)
		}
		if err != nil && err != unix.EINTR {
			l.g.log.Error("gateway event loop failed", "err", err)
			break
		}
		busy := n > 0
		switch {
		case busy:
			mode = spinning
		case mode == spinning:
			mode = warm
			runtime.Gosched()
			continue
		case mode == warm:
			mode = parked
			continue
		}
		l.now = time.Now()
		if busy && l.now.Sub(l.yielded) > loopYieldEvery {
			// A loop kept busy never blocks: the rest of the server (the
			// controllers pushing route changes among them) would wait
			// for Go's preemption, 10 ms at a time.
			l.yielded = l.now
			runtime.Gosched()
		}
		for i := 0; i < n; i++ {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				l.runTasks()
				continue
			}
			// A descriptor closed and reused within one batch of events
			// must not take the old connection's events: the generation
			// tells them apart.
			if c := l.lookup(fd); c != nil && c.gen == ev.Pad {
				if c.up {
					l.upEvent(c, ev.Events)
				} else {
					l.clientEvent(c, ev.Events)
				}
			}
		}
		if l.now.Sub(l.lastSweep) >= loopSweepEvery {
			l.lastSweep = l.now
			l.sweep()
		}
	}
	l.mu.Lock()
	l.dead = true
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f() // a client handed over meanwhile is closed by exit's state
	}
	for _, c := range l.conns {
		l.closeConn(c)
	}
	l.ep.Close()
	unix.Close(l.evfd)
}

// wait waits for events in Go's poller, until the next sweep at most.
func (l *evloop) wait(events []unix.EpollEvent) (int, error) {
	var n int
	var perr error
	l.ep.SetReadDeadline(time.Now().Add(loopSweepEvery))
	err := l.eprc.Read(func(fd uintptr) bool {
		n, perr = pollNow(int(fd), events)
		return n > 0 || (perr != nil && perr != unix.EINTR)
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return n, perr
}

// exit cuts every connection and ends the loop.
func (l *evloop) exit() {
	l.stop = true
	for _, c := range l.conns {
		if c.up {
			continue
		}
		if c.q.client != nil && c.st == stBusy {
			l.abort(&c.q, 0)
		}
		l.closeConn(c)
	}
	for _, c := range l.conns {
		l.closeConn(c)
	}
}

func (l *evloop) closeIdleClients() {
	for _, c := range l.conns {
		if !c.up && c.st != stBusy && len(c.in) == 0 {
			l.closeConn(c)
		}
	}
}

// Connection states of a client.
const (
	stHead = iota // waiting for (the rest of) a request head
	stBody        // head read, waiting for the rest of its body
	stBusy        // a request in flight: upstream or its answer
)

// lconn is one connection of a loop: a client's, or an endpoint's (up).
type lconn struct {
	fd       int
	gen      int32 // its registration's, in its epoll events
	up       bool
	interest uint32
	closed   bool
	in       []byte // read, not yet used
	inbuf    []byte // a client's own buffer for in, reused between requests
	out      []byte // to write, from off on
	off      int
	progress time.Time // the last write that moved, while out waits

	// A client's.
	slot         *connlimit.Slot
	remote       string
	st           int
	first        bool
	deadline     time.Time // of the head, the body or the idle wait
	closeAfter   bool      // once out is written
	handOffWaits bool      // handed to Server once out is written
	paused       bool      // not read: too much pipelined meanwhile
	pr           plainRequest
	q            lreq
	body         []byte

	// An endpoint's.
	ep         *endpoint
	connecting bool
	reused     bool
	read       int64
	idleSince  time.Time
	answering  *lreq // the request whose answer it carries
	upPaused   bool  // not read: its client has too much unsent
}

// lreq is the request a client has in flight, reused.
type lreq struct {
	client   *lconn
	up       *lconn
	ep       *endpoint
	c        call
	uri      string
	tried    []*endpoint
	failed   []string
	resend   bool // may go twice: idempotent, body held
	deadline time.Time
	headSent bool
	hbuf     []byte // an answer's head, until whole
	rh       h1.ResponseHead
	mode     int
	left     int64
	chunks   chunkScanner
	reusable bool
	noBody   bool // HEAD
}

// How an answer's body is framed.
const (
	bodyNone    = iota // HEAD, 1xx, 204, 304
	bodyLength         // Content-Length
	bodyChunked        // chunked, relayed as it is
	bodyClose          // to the endpoint's close; chunked to the client
)

func (l *evloop) addClient(c *lconn) {
	if l.stop || l.lp.closing.Load() {
		unix.Close(c.fd)
		c.slot.Release()
		l.lp.clients.Add(-1)
		return
	}
	c.pr.hdr = make(http.Header, 16)
	c.pr.req = new(http.Request).WithContext(l.lp.s.ctx)
	c.q.client = c
	c.deadline = time.Now().Add(l.lp.s.t.ReadHeader)
	l.track(c)
	l.setInterest(c, unix.EPOLLIN|unix.EPOLLRDHUP, true)
}

func (l *evloop) track(c *lconn) {
	l.conns[c.fd] = c
	if c.fd >= len(l.byFD) {
		l.byFD = append(l.byFD, make([]*lconn, c.fd+1-len(l.byFD)+64)...)
	}
	l.byFD[c.fd] = c
}

func (l *evloop) untrack(c *lconn) {
	delete(l.conns, c.fd)
	if c.fd < len(l.byFD) && l.byFD[c.fd] == c {
		l.byFD[c.fd] = nil
	}
}

func (l *evloop) lookup(fd int) *lconn {
	if fd < len(l.byFD) {
		return l.byFD[fd]
	}
	return nil
}

// setInterest changes what epoll reports of c.
func (l *evloop) setInterest(c *lconn, ev uint32, add bool) {
	if !add && ev == c.interest {
		return
	}
	op := unix.EPOLL_CTL_MOD
	if add {
		op = unix.EPOLL_CTL_ADD
		l.gen++
		c.gen = l.gen
	}
	c.interest = ev
	if err := unix.EpollCtl(l.epfd, op, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd), Pad: c.gen}); err != nil && add {
		l.g.log.Warn("gateway event loop: epoll_ctl", "err", err)
	}
}

func (l *evloop) readInterest(c *lconn) uint32 {
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if (c.up && c.upPaused) || (!c.up && c.paused) {
		ev = 0
	}
	if c.off < len(c.out) || c.connecting {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// closeConn closes c; a client gives its slot back.
func (l *evloop) closeConn(c *lconn) {
	if c.closed {
		return
	}
	c.closed = true
	l.untrack(c)
	unix.Close(c.fd) // leaves the epoll set with it
	if !c.up {
		c.slot.Release()
		l.lp.clients.Add(-1)
	}
	c.in, c.out = nil, nil
}

// read reads once from c into the loop's buffer: the bytes, or eof for
// the peer's end or an error.
func (l *evloop) read(c *lconn) (b []byte, eof bool) {
	n, err := rawRead(c.fd, l.rbuf)
	switch {
	case n > 0:
		return l.rbuf[:n], false
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil, false
	}
	return nil, true
}

// flush writes what c has waiting; false when c broke (and was dealt
// with).
func (l *evloop) flush(c *lconn) bool {
	if c.interest&unix.EPOLLOUT == 0 {
		c.progress = l.now // the stall is counted from the first wait
	}
	for c.off < len(c.out) {
		n, err := rawWrite(c.fd, c.out[c.off:])
		if n > 0 {
			c.off += n
			c.progress = l.now
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			l.setInterest(c, l.readInterest(c), false)
			return true
		}
		l.broken(c)
		return false
	}
	if cap(c.out) > 64<<10 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	c.off = 0
	l.setInterest(c, l.readInterest(c), false)
	if !c.up {
		if c.closeAfter {
			l.closeConn(c)
			return false
		}
		if c.handOffWaits {
			l.handOff(c)
			return false
		}
		// The client caught up: its endpoint may be read again.
		if q := &c.q; c.st == stBusy && q.up != nil && q.up.upPaused {
			q.up.upPaused = false
			l.setInterest(q.up, l.readInterest(q.up), false)
		}
	}
	return true
}

// broken deals with a connection that failed a write.
func (l *evloop) broken(c *lconn) {
	if c.up {
		if q := c.answering; q != nil {
			l.upFailed(q, c, errors.New("connection to the endpoint broke"), false)
			return
		}
		l.closeUp(c)
		return
	}
	if c.st == stBusy {
		l.abort(&c.q, 499)
	}
	l.closeConn(c)
}

// clientEvent handles what epoll said of a client.
func (l *evloop) clientEvent(c *lconn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && c.off < len(c.out) {
		if !l.flush(c) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 ||
		(c.paused && ev&(unix.EPOLLHUP|unix.EPOLLERR) == 0) {
		return
	}
	b, eof := l.read(c)
	if eof {
		if c.st == stBusy {
			// The client left (or half-closed) while its answer was
			// coming: as net/http ends the request's context.
			l.abort(&c.q, 499)
		}
		l.closeConn(c)
		return
	}
	if len(b) == 0 {
		return
	}
	if len(c.in) == 0 {
		if c.inbuf == nil {
			c.inbuf = make([]byte, 0, 4<<10)
		}
		c.in = c.inbuf[:0] // its own buffer again, once all was used
	}
	c.in = append(c.in, b...)
	switch c.st {
	case stBusy:
		if len(c.in) > loopReadBufSize {
			c.paused = true
			l.setInterest(c, l.readInterest(c), false)
		}
	default:
		l.serveNext(c)
	}
}

// serveNext starts the request c's buffer opens with, if whole.
func (l *evloop) serveNext(c *lconn) {
	// Nothing more is read of a connection that is closing (its last
	// request said so, or an error answer ends it) or waiting to be
	// handed off.
	for !c.closed && !c.closeAfter && !c.handOffWaits && c.st != stBusy && len(c.in) > 0 {
		hd := &c.pr.head
		if c.st == stHead {
			switch h1.Parse(c.in, hd) {
			case h1.Incomplete:
				if len(c.in) >= loopMaxHead {
					l.handOff(c)
					return
				}
				if !c.first && c.deadline.Sub(l.now) > l.lp.s.t.ReadHeader {
					// The idle wait is over: the head has its own time.
					c.deadline = l.now.Add(l.lp.s.t.ReadHeader)
				}
				return
			case h1.Reject:
				l.answerError(c, v1.ErrInvalid, "both Content-Length and Transfer-Encoding", true)
				return
			case h1.NotPlain:
				l.handOff(c)
				return
			}
			if hd.ContentLength > replayLimit || hd.ContentLength > l.g.cfg.MaxBodyBytes {
				l.handOff(c)
				return
			}
			c.first = false
			c.st = stBody
			t := l.lp.s.t
			c.deadline = l.now.Add(t.BodyGrace + time.Duration(max(hd.ContentLength, 0))*time.Second/time.Duration(max(t.MinBodyRate, 1)))
		}
		if int64(len(c.in)) < int64(hd.Len)+max(hd.ContentLength, 0) {
			return
		}
		l.start(c)
	}
}

// start routes the request and sends it, or hands the connection over.
func (l *evloop) start(c *lconn) {
	g := l.g
	hd := &c.pr.head
	if !c.pr.build(c.in, c.remote) {
		l.handOff(c)
		return
	}
	r := c.pr.req
	if len(g.platform) > 0 {
		if h, _, _ := g.platformTarget(r.Host, ""); h != nil {
			l.handOff(c)
			return
		}
	}
	if g.cfg.WaitForTable > 0 {
		select {
		case <-g.loaded:
		default:
			l.handOff(c)
			return
		}
	}
	rt, _ := g.route(g.table.Load(), r, "", false)
	if rt == nil || !rt.ready() || rt.inProcess() {
		l.handOff(c)
		return
	}
	want, stick := rt.choose(r)
	e, _ := rt.pick(g, nil, want)
	if e == nil {
		// At the cap (Server's path waits for a slot), or none usable.
		l.handOff(c)
		return
	}
	// Committed: the request leaves the buffer.
	n := int(max(hd.ContentLength, 0))
	c.body = append(c.body[:0], c.in[hd.Len:hd.Len+n]...)
	c.in = c.in[hd.Len+n:]
	if len(c.in) == 0 {
		c.in = nil
	}
	c.st = stBusy
	q := &c.q
	q.c = call{route: rt, start: l.now, ctx: r.Context(), want: want, stick: stick, replayable: true}
	if n > 0 {
		q.c.body = c.body
	}
	r.Body, r.ContentLength = http.NoBody, int64(n)
	if g.tracer != nil {
		q.c.span = &q.c.spanMem
		q.c.ctx = g.startServerSpan(q.c.ctx, q.c.span, r, rt, l.now)
	}
	rt.stats.arrivals.Add(1)
	rt.stats.active.Add(1)
	q.uri = outURI(rt, r)
	forwardHeaders(r, r.Header)
	q.resend = idempotent(r)
	q.noBody = r.Method == http.MethodHead
	q.tried = append(q.tried[:0], e)
	q.failed = q.failed[:0]
	l.attempt(q, e, true)
}

// attempt sends q to e, acquired, on an idle connection when pooled,
// else a new one.
func (l *evloop) attempt(q *lreq, e *endpoint, pooled bool) {
	g := l.g
	r := q.client.pr.req
	q.ep = e
	q.headSent, q.hbuf, q.reusable = false, q.hbuf[:0], false
	if g.tracer != nil && q.c.upSpn == nil {
		q.c.upSpn = g.startUpstreamSpan(q.c.ctx, r.Header, &q.c, e, len(q.tried))
	}
	var u *lconn
	if pooled {
		u = l.takeIdle(e)
	}
	if u == nil {
		var err error
		if u, err = l.dial(e); err != nil {
			l.upFailed(q, nil, err, true)
			return
		}
	}
	q.up, u.answering = u, q
	u.read = 0
	q.deadline = l.now.Add(g.cfg.Timeout)
	l.sink.b = u.out[:0]
	writeRequest(l.reqw, r, q.uri, &q.c)
	u.out, u.off = l.sink.b, 0
	l.sink.b = nil
	if !u.connecting {
		l.flush(u)
	}
}

// takeIdle returns an idle connection to e, or nil.
func (l *evloop) takeIdle(e *endpoint) *lconn {
	idle := l.idle[e]
	for len(idle) > 0 {
		u := idle[len(idle)-1]
		idle[len(idle)-1] = nil
		idle = idle[:len(idle)-1]
		if !u.closed {
			l.idle[e] = idle
			u.reused = true
			return u
		}
	}
	delete(l.idle, e)
	return nil
}

func (l *evloop) putIdle(u *lconn) {
	e := u.ep
	if e.removed.Load() || len(l.idle[e]) >= l.g.cfg.MaxIdleConnsPerHost || l.stop {
		l.closeUp(u)
		return
	}
	u.answering = nil
	u.idleSince = l.now
	l.idle[e] = append(l.idle[e], u)
}

// closeUp closes an endpoint's connection.
func (l *evloop) closeUp(u *lconn) {
	u.answering = nil
	l.closeConn(u)
}

// dial starts a connection to e without waiting for it.
func (l *evloop) dial(e *endpoint) (*lconn, error) {
	ap, err := netip.ParseAddrPort(e.address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", err)}
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	u := &lconn{fd: fd, up: true, ep: e}
	switch err := unix.Connect(fd, sa); err {
	case nil:
	case unix.EINPROGRESS, unix.EINTR:
		u.connecting = true
		u.idleSince = l.now.Add(l.g.cfg.DialTimeout) // the dial's deadline meanwhile
	default:
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError("connect", err)}
	}
	l.track(u)
	l.setInterest(u, l.readInterest(u), true)
	return u, nil
}

// upEvent handles what epoll said of an endpoint's connection.
func (l *evloop) upEvent(u *lconn, ev uint32) {
	if u.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = syscall.Errno(errno)
		}
		if err != nil {
			l.upFailed(u.answering, u, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}, true)
			return
		}
		u.connecting = false
		if !l.flush(u) {
			return
		}
	}
	if ev&unix.EPOLLOUT != 0 && u.off < len(u.out) {
		if !l.flush(u) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 ||
		(u.upPaused && ev&(unix.EPOLLHUP|unix.EPOLLERR) == 0) {
		return
	}
	b, eof := l.read(u)
	q := u.answering
	if q == nil {
		// An idle connection that the endpoint closed or sent to
		// unasked: no longer fit for a request.
		if eof || len(b) > 0 {
			l.closeUp(u)
		}
		return
	}
	if len(b) > 0 {
		u.read += int64(len(b))
		l.answer(q, b)
		return
	}
	if !eof {
		return
	}
	switch {
	case q.headSent && q.mode == bodyClose:
		l.queue(q.client, lastChunk)
		q.reusable = false
		l.done(q)
	case u.read == 0:
		l.upFailed(q, u, io.EOF, false)
	case !q.headSent:
		l.upFailed(q, u, io.ErrUnexpectedEOF, false)
	default:
		l.cut(q, io.ErrUnexpectedEOF)
	}
}

var lastChunk = []byte("0\r\n\r\n")

// answer takes bytes of q's answer: its head, then its body.
func (l *evloop) answer(q *lreq, b []byte) {
	for !q.headSent {
		data := b
		if len(q.hbuf) > 0 {
			q.hbuf = append(q.hbuf, b...)
			data = q.hbuf
		}
		switch h1.ParseAnyResponse(data, &q.rh) {
		case h1.Incomplete:
			if len(q.hbuf) == 0 {
				q.hbuf = append(q.hbuf, b...)
			}
			if len(q.hbuf) > loopMaxAnswer {
				l.upFailed(q, q.up, errors.New("response head larger than 64 KiB"), false)
			}
			return
		case h1.NotPlain:
			l.upFailed(q, q.up, errors.New("malformed HTTP response"), false)
			return
		}
		rh := &q.rh
		if rh.Status < 200 {
			switch rh.Status {
			case http.StatusSwitchingProtocols:
				l.upFailed(q, q.up, errors.New("endpoint switched protocols unasked"), false)
				return
			case http.StatusEarlyHints:
				l.queue(q.client, data[:rh.Len])
			}
			rest := data[rh.Len:]
			b = append(l.rbuf[:0:0], rest...)
			q.hbuf = q.hbuf[:0]
			if len(b) == 0 {
				l.flush(q.client)
				return
			}
			continue
		}
		l.head(q, data[:rh.Len])
		rest := data[rh.Len:]
		q.headSent = true
		l.relay(q, rest)
		q.hbuf = q.hbuf[:0]
		return
	}
	l.relay(q, b)
}

// head writes the answer's head to the client, as forwarded.
func (l *evloop) head(q *lreq, raw []byte) {
	e, rh := q.ep, &q.rh
	e.succeeded()
	q.c.revision = e.revision.Load()
	q.c.status = rh.Status
	switch {
	case q.noBody || rh.Status == http.StatusNoContent || rh.Status == http.StatusNotModified:
		q.mode = bodyNone
	case rh.Chunked:
		q.mode = bodyChunked
		q.chunks = chunkScanner{}
	case rh.ContentLength >= 0:
		q.mode, q.left = bodyLength, rh.ContentLength
	default:
		q.mode = bodyClose
	}
	q.reusable = !rh.Close && rh.Minor == 1 && q.mode != bodyClose
	c := q.client
	closeClient := c.pr.req.Close || l.lp.closing.Load()
	b := c.out
	b = append(b, "HTTP/1.1 "...)
	b = append(b, raw[rh.StatusStart:rh.StatusEnd]...)
	b = append(b, "\r\n"...)
	var tokBuf [4][]byte
	connTokens := tokBuf[:0]
	for _, f := range rh.Fields {
		if h1.EqualFold(raw[f.NameStart:f.NameEnd], "connection") {
			connTokens = append(connTokens, raw[f.ValueStart:f.ValueEnd])
		}
	}
	date := false
	for _, f := range rh.Fields {
		name := raw[f.NameStart:f.NameEnd]
		if hopByHop(name) || namedBy(connTokens, name) {
			continue
		}
		if h1.EqualFold(name, "date") {
			date = true
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, raw[f.ValueStart:f.ValueEnd]...)
		b = append(b, "\r\n"...)
	}
	if rh.Minor == 0 {
		b = append(b, "Via: 1.0 berth\r\n"...)
	} else {
		b = append(b, "Via: 1.1 berth\r\n"...)
	}
	if q.c.stick {
		b = append(b, "Set-Cookie: "...)
		b = append(b, q.c.cookie()...)
		b = append(b, "\r\n"...)
	}
	if !date {
		b = append(b, "Date: "...)
		b = append(b, l.dateNow()...)
		b = append(b, "\r\n"...)
	}
	if q.mode == bodyChunked || q.mode == bodyClose {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if closeClient {
		b = append(b, "Connection: close\r\n"...)
		c.closeAfter = true
	}
	b = append(b, "\r\n"...)
	c.out = b
}

// relay forwards body bytes of q's answer to the client.
func (l *evloop) relay(q *lreq, b []byte) {
	c := q.client
	end := false
	switch q.mode {
	case bodyNone:
		end = true
		if len(b) > 0 {
			q.reusable = false
		}
	case bodyLength:
		n := int(min(q.left, int64(len(b))))
		c.out = append(c.out, b[:n]...)
		q.left -= int64(n)
		if n < len(b) {
			q.reusable = false
		}
		end = q.left == 0
	case bodyChunked:
		n, done, err := q.chunks.scan(b)
		c.out = append(c.out, b[:n]...)
		if err != nil {
			l.flush(c)
			l.cut(q, err)
			return
		}
		if done {
			end = true
			if n < len(b) {
				q.reusable = false
			}
		}
	case bodyClose:
		if len(b) > 0 {
			c.out = strconv.AppendInt(c.out, int64(len(b)), 16)
			c.out = append(c.out, "\r\n"...)
			c.out = append(c.out, b...)
			c.out = append(c.out, "\r\n"...)
		}
	}
	if end {
		l.done(q)
		return
	}
	if !l.flush(c) {
		return
	}
	if u := q.up; u != nil && len(c.out)-c.off > l.lp.highWater && !u.upPaused {
		u.upPaused = true
		l.setInterest(u, l.readInterest(u), false)
	}
}

// queue adds b to what c has to write.
func (l *evloop) queue(c *lconn, b []byte) { c.out = append(c.out, b...) }

// done ends q, answered whole: the endpoint's connection goes back to
// the pool, the client to its next request.
func (l *evloop) done(q *lreq) {
	if u := q.up; u != nil {
		q.up = nil
		// An endpoint that answered before it had read the whole
		// request leaves the connection mid-request: not reusable.
		if q.reusable && !u.closed && u.off == len(u.out) {
			l.putIdle(u)
		} else {
			l.closeUp(u)
		}
	}
	l.end(q, nil)
}

// dropAttempt ends q's attempt: its endpoint connection closed (never
// reused: done hands a reusable one back first), its span ended with
// status or err, its endpoint released, and marked failing when failed.
func (l *evloop) dropAttempt(q *lreq, status int, err error, failed bool) {
	if u := q.up; u != nil {
		q.up = nil
		l.closeUp(u)
	}
	if s := q.c.upSpn; s != nil {
		q.c.upSpn = nil
		endUpstreamSpan(s, status, err)
	}
	if e := q.ep; e != nil {
		if failed {
			e.failed(l.g)
		}
		e.release(l.g)
		q.ep = nil
	}
}

// end releases q's endpoint, counts it and readies its client.
func (l *evloop) end(q *lreq, upErr error) {
	g := l.g
	l.dropAttempt(q, q.c.status, upErr, false)
	g.finish(&q.c)
	l.lp.served.Add(1)
	q.c = call{}
	c := q.client
	c.st = stHead
	c.deadline = l.now.Add(l.lp.s.t.Idle)
	if c.paused {
		c.paused = false
		l.setInterest(c, l.readInterest(c), false)
	}
	if !l.flush(c) {
		return
	}
	if len(c.in) > 0 {
		l.serveNext(c)
	}
}

// cut ends q whose answer broke off after its head went: the client sees
// its answer cut, as the endpoint cut it.
func (l *evloop) cut(q *lreq, err error) {
	l.g.log.Warn("upstream broke its answer off", "host", q.client.pr.req.Host, "path", q.client.pr.req.URL.Path, "endpoint", q.ep.id, "err", err)
	c := q.client
	l.end(q, nil)
	l.closeConn(c)
}

// abort ends q for a client that left (status 499) or a server closing.
func (l *evloop) abort(q *lreq, status int) {
	if q.client.st != stBusy {
		return
	}
	l.dropAttempt(q, 0, context.Canceled, false)
	q.c.status = status
	c := q.client
	c.closeAfter = true
	l.g.finish(&q.c)
	q.c = call{}
	c.st = stHead
}

// upFailed handles an attempt that got no answer (u nil: the dial
// failed at once): the same endpoint again on a fresh connection when a
// pooled one had been closed under it, another endpoint when the request
// may go again, else the error.
func (l *evloop) upFailed(q *lreq, u *lconn, err error, dialErr bool) {
	g := l.g
	e := q.ep
	reused, read := false, int64(0)
	if u != nil {
		reused, read = u.reused, u.read
		q.up = nil
		l.closeUp(u)
	}
	if reused && read == 0 && q.resend && !dialErr {
		// The endpoint closed the pooled connection as it was taken:
		// not its answer. A fresh connection decides.
		l.attempt(q, e, false)
		return
	}
	l.dropAttempt(q, 0, err, true)
	q.failed = append(q.failed, fmt.Sprintf("endpoint %s (%s) failed: %v", e.id, e.address, err))
	rt := q.c.route
	retryable := dialErr || (read == 0 && q.resend)
	if retryable && len(q.tried) <= g.cfg.MaxRetries {
		if e2, _ := rt.pick(g, q.tried, q.c.want); e2 != nil {
			g.log.Debug("retrying on another endpoint", "environment", rt.env, "name", rt.name, "endpoint", e.id, "err", err)
			q.tried = append(q.tried, e2)
			l.attempt(q, e2, true)
			return
		}
	}
	l.fail(q, &upstreamError{attempts: q.failed, last: err, all: len(q.tried) >= len(rt.endpoints)})
}

// timedOut answers 504 for q, whose endpoint sent no head in time.
func (l *evloop) timedOut(q *lreq) {
	g, e := l.g, q.ep
	l.dropAttempt(q, 0, errUpstreamTimeout, true)
	q.failed = append(q.failed, fmt.Sprintf("endpoint %s (%s) sent no response headers within %s", e.id, e.address, g.cfg.Timeout))
	l.fail(q, &upstreamError{attempts: q.failed, timeout: true, last: errUpstreamTimeout})
}

// fail answers q with the error, as the gateway's other path does.
func (l *evloop) fail(q *lreq, err error) {
	w := &l.ew
	w.reset()
	l.g.proxyError(w, q.client.pr.req, &q.c, err)
	l.writeMem(q.client, w, q.client.pr.req.Close)
	l.end(q, err)
}

// answerError answers c's request, not routed, with the API's error
// shape; closing says the connection ends after it.
func (l *evloop) answerError(c *lconn, kind, msg string, closing bool) {
	w := &l.ew
	w.reset()
	writeError(w, kind, msg)
	l.writeMem(c, w, closing)
	c.in = nil
	if closing {
		c.closeAfter = true
	}
	l.flush(c)
}

func (l *evloop) writeMem(c *lconn, w *memWriter, closing bool) {
	b := c.out
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\n"...)
	for k, vs := range w.hdr {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	b = append(b, l.dateNow()...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(w.body)), 10)
	b = append(b, "\r\n"...)
	if closing || l.lp.closing.Load() {
		b = append(b, "Connection: close\r\n"...)
		c.closeAfter = true
	}
	b = append(b, "\r\n"...)
	b = append(b, w.body...)
	c.out = b
}

func (l *evloop) dateNow() []byte {
	if sec := l.now.Unix(); sec != l.dateSec || l.date == nil {
		l.dateSec = sec
		l.date = l.now.UTC().AppendFormat(l.date[:0], http.TimeFormat)
	}
	return l.date
}

// handOff gives c, between requests, with what was read of it, to
// Server's goroutines.
func (l *evloop) handOff(c *lconn) {
	s := l.lp.s
	if c.off < len(c.out) {
		// The last answer is still going out: the connection goes once
		// it has, read no further meanwhile.
		c.handOffWaits, c.paused = true, true
		l.setInterest(c, l.readInterest(c), false)
		return
	}
	l.untrack(c)
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	c.closed = true
	l.lp.clients.Add(-1)
	l.lp.handedOff.Add(1)
	f := os.NewFile(uintptr(c.fd), "gateway client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		c.slot.Release()
		return
	}
	sc := &serverConn{s: s, nc: c.slot.Wrap(nc)}
	sc.cr.pending = c.in
	c.in = nil
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		sc.nc.Close()
		return
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	go sc.serve()
}

// sweep enforces the time bounds: a client's head, body, idle wait and
// write stall; an endpoint's dial and answer; idle endpoint connections.
func (l *evloop) sweep() {
	now := l.now
	for _, c := range l.conns {
		if c.closed {
			continue
		}
		if c.up {
			switch q := c.answering; {
			case c.connecting && now.After(c.idleSince):
				l.upFailed(q, c, &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, true)
			case q != nil && !q.headSent && now.After(q.deadline):
				l.timedOut(q)
			case q == nil && (now.Sub(c.idleSince) >= l.g.idleTimeout || c.ep.removed.Load()):
				l.closeUp(c)
			}
			continue
		}
		if c.off < len(c.out) && now.Sub(c.progress) > c.slot.WriteStall() {
			l.broken(c)
			continue
		}
		if c.closeAfter {
			continue // answered for the last time; only the stall above applies
		}
		switch c.st {
		case stHead:
			if now.After(c.deadline) {
				// A head that did not come in time, or an idle wait
				// over: closed without an answer, as net/http does.
				l.closeConn(c)
			}
		case stBody:
			if now.After(c.deadline) {
				l.answerError(c, v1.ErrRequestTimeout, connlimit.ErrBodyTooSlow.Error(), true)
			}
		}
	}
	for e, idle := range l.idle {
		keep := idle[:0]
		for _, u := range idle {
			if !u.closed {
				keep = append(keep, u)
			}
		}
		clear(idle[len(keep):])
		if len(keep) == 0 {
			delete(l.idle, e)
		} else {
			l.idle[e] = keep
		}
	}
}

// hopByHop: the connection's own fields, not forwarded (RFC 9110 7.6.1),
// Trailer aside: a chunked answer is relayed with its trailers.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return h1.EqualFold(name, "te")
	case 7:
		return h1.EqualFold(name, "upgrade")
	case 10:
		return h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive")
	case 16:
		return h1.EqualFold(name, "proxy-connection")
	case 17:
		return h1.EqualFold(name, "transfer-encoding")
	case 18:
		return h1.EqualFold(name, "proxy-authenticate")
	case 19:
		return h1.EqualFold(name, "proxy-authorization")
	}
	return false
}

// namedBy reports a field that a Connection value names.
func namedBy(values [][]byte, name []byte) bool {
	for _, v := range values {
		if h1.HasToken(v, string(name)) {
			return true
		}
	}
	return false
}

// sliceWriter appends what is written to b.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// memWriter is an http.ResponseWriter held in memory: an error answer
// written by the gateway's own functions, then framed by the loop.
type memWriter struct {
	hdr    http.Header
	status int
	body   []byte
}

func (w *memWriter) reset() {
	clear(w.hdr)
	w.status = 0
	w.body = w.body[:0]
}

func (w *memWriter) Header() http.Header { return w.hdr }

func (w *memWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, p...)
	return len(p), nil
}
