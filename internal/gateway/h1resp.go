package gateway

import (
	"io"
	"net/http"

	"berth.dev/berth/internal/gateway/h1"
)

// upAnswer is an upConn's reused answer: http.ReadResponse made a
// Response, a header map, a string per header and two body readers for
// every answer, half of the gateway's allocations.
type upAnswer struct {
	head h1.ResponseHead
	res  http.Response
	hdr  http.Header
	vals []string
	body lenBody
}

// readPlainResponse reads a plain answer (h1.ParseResponse) into the
// conn's reused Response. ok is false, with nothing consumed, for any
// other answer: http.ReadResponse's to read.
func (uc *upConn) readPlainResponse(r *http.Request) (res *http.Response, ok bool, err error) {
	a := uc.ans
	if a == nil {
		a = &upAnswer{hdr: make(http.Header, 16)}
		uc.ans = a
	}
	br := uc.br
	for {
		n := br.Buffered()
		if n == 0 {
			if _, err := br.Peek(1); err != nil {
				return nil, false, err
			}
			continue
		}
		b, _ := br.Peek(n)
		switch h1.ParseResponse(b, &a.head) {
		case h1.Incomplete:
			if n == br.Size() {
				return nil, false, nil
			}
			if _, err := br.Peek(n + 1); err != nil {
				return nil, false, err
			}
			continue
		case h1.NotPlain:
			return nil, false, nil
		}
		break
	}
	hd := &a.head
	noBody := r.Method == http.MethodHead || hd.Status == http.StatusNoContent || hd.Status == http.StatusNotModified
	if hd.ContentLength < 0 && !noBody {
		// Delimited by the connection's end: net/http's reader.
		return nil, false, nil
	}
	b, _ := br.Peek(hd.Len)
	s := string(b)
	br.Discard(hd.Len)
	a.vals = fillHeader(a.hdr, a.vals, s, hd.Fields)
	a.res = http.Response{
		Status:     s[hd.StatusStart:hd.StatusEnd],
		StatusCode: hd.Status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header:  a.hdr,
		Close:   hd.Close,
		Request: r,
	}
	switch {
	case noBody:
		a.res.Body = http.NoBody
		if r.Method == http.MethodHead {
			// The length of what a GET would have had, as net/http
			// reads it.
			a.res.ContentLength = hd.ContentLength
		}
	default:
		a.body = lenBody{uc: uc, n: hd.ContentLength}
		a.res.Body = &a.body
		a.res.ContentLength = hd.ContentLength
	}
	return &a.res, true, nil
}

// lenBody is an answer's body of a known length, off the conn's reader.
type lenBody struct {
	uc *upConn
	n  int64
}

func (b *lenBody) Read(p []byte) (int, error) { return readLimited(b.uc.br, p, &b.n) }

// readLimited reads at most *left more bytes of a body of known length
// from r: io.EOF with the last of them, io.ErrUnexpectedEOF if r ends
// first.
func readLimited(r io.Reader, p []byte, left *int64) (int, error) {
	if *left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > *left {
		p = p[:*left]
	}
	n, err := r.Read(p)
	*left -= int64(n)
	if err == io.EOF && *left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && *left == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *lenBody) Close() error { return nil }
