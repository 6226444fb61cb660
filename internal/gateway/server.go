package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/gateway/h1"
	"golang.org/x/net/http/httpguts"
)

// Server serves a gateway handler on its listeners. A plain HTTP/1.1
// request (package h1) is read off the connection and answered on the
// connection's goroutine, with the request, its header map and the
// response writer reused from one request to the next. net/http's server
// spent more CPU per request than the rest of the gateway together: a
// request context and a background read (a goroutine and a system call)
// per request, header maps and strings, sorted response headers.
// Everything else (h2c, protocol switches, 100-continue, chunked bodies,
// bad input) is handed, with the bytes already read, to a net/http server
// with the same handler and bounds (connlimit.NewServer), which answers
// as the gateway always has.
type Server struct {
	handler  http.Handler // h under connlimit.Handler: bodies held to the minimum rate
	fallback *http.Server
	t        connlimit.Timeouts
	log      *slog.Logger
	handoff  *handoffListener
	ctx      context.Context
	cancel   context.CancelFunc

	fallbackOnce sync.Once
	// gw is the handler when it is a *Gateway, whose plain requests the
	// event loops serve (loop_linux.go); loops are they, once serving.
	gw        *Gateway
	loops     *loops
	closing   atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
}

// NewServer serves h with t's bounds, as connlimit.NewServer does, and
// the gateway's Protocols.
func NewServer(h http.Handler, t connlimit.Timeouts, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fb := connlimit.NewServer(h, t)
	fb.Protocols = Protocols()
	// The fallback's bounds, defaults filled in, are this server's too.
	t.ReadHeader, t.Idle = fb.ReadHeaderTimeout, fb.IdleTimeout
	ctx, cancel := context.WithCancel(context.Background())
	gw, _ := h.(*Gateway)
	if !loopsEnabled() {
		gw = nil
	}
	return &Server{
		gw:        gw,
		handler:   connlimit.Handler(h, t),
		fallback:  fb,
		t:         t,
		log:       logger,
		handoff:   newHandoffListener(),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*serverConn]struct{}{},
	}
}

// Serve accepts connections on ln until the server is shut down, when it
// returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.fallbackOnce.Do(func() {
		go s.fallback.Serve(s.handoff)
		go s.sweep()
		if s.gw != nil {
			lp, err := newLoops(s, s.gw)
			if err != nil {
				s.log.Warn("gateway event loops unavailable; serving on goroutines", "err", err)
			}
			s.mu.Lock()
			s.loops = lp
			s.mu.Unlock()
		}
	})
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http
			// does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if s.loops != nil && s.loops.take(nc) {
			continue
		}
		c := &serverConn{s: s, nc: nc}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections and waits for the
// requests in flight until ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	lp := s.eventLoops()
	if lp != nil {
		lp.shutdown()
		defer lp.close()
	}
	fbErr := make(chan error, 1)
	go func() { fbErr <- s.fallback.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := 0
		for c := range s.conns {
			if c.idle.Load() {
				c.nc.SetReadDeadline(aLongTimeAgo)
			}
			n++
		}
		s.mu.Unlock()
		if lp != nil {
			n += int(lp.active())
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.closeConns()
			<-fbErr
			s.cancel()
			return ctx.Err()
		case <-tick.C:
		}
	}
	err := <-fbErr
	s.cancel()
	return err
}

// Close stops the server at once, cutting requests in flight.
func (s *Server) Close() error {
	s.stopAccepting()
	if lp := s.eventLoops(); lp != nil {
		lp.close()
	}
	s.closeConns()
	err := s.fallback.Close()
	s.cancel()
	return err
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.handoff.Close()
}

func (s *Server) eventLoops() *loops {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loops
}

func (s *Server) closeConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
}

func (s *Server) forget(c *serverConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// connReaders hold up to a plain head each: a head that does not fit is
// handed to net/http, which reads on up to its own limit (431 beyond).
var connReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}

