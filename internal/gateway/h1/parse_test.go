package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
)

const plainGet = "GET /orders?id=7 HTTP/1.1\r\nHost: api.dev.berth.localhost\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Verdict
	}{
		{"plain GET", plainGet, Plain},
		{"with a body", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", Plain},
		{"keep-alive token", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", Plain},
		{"empty value", "GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", Plain},
		{"no end yet", "GET / HTTP/1.1\r\nHost: x\r\n", Incomplete},
		{"nothing yet", "", Incomplete},

		// Everything below is net/http's: it answers 400/431 or serves it.
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", NotPlain},
		{"bare LF in a header", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", NotPlain},
		{"CR without LF", "GET / HTTP/1.1\r\nHost: x\r\rA: b\r\n\r\n", NotPlain},
		{"obsolete fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", NotPlain},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", Reject},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", Reject},
		{"TE obfuscated and CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n", Reject},
		{"CL and TE, no end yet", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", Incomplete},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", NotPlain},
		{"two lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", NotPlain},
		{"same length twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", NotPlain},
		{"signed length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n", NotPlain},
		{"length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\n", NotPlain},
		{"huge length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", NotPlain},
		{"no host", "GET / HTTP/1.1\r\nA: b\r\n\r\n", NotPlain},
		{"two hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", NotPlain},
		{"odd host", "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", NotPlain},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NotPlain},
		{"upgrade to h2c", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", NotPlain},
		{"websocket", "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", NotPlain},
		{"100-continue", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", NotPlain},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", NotPlain},
		{"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", NotPlain},
		{"absolute form", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", NotPlain},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", NotPlain},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", NotPlain},
		{"no colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", NotPlain},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", NotPlain},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x7fc\r\n\r\n", NotPlain},
		{"control byte in target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", NotPlain},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", NotPlain},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", NotPlain},
		{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", NotPlain},
		{"TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NotPlain},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: b\r\n", MaxFields+1) + "\r\n", NotPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Head
			if got := Parse([]byte(tc.in), &h); got != tc.want {
				t.Errorf("Parse(%q) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

// Every proper prefix of a plain head is Incomplete: a head that arrives
// a byte at a time is waited for, not misjudged.
func TestParsePrefixes(t *testing.T) {
	var h Head
	for i := range len(plainGet) {
		if v := Parse([]byte(plainGet[:i]), &h); v != Incomplete {
			t.Fatalf("Parse(%q) = %v; want Incomplete", plainGet[:i], v)
		}
	}
}

func TestParseFields(t *testing.T) {
	in := []byte("POST /a/b?x=1 HTTP/1.1\r\nhost: Api.Dev\r\nContent-Length: 12\r\nX-A:  spaced value \t\r\nConnection: keep-alive, Close\r\n\r\nbody")
	var h Head
	if v := Parse(in, &h); v != Plain {
		t.Fatalf("verdict %v", v)
	}
	if got := string(in[:h.Len]); !strings.HasSuffix(got, "\r\n\r\n") || h.Len != len(in)-4 {
		t.Errorf("Len %d", h.Len)
	}
	if m, tg, host := string(in[h.MethodStart:h.MethodEnd]), string(in[h.TargetStart:h.TargetEnd]), string(in[h.HostStart:h.HostEnd]); m != "POST" || tg != "/a/b?x=1" || host != "Api.Dev" {
		t.Errorf("method %q target %q host %q", m, tg, host)
	}
	if h.ContentLength != 12 || !h.Close {
		t.Errorf("ContentLength %d Close %v", h.ContentLength, h.Close)
	}
	var got []string
	for _, f := range h.Fields {
		got = append(got, string(in[f.NameStart:f.NameEnd])+"="+string(in[f.ValueStart:f.ValueEnd]))
	}
	want := []string{"Content-Length=12", "X-A=spaced value", "Connection=keep-alive, Close"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fields %q; want %q", got, want)
	}
}

// FuzzParse: whatever the bytes, Parse does not panic, and a head it calls
// plain is one net/http reads the same way: method, target, host, length,
// every header value.
func FuzzParse(f *testing.F) {
	f.Add([]byte(plainGet))
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Head
		v := Parse(b, &h)
		if v != Plain {
			return
		}
		if h.Len > len(b) || !bytes.HasSuffix(b[:h.Len], []byte("\r\n\r\n")) {
			t.Fatalf("Len %d of %q", h.Len, b)
		}
		if Parse(b[:h.Len-1], &Head{}) != Incomplete {
			t.Fatalf("a prefix of plain %q is not Incomplete", b[:h.Len])
		}
		if _, err := url.ParseRequestURI(string(b[h.TargetStart:h.TargetEnd])); err != nil {
			// The target's escapes are the server's to check (it
			// hands such a request to net/http).
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:h.Len])))
		if err != nil {
			t.Fatalf("plain to Parse, refused by net/http: %v\n%q", err, b[:h.Len])
		}
		if r.Method != string(b[h.MethodStart:h.MethodEnd]) || r.RequestURI != string(b[h.TargetStart:h.TargetEnd]) || r.Host != string(b[h.HostStart:h.HostEnd]) {
			t.Fatalf("net/http read %s %s host %q from %q", r.Method, r.RequestURI, r.Host, b[:h.Len])
		}
		cl := h.ContentLength
		if cl < 0 {
			cl = 0
		}
		if r.ContentLength != cl || r.Close != h.Close {
			t.Fatalf("length %d close %v; net/http %d %v: %q", cl, h.Close, r.ContentLength, r.Close, b[:h.Len])
		}
		got := http.Header{}
		for _, fd := range h.Fields {
			k := textproto.CanonicalMIMEHeaderKey(string(b[fd.NameStart:fd.NameEnd]))
			got[k] = append(got[k], string(b[fd.ValueStart:fd.ValueEnd]))
		}
		for k, vs := range r.Header {
			if strings.Join(got[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("header %s: %q; net/http %q: %q", k, got[k], vs, b[:h.Len])
			}
		}
		if len(got) != len(r.Header) {
			t.Fatalf("headers %v; net/http %v", got, r.Header)
		}
	})
}

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Verdict
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", Plain},
		{"no reason", "HTTP/1.1 204\r\n\r\n", Plain},
		{"no length", "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", Plain},
		{"not yet", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", Incomplete},
		{"interim", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", NotPlain},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", NotPlain},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", NotPlain},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", NotPlain},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 5\n\n", NotPlain},
		{"fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", NotPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h ResponseHead
			if got := ParseResponse([]byte(tc.in), &h); got != tc.want {
				t.Errorf("ParseResponse(%q) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseResponse: a head ParseResponse calls plain is one net/http
// reads the same way: status, length, close, every header value.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nA: b\r\nA: c\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ResponseHead
		if ParseResponse(b, &h) != Plain {
			return
		}
		if h.Len > len(b) || !bytes.HasSuffix(b[:h.Len], []byte("\r\n\r\n")) {
			t.Fatalf("Len %d of %q", h.Len, b)
		}
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b[:h.Len])), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("plain to ParseResponse, refused by net/http: %v\n%q", err, b[:h.Len])
		}
		// Without a length the body runs to the connection's end, and
		// net/http says Close: the gateway leaves those to net/http.
		if res.StatusCode != h.Status || res.Status != string(b[h.StatusStart:h.StatusEnd]) || (h.ContentLength >= 0 && res.Close != h.Close) {
			t.Fatalf("status %d %q close %v; net/http %d %q %v", h.Status, b[h.StatusStart:h.StatusEnd], h.Close, res.StatusCode, res.Status, res.Close)
		}
		if h.ContentLength >= 0 && res.ContentLength != h.ContentLength && h.Status != 204 && h.Status != 304 {
			t.Fatalf("length %d; net/http %d", h.ContentLength, res.ContentLength)
		}
		got := http.Header{}
		for _, fd := range h.Fields {
			k := textproto.CanonicalMIMEHeaderKey(string(b[fd.NameStart:fd.NameEnd]))
			got[k] = append(got[k], string(b[fd.ValueStart:fd.ValueEnd]))
		}
		for k, vs := range res.Header {
			if strings.Join(got[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("header %s: %q; net/http %q: %q", k, got[k], vs, b[:h.Len])
			}
		}
	})
}
