package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// The gateway's own HTTP/1.1 client for the common request: no upgrade,
// no gRPC. http.Transport hands every request to two goroutines of the
// connection (a writer and a reader) and back over channels; on a machine
// whose cores the gateway shares with its workloads those hand-offs were
// most of its cost. Here the handler's goroutine writes the request and
// reads the answer itself, on a connection taken from the endpoint's idle
// stack (last in, first out, so the busy core keeps its warm connections).

// upConn is one keep-alive connection to an endpoint.
type upConn struct {
	nc    net.Conn
	rc    syscall.RawConn // nil when the conn has none: never peeked
	br    *bufio.Reader
	bw    *bufio.Writer
	read  int64 // bytes read from nc, to tell a stale conn from an answer
	idle  time.Time
	reuse bool // came from the idle stack

	peekFn    func(fd uintptr) bool // upConn.peek, bound once
	peekAlive bool

	ans *upAnswer // the answer being read, reused
}

func (uc *upConn) Read(p []byte) (int, error) {
	n, err := uc.nc.Read(p)
	uc.read += int64(n)
	return n, err
}

// alive reports whether an idle connection can carry a request: the peer
// has not closed it and sent nothing unasked. It costs one non-blocking
// peek at the socket, the check http.Transport's reader does while idle.
func (uc *upConn) alive() bool {
	if uc.br.Buffered() > 0 {
		return false
	}
	if uc.rc == nil {
		return true
	}
	uc.peekAlive = false
	if err := uc.rc.Read(uc.peekFn); err != nil {
		return false
	}
	return uc.peekAlive
}

func (uc *upConn) peek(fd uintptr) bool {
	uc.peekAlive = peekIdle(fd)
	return true // never wait for readability
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (uc *upConn) close() {
	uc.nc.Close()
	if uc.br != nil {
		uc.br.Reset(nil)
		readerPool.Put(uc.br)
		uc.br = nil
	}
	if uc.bw != nil {
		uc.bw.Reset(nil)
		writerPool.Put(uc.bw)
		uc.bw = nil
	}
}

// connPool is one endpoint's idle connections.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
	sweep  *time.Timer
}

// recentlyUsed is how long after its last answer a pooled connection is
// taken without peeking at it, for a request that can be replayed should
// the endpoint have closed it meanwhile: the peek is a system call, and
// under load nearly every connection is this fresh.
const recentlyUsed = time.Second

// get returns a live idle connection, or nil. replayable says the request
// can be sent again on a fresh connection if the endpoint closed this one
// unseen.
func (p *connPool) get(idleTimeout time.Duration, replayable bool) *upConn {
	now := time.Now()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(uc.idle)
		if idle < idleTimeout && ((replayable && idle < recentlyUsed && uc.br.Buffered() == 0) || uc.alive()) {
			uc.reuse = true
			return uc
		}
		uc.close()
	}
}

// put keeps uc for the next request, or closes it when the pool is full or
// gone.
func (p *connPool) put(uc *upConn, max int, idleTimeout time.Duration) {
	uc.idle = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= max {
		p.mu.Unlock()
		uc.close()
		return
	}
	p.idle = append(p.idle, uc)
	if p.sweep == nil {
		// Connections left idle after the traffic stopped are closed
		// once too old, not held until the next request.
		p.sweep = time.AfterFunc(idleTimeout, func() { p.expire(idleTimeout) })
	}
	p.mu.Unlock()
}

// expire closes the idle connections older than idleTimeout and looks
// again later while any are left.
func (p *connPool) expire(idleTimeout time.Duration) {
	now := time.Now()
	p.mu.Lock()
	var old []*upConn
	keep := p.idle[:0]
	for _, uc := range p.idle {
		if now.Sub(uc.idle) >= idleTimeout {
			old = append(old, uc)
		} else {
			keep = append(keep, uc)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.sweep = nil
	if len(p.idle) > 0 && !p.closed {
		p.sweep = time.AfterFunc(idleTimeout/2, func() { p.expire(idleTimeout) })
	}
	p.mu.Unlock()
	for _, uc := range old {
		uc.close()
	}
}

// closeIdle closes every idle connection; with forever, later puts close
// theirs too (the endpoint is gone).
func (p *connPool) closeIdle(forever bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if forever {
		p.closed = true
	}
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

func (g *Gateway) dialH1(e *endpoint, deadline time.Time) (*upConn, error) {
	d := net.Dialer{Timeout: g.cfg.DialTimeout, Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.Dial("tcp", e.address)
	if err != nil {
		return nil, err
	}
	uc := &upConn{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		uc.rc, _ = sc.SyscallConn()
	}
	uc.peekFn = uc.peek
	uc.br = readerPool.Get().(*bufio.Reader)
	uc.br.Reset(uc)
	uc.bw = writerPool.Get().(*bufio.Writer)
	uc.bw.Reset(nc)
	return uc, nil
}

// hopHeaders are the connection's own, not forwarded either way (RFC 9110
// 7.6.1), as httputil.ReverseProxy's list.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers and those the Connection
// header names.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for len(f) > 0 {
			var tok string
			tok, f = cutToken(f)
			if tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func cutToken(s string) (string, string) {
	i := 0
	for i < len(s) && s[i] != ',' {
		i++
	}
	tok := s[:i]
	if i < len(s) {
		i++
	}
	// trim spaces
	for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
		tok = tok[1:]
	}
	for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
		tok = tok[:len(tok)-1]
	}
	return tok, s[i:]
}

// writeRequest writes r's head as forwarded, then its body: c.body when
// buffered, else r.Body of r.ContentLength bytes.
func writeRequest(bw *bufio.Writer, r *http.Request, uri string, c *call) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	for k, vs := range r.Header {
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	n := r.ContentLength
	if c.body != nil {
		n = int64(len(c.body))
	}
	if n > 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		writeInt(bw, max(n, 0), 10)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	switch {
	case c.body != nil:
		bw.Write(c.body)
	case n > 0:
		bp := copyBuffers.Get().(*[]byte)
		body := &trackingReader{r: io.LimitReader(r.Body, n)}
		_, err := io.CopyBuffer(bw, body, *bp)
		copyBuffers.Put(bp)
		if body.err != nil {
			return &bodyReadError{body.err}
		}
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// trackingReader notes a read error, to tell the client's failure from the
// endpoint's in a copy between them.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// bodyReadError is a failure to read the client's body while forwarding
// it: the client's fault, never retried.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

var errStaleConn = errors.New("pooled connection closed by the endpoint")