// serverConn is one client connection served by Server.
type serverConn struct {
	s    *Server
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle atomic.Bool // waiting for a request: Shutdown may close it

	cr     replayConn         // the connection, after what a watcher read of it
	cancel context.CancelFunc // the requests' context, on the client leaving

	// A stream's answer, and a request the handler has held for a while
	// (a cold start, a long poll), watch for the client leaving
	// (startWatch): the watcher's end, and whether it saw the client go.
	// watchMu orders the watcher's start, from the handler or lateWatch's
	// goroutine, with the handler's end.
	watchMu   sync.Mutex
	inHandler bool
	watchable bool // no body to read, nothing read ahead: lateWatch may start a watcher
	watchDone chan struct{}
	gone      bool

	// For the server's sweep (Server.sweep): the request count, whether
	// one is in the handler, and the count the last sweep saw.
	seq      atomic.Uint64
	busy     atomic.Bool
	lastSeen uint64

	remote string
	plainRequest
	body reqBody
	w    respWriter
}

func (c *serverConn) serve() {
	defer c.s.forget(c)
	c.cr.Conn = c.nc
	c.br = connReaders.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
	next := closeConn
	defer func() {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.br.Reset(nil)
		connReaders.Put(c.br)
		switch next {
		case handedOff:
		case linger:
			// The client may still be sending a body nobody read:
			// closing now would reset the connection under the answer.
			// As net/http's closeWriteAndWait, half-close and give it a
			// moment, reading what it sends meanwhile so that its writes
			// do not fail before it reads the answer.
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			io.Copy(io.Discard, c.nc)
			c.nc.Close()
		default:
			c.nc.Close()
		}
	}()
	c.remote = c.nc.RemoteAddr().String()
	// The requests' context, one for the connection: it ends with the
	// server, or when the client leaves while a stream is answered
	// (watch). net/http makes one per request and reads in the background
	// during each to notice a client leaving: a goroutine and a system
	// call per request. Here a client that left a plain answer is noticed
	// when the answer is written to it.
	ctx, cancel := context.WithCancel(c.s.ctx)
	defer cancel()
	c.cancel = cancel
	c.req = new(http.Request).WithContext(ctx)
	c.hdr = make(http.Header, 16)
	c.w.c = c
	c.w.hdr = make(http.Header, 16)
	c.body.c = c
	first := true
	for {
		if c.br.Buffered() == 0 {
			wait := c.s.t.Idle
			if first {
				wait = c.s.t.ReadHeader
			}
			c.idle.Store(true)
			c.nc.SetReadDeadline(time.Now().Add(wait))
			if c.s.closing.Load() {
				return
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			c.idle.Store(false)
		}
		// The first head's time runs from the connection's start, as
		// net/http's does.
		v, err := c.readHead(first)
		first = false
		if err != nil {
			// A head that did not come in time, or a client that went:
			// closed without an answer, as net/http does.
			return
		}
		switch v {
		case h1.Reject:
			next = c.reject()
			return
		case h1.NotPlain:
			next = c.handOff()
			return
		}
		if next = c.serveRequest(); next != keepAlive {
			return
		}
	}
}

// readHead reads until the buffer holds a whole head, or something that
// is not a plain one, or a buffer full. The rest of a head has
// ReadHeader to come (a head that came whole in one read, the usual case,
// needs no deadline of its own).
func (c *serverConn) readHead(deadline bool) (h1.Verdict, error) {
	for {
		n := c.br.Buffered()
		b, _ := c.br.Peek(n)
		switch v := h1.Parse(b, &c.head); v {
		case h1.Incomplete:
			if n == c.br.Size() {
				return h1.NotPlain, nil
			}
			if !deadline {
				deadline = true
				c.nc.SetReadDeadline(time.Now().Add(c.s.t.ReadHeader))
			}
			if _, err := c.br.Peek(n + 1); err != nil {
				return 0, err
			}
		default:
			return v, nil
		}
	}
}

// next is what becomes of a connection after a request.
type next int

const (
	keepAlive next = iota
	closeConn
	linger    // close once the client had a moment to read the answer
	handedOff // net/http's now
)

// handOff gives the connection, with what was read of it, to net/http.
func (c *serverConn) handOff() next {
	b, _ := c.br.Peek(c.br.Buffered())
	rc := &replayConn{Conn: c.nc, pending: append(append([]byte(nil), b...), c.cr.pending...)}
	c.nc.SetReadDeadline(time.Time{})
	if c.s.handoff.give(rc) {
		return handedOff
	}
	return closeConn
}

// reject answers a head with both Content-Length and Transfer-Encoding
// 400 and closes the connection: either framing of the body could hide a
// second request.
func (c *serverConn) reject() next {
	c.br.Discard(c.head.Len)
	c.bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 59\r\n\r\n")
	c.bw.WriteString("400 Bad Request: both Content-Length and Transfer-Encoding\n")
	c.bw.Flush()
	return linger
}

// serveRequest answers the plain request whose head the buffer starts
// with.
func (c *serverConn) serveRequest() next {
	hd := &c.head
	buf, _ := c.br.Peek(hd.Len)
	if !c.build(buf, c.remote) {
		return c.handOff()
	}
	c.br.Discard(hd.Len)
	r := c.req
	if hd.ContentLength > 0 {
		c.body = reqBody{c: c, n: hd.ContentLength}
		r.Body, r.ContentLength = &c.body, hd.ContentLength
	} else {
		c.body = reqBody{c: c}
		r.Body, r.ContentLength = http.NoBody, 0
	}

	w := &c.w
	w.reset(r)
	watchable := hd.ContentLength <= 0 && c.br.Buffered() == 0 && len(c.cr.pending) == 0
	c.watchMu.Lock()
	c.inHandler, c.watchable = true, watchable
	c.watchMu.Unlock()
	c.seq.Add(1)
	c.busy.Store(true)
	aborted := c.handle(w, r)
	c.busy.Store(false)
	c.watchMu.Lock()
	c.inHandler = false
	done := c.watchDone
	c.watchDone = nil
	c.watchMu.Unlock()
	if done != nil {
		c.nc.SetReadDeadline(aLongTimeAgo)
		<-done
		if c.gone {
			return closeConn
		}
	}
	if aborted {
		return closeConn
	}
	if err := w.finish(); err != nil {
		return closeConn
	}
	unread := c.body.n > 0
	if w.close || r.Close || c.s.closing.Load() {
		if unread {
			return linger
		}
		return closeConn
	}
	// What is left of the body goes, unless there is too much of it.
	if unread {
		if c.body.n > 256<<10 {
			return linger
		}
		if _, err := c.br.Discard(int(c.body.n)); err != nil {
			return closeConn
		}
	}
	return keepAlive
}

// plainRequest is a request built from a plain head (package h1), reused
// from one request to the next: its header map, URL and strings.
type plainRequest struct {
	req  *http.Request
	url  url.URL
	hdr  http.Header
	vals []string
	head h1.Head
}

// build fills p.req from the head p.head parsed at the start of buf, in
// one string for the whole head of which the request's strings are
// slices. It reports false for a target url.ParseRequestURI refuses.
func (p *plainRequest) build(buf []byte, remote string) bool {
	hd := &p.head
	target := buf[hd.TargetStart:hd.TargetEnd]
	q, fast := scanTarget(target)
	if !fast {
		u, err := url.ParseRequestURI(string(target))
		if err != nil {
			return false
		}
		p.url = *u
	}
	s := string(buf[:hd.Len])
	if fast {
		ts, te := hd.TargetStart, hd.TargetEnd
		p.url = url.URL{Path: s[ts : ts+q]}
		if ts+q < te {
			p.url.RawQuery = s[ts+q+1 : te]
			p.url.ForceQuery = p.url.RawQuery == ""
		}
	}
	p.vals = fillHeader(p.hdr, p.vals, s, hd.Fields)
	r := p.req
	r.Method = s[hd.MethodStart:hd.MethodEnd]
	r.URL = &p.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = p.hdr
	r.Host = s[hd.HostStart:hd.HostEnd]
	r.Close = hd.Close
	r.RemoteAddr = remote
	r.RequestURI = s[hd.TargetStart:hd.TargetEnd]
	r.TransferEncoding, r.Trailer, r.TLS, r.Response = nil, nil, nil, nil
	r.Form, r.PostForm, r.MultipartForm, r.GetBody, r.Cancel = nil, nil, nil, nil, nil
	r.Pattern = ""
	return true
}

// fillHeader fills h (cleared first) with the fields of the head s, their
// values sharing one backing array, vals, which it returns for reuse: a
// header map without a slice per field.
func fillHeader(h http.Header, vals []string, s string, fields []h1.Field) []string {
	clear(h)
	vals = vals[:0]
	for _, f := range fields {
		k := textproto.CanonicalMIMEHeaderKey(s[f.NameStart:f.NameEnd])
		v := s[f.ValueStart:f.ValueEnd]
		if prior, ok := h[k]; ok {
			h[k] = append(prior[:len(prior):len(prior)], v)
			continue
		}
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return vals
}

// handle runs the handler; it reports a handler that aborted the answer.
func (c *serverConn) handle(w *respWriter, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				c.s.log.Error("gateway handler panicked", "panic", v, "path", r.URL.Path)
			}
		}
	}()
	c.s.handler.ServeHTTP(w, r)
	return false
}

