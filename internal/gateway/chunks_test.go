package gateway

import (
	"bytes"
	"io"
	"net/http/httputil"
	"testing"
)

func TestChunkScannerFindsTheEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int // bytes of the body; -1: not ended
		fail bool
	}{
		{"0\r\n\r\n", 5, false},
		{"5\r\nhello\r\n0\r\n\r\nNEXT", 15, false},
		{"5;name=v\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", 40, false},
		{"A\r\n0123456789\r\n0\r\n\r\n", 20, false},
		{"5\r\nhello\r\n", -1, false},
		{"5\r\nhello\r\n0\r\nX-Sum: 1\r\n", -1, false},
		{"zz\r\n", 0, true},
		{"5\r\nhelloXX", 0, true},
		{"5\nhello\r\n", 0, true},
		{"\r\n", 0, true},
		{"1000000000000000\r\n", 0, true},
	} {
		var s chunkScanner
		n, done, err := s.scan([]byte(tc.in))
		switch {
		case tc.fail:
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.n < 0 && done:
			t.Errorf("%q: ended at %d", tc.in, n)
		case tc.n >= 0 && (!done || n != tc.n):
			t.Errorf("%q: n %d done %v; want %d", tc.in, n, done, tc.n)
		}
	}
}

// The scanner's verdict does not depend on how the bytes arrive, and a
// body Go's chunked writer made ends where it should.
func FuzzChunkScanner(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), 3, []byte("hello"))
	f.Add([]byte("5;x\r\nhello\r\n0\r\nT: v\r\n\r\nrest"), 9, []byte(""))
	f.Add([]byte("zz"), 1, []byte("a\r\nb"))
	f.Fuzz(func(t *testing.T, b []byte, split int, payload []byte) {
		var whole chunkScanner
		n1, done1, err1 := whole.scan(b)
		if n1 > len(b) || n1 < 0 {
			t.Fatalf("n %d of %d bytes", n1, len(b))
		}
		if split < 0 {
			split = -split
		}
		k := 0
		if len(b) > 0 {
			k = split % (len(b) + 1)
		}
		var parts chunkScanner
		n2, done2, err2 := parts.scan(b[:k])
		if !done2 && err2 == nil {
			m, d, e := parts.scan(b[k:])
			n2, done2, err2 = n2+m, d, e
		}
		if (err1 == nil) != (err2 == nil) || done1 != done2 || (err1 == nil && n1 != n2) {
			t.Fatalf("whole: %d %v %v; split at %d: %d %v %v", n1, done1, err1, k, n2, done2, err2)
		}

		var enc bytes.Buffer
		w := httputil.NewChunkedWriter(&enc)
		w.Write(payload)
		w.Close()
		enc.WriteString("\r\n")
		body := enc.Len()
		enc.WriteString("GET /next")
		var s chunkScanner
		n, done, err := s.scan(enc.Bytes())
		if err != nil || !done || n != body {
			t.Fatalf("Go's chunked %q: %d %v %v; want %d", enc.Bytes(), n, done, err, body)
		}
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(enc.Bytes()[:n])))
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("decoded %q, %v", got, err)
		}
	})
}