// scanTarget reports whether an origin-form target's path needs no
// unescaping and url.Parse would keep it as it is (no RawPath), and where
// its query starts (len(target) when none).
func scanTarget(target []byte) (q int, fast bool) {
	for i, b := range target {
		if b == '?' {
			return i, true
		}
		if !pathByte[b] {
			return 0, false
		}
	}
	return len(target), true
}

// pathByte: the bytes url.URL keeps in a path as they are (no RawPath).
var pathByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// reqBody is a plain request's body: Content-Length bytes off the
// connection's reader.
type reqBody struct {
	c      *serverConn
	n      int64
	closed bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return readLimited(b.c.br, p, &b.n)
}

func (b *reqBody) Close() error {
	if b.n > 0 {
		b.closed = true
	}
	return nil
}

// respWriter writes a plain request's answer: the head when the first
// byte of the body is written (or the handler is done), framed by the
// handler's Content-Length, else chunked, else, when the handler wrote
// all of a small body before returning, by its length.
type respWriter struct {
	c   *serverConn
	req *http.Request
	hdr http.Header

	status      int
	headWritten bool
	noBody      bool  // HEAD, 204, 304
	length      int64 // declared; -1: none
	written     int64
	chunked     bool
	close       bool
	pending     []byte // body written before the head, length unknown
	err         error
	dateSec     int64
	date        []byte
}

func (w *respWriter) reset(r *http.Request) {
	w.req = r
	clear(w.hdr)
	w.status = 0
	w.headWritten, w.noBody, w.chunked, w.close = false, false, false, false
	w.length, w.written = -1, 0
	w.pending = w.pending[:0]
	w.err = nil
}

func (w *respWriter) Header() http.Header { return w.hdr }

func (w *respWriter) WriteHeader(code int) {
	if w.status != 0 || w.headWritten {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An interim answer (103 Early Hints) goes at once, with the
		// headers set so far.
		w.writeStatusLine(code)
		w.writeHeaders(false)
		w.c.bw.WriteString("\r\n")
		if err := w.c.bw.Flush(); err != nil {
			w.err = err
		}
		return
	}
	w.status = code
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := w.hdr["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		}
	}
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	if !w.headWritten {
		if w.length < 0 && len(w.pending)+len(p) <= 4<<10 {
			// Maybe all of it: wait and see whether it can go with a
			// Content-Length.
			w.pending = append(w.pending, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.writeHead(p)
	}
	w.written += int64(len(p))
	w.writeBody(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *respWriter) writeBody(p []byte) {
	if len(p) == 0 {
		return
	}
	bw := w.c.bw
	if w.chunked {
		writeInt(bw, int64(len(p)), 16)
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
		return
	}
	_, w.err = bw.Write(p)
}

// writeHead writes the status line and headers, deciding the framing;
// anything written before it (pending) follows.
func (w *respWriter) writeHead(next []byte) {
	w.headWritten = true
	bw := w.c.bw
	if v := w.hdr["Connection"]; len(v) > 0 && httpguts.HeaderValuesContainsToken(v, "close") {
		w.close = true
	}
	if w.req.Close || w.c.s.closing.Load() {
		w.close = true
	}
	declaredTrailers := len(w.hdr["Trailer"]) > 0
	if !w.noBody && (w.length < 0 || declaredTrailers) {
		w.chunked = true
		w.length = -1
	}
	if _, ok := w.hdr["Content-Type"]; !ok && !w.noBody {
		// net/http's sniffing, which the gateway's answers always had.
		sniff := w.pending
		if len(sniff) == 0 {
			sniff = next
		}
		if len(sniff) > 0 {
			w.hdr["Content-Type"] = []string{http.DetectContentType(sniff)}
		}
	}
	w.writeStatusLine(w.status)
	w.writeHeaders(true)
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.close {
		if _, ok := w.hdr["Connection"]; !ok {
			bw.WriteString("Connection: close\r\n")
		}
	}
	bw.WriteString("\r\n")
	if len(w.pending) > 0 {
		w.writeBody(w.pending)
		w.pending = w.pending[:0]
	}
}

func (w *respWriter) writeStatusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	writeInt(bw, int64(code), 10)
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		writeInt(bw, int64(code), 10)
	}
	bw.WriteString("\r\n")
}

// writeHeaders writes the handler's headers, less the framing ones the
// writer decides, with a Date when the handler set none.
func (w *respWriter) writeHeaders(final bool) {
	bw := w.c.bw
	for k, vs := range w.hdr {
		if !final {
			if k == "Content-Length" || k == "Transfer-Encoding" {
				continue
			}
		} else {
			switch k {
			case "Transfer-Encoding":
				continue
			case "Content-Length":
				if w.chunked || w.status == http.StatusNoContent {
					continue
				}
			}
			if strings.HasPrefix(k, http.TrailerPrefix) {
				continue
			}
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeFieldValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	if final {
		if _, ok := w.hdr["Date"]; !ok {
			bw.WriteString("Date: ")
			bw.Write(w.dateNow())
			bw.WriteString("\r\n")
		}
		if !w.chunked && !w.noBody && w.length >= 0 {
			if _, ok := w.hdr["Content-Length"]; !ok {
				bw.WriteString("Content-Length: ")
				writeInt(bw, w.length, 10)
				bw.WriteString("\r\n")
			}
		}
	}
}

// writeInt writes n in base into bw's own buffer: a buffer on the stack
// would escape through bufio's io.Writer.
func writeInt(bw *bufio.Writer, n int64, base int) {
	if bw.Available() < 20 {
		bw.Flush()
	}
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), n, base))
}

// writeFieldValue writes v with any line break turned into a space, as
// net/http does: a handler's value cannot split the head.
func writeFieldValue(bw *bufio.Writer, v string) {
	if strings.IndexByte(v, '\n') < 0 && strings.IndexByte(v, '\r') < 0 {
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			bw.WriteByte(' ')
		} else {
			bw.WriteByte(c)
		}
	}
}

func (w *respWriter) dateNow() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != w.dateSec || w.date == nil {
		w.dateSec = sec
		w.date = now.UTC().AppendFormat(w.date[:0], http.TimeFormat)
	}
	return w.date
}

// Flush sends what was written so far; the answer is chunked from then on
// unless its length was declared.
func (w *respWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *respWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		w.writeHead(nil)
	}
	if w.err != nil {
		return w.err
	}
	w.err = w.c.bw.Flush()
	if w.err == nil && w.c.body.n == 0 && w.c.br.Buffered() == 0 {
		w.c.startWatch()
	}
	return w.err
}

// sweepEvery is how often the server looks for requests held in the
// handler since its last look (so for sweepEvery to twice that): their
// clients are watched from then on. Most requests are answered sooner and
// pay nothing for it, not even a timer.
const sweepEvery = 200 * time.Millisecond

// sweep starts watchers for the requests held since the last sweep, until
// the server stops.
func (s *Server) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var held []*serverConn
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		held = held[:0]
		s.mu.Lock()
		for c := range s.conns {
			seq := c.seq.Load()
			if c.busy.Load() && seq == c.lastSeen {
				held = append(held, c)
			}
			c.lastSeen = seq
		}
		s.mu.Unlock()
		for _, c := range held {
			c.watchHeld()
		}
	}
}

// watchHeld starts a watcher for the request c's handler holds, if it has
// no body to read.
func (c *serverConn) watchHeld() {
	c.watchMu.Lock()
	ok := c.watchable
	c.watchMu.Unlock()
	if ok {
		c.startWatch()
	}
}

// startWatch reads from the client in the background while the handler
// runs, to end the requests' context when the client leaves: an idle
// stream's upstream, a held cold start, would be kept for nobody
// otherwise. Only a client done sending is watched (the callers check);
// bytes it sends meanwhile (a pipelined request) are kept for the next
// read.
func (c *serverConn) startWatch() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if !c.inHandler || c.watchDone != nil {
		return
	}
	c.nc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	c.watchDone = done
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.cr.pending = append(c.cr.pending, buf[:n]...)
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.gone = true
			c.cancel()
		}
	}()
}

// SetReadDeadline and SetWriteDeadline are for http.ResponseController
// (connlimit's minimum body rate).
func (w *respWriter) SetReadDeadline(t time.Time) error  { return w.c.nc.SetReadDeadline(t) }
func (w *respWriter) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

// EnableFullDuplex: the body can always be read while the answer is
// written here.
func (w *respWriter) EnableFullDuplex() error { return nil }

// finish ends the answer: the head if not written yet, the last chunk and
// trailers, and a flush. An error means the connection is done.
func (w *respWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		if w.length < 0 && !w.noBody && len(w.hdr["Trailer"]) == 0 {
			w.length = int64(len(w.pending))
		}
		w.writeHead(nil)
	}
	bw := w.c.bw
	if w.chunked && w.err == nil {
		bw.WriteString("0\r\n")
		for k, vs := range w.hdr {
			name, ok := strings.CutPrefix(k, http.TrailerPrefix)
			if !ok || !httpguts.ValidHeaderFieldName(name) {
				continue
			}
			for _, v := range vs {
				bw.WriteString(name)
				bw.WriteString(": ")
				writeFieldValue(bw, v)
				bw.WriteString("\r\n")
			}
		}
		for _, names := range w.hdr["Trailer"] {
			for _, name := range strings.Split(names, ",") {
				name = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
				if !httpguts.ValidHeaderFieldName(name) {
					continue
				}
				for _, v := range w.hdr[name] {
					bw.WriteString(name)
					bw.WriteString(": ")
					writeFieldValue(bw, v)
					bw.WriteString("\r\n")
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if w.err != nil {
		return w.err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if w.length >= 0 && !w.noBody && w.written < w.length {
		// Shorter than declared: the client must not wait for the rest
		// on a connection it would reuse.
		return io.ErrShortWrite
	}
	return nil
}

// replayConn is a connection whose bytes already read come first: a
// serverConn's reader (after what a watcher read) and a connection handed
// to net/http.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close, as it does before closing a
// connection it refused a request on, when the conn can.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is how connections reach the net/http server.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "gateway" }
