package h1

// Verdict is what Parse made of the bytes.
type Verdict int

const (
	// Incomplete: no end of head yet and nothing wrong so far; read more.
	Incomplete Verdict = iota
	// Plain: a whole head of the subset, Len bytes long.
	Plain
	// NotPlain: not the subset (or not valid HTTP): net/http's to serve
	// or refuse.
	NotPlain
	// Reject: a whole head, Len bytes long, with both Content-Length and
	// Transfer-Encoding: the framing a smuggling attempt plays on. RFC
	// 9112 6.3 allows refusing it (400) and requires closing the
	// connection after the answer either way.
	Reject
)

func (v Verdict) String() string {
	switch v {
	case Incomplete:
		return "Incomplete"
	case Plain:
		return "Plain"
	case Reject:
		return "Reject"
	}
	return "NotPlain"
}

// Field is one header line: offsets into the parsed bytes.
type Field struct {
	NameStart, NameEnd   int
	ValueStart, ValueEnd int
}

// MaxFields bounds the header lines of a plain head; a request with more
// is net/http's.
const MaxFields = 128

// Head is a parsed request head: offsets into the parsed bytes.
type Head struct {
	Len                    int // bytes of the head, final CRLF included
	MethodStart, MethodEnd int
	TargetStart, TargetEnd int
	HostStart, HostEnd     int
	ContentLength          int64 // -1: none
	Close                  bool  // Connection: close
	Fields                 []Field
}

// Parse parses the request head at the start of b into h, reusing
// h.Fields' array. The Host line is not among h.Fields.
func Parse(b []byte, h *Head) Verdict {
	h.Fields = h.Fields[:0]
	h.ContentLength = -1
	h.Close = false
	h.HostStart, h.HostEnd = -1, -1

	// Request line: method SP target SP HTTP/1.1 CRLF.
	i := 0
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	if i == len(b) {
		return Incomplete
	}
	if i == 0 || b[i] != ' ' {
		return NotPlain
	}
	h.MethodStart, h.MethodEnd = 0, i
	i++
	if i == len(b) {
		return Incomplete
	}
	if b[i] != '/' {
		// asterisk-form (the h2c preface's "PRI *"), absolute-form,
		// authority-form (CONNECT): net/http's.
		return NotPlain
	}
	h.TargetStart = i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return Incomplete
	}
	if b[i] != ' ' {
		return NotPlain
	}
	h.TargetEnd = i
	i++
	const version = "HTTP/1.1\r\n"
	for j := 0; j < len(version); j++ {
		if i+j == len(b) {
			return Incomplete
		}
		if b[i+j] != version[j] {
			return NotPlain
		}
	}
	i += len(version)

	hosts, lengths, encodings := 0, 0, 0
	badLength := false
	for {
		end, v := headEnd(b, i)
		if v != Plain {
			return v
		}
		if end {
			h.Len = i + 2
			switch {
			case encodings > 0 && lengths > 0:
				return Reject
			case encodings > 0 || hosts != 1 || lengths > 1 || badLength:
				return NotPlain
			}
			return Plain
		}
		// name ":" OWS value OWS CRLF; a line opening with a space is an
		// obsolete fold, a bare LF anywhere not ours.
		ns, ne, vs, ve, next, v := fieldLine(b, i)
		if v != Plain {
			return v
		}
		i = next
		name, value := b[ns:ne], b[vs:ve]
		switch {
		case EqualFold(name, "host"):
			hosts++
			if !validHost(value) {
				return NotPlain
			}
			h.HostStart, h.HostEnd = vs, ve
			continue
		case EqualFold(name, "content-length"):
			lengths++
			if n, ok := parseLength(value); ok {
				h.ContentLength = n
			} else {
				badLength = true
			}
		case EqualFold(name, "transfer-encoding"):
			// Chunked bodies are net/http's to read; with a
			// Content-Length too, refused (Reject).
			encodings++
		case EqualFold(name, "upgrade"),
			EqualFold(name, "expect"), EqualFold(name, "http2-settings"):
			// Protocol switches and 100-continue are net/http's.
			return NotPlain
		case EqualFold(name, "connection"):
			if HasToken(value, "close") {
				h.Close = true
			}
		}
		if len(h.Fields) == MaxFields {
			return NotPlain
		}
		h.Fields = append(h.Fields, Field{ns, ne, vs, ve})
	}
}

// parseLength reads a Content-Length: digits only, and small enough to
// add to without overflow.
// headEnd says whether the line at b[i:] is the CRLF that ends a head;
// Plain when b tells (a field line may start there), Incomplete when b
// ends first, NotPlain for a CR without its LF.
func headEnd(b []byte, i int) (end bool, v Verdict) {
	switch {
	case i == len(b):
		return false, Incomplete
	case b[i] != '\r':
		return false, Plain
	case i+1 == len(b):
		return false, Incomplete
	case b[i+1] != '\n':
		return false, NotPlain
	}
	return true, Plain
}

// fieldLine reads the header field line at b[i:] — name ":" OWS value OWS
// CRLF — giving where its name and value start and end and where the next
// line begins; Plain when it is whole and well-formed, Incomplete when b
// ends inside it, NotPlain otherwise (an obsolete fold, a bare LF, a byte a
// field may not have).
func fieldLine(b []byte, i int) (ns, ne, vs, ve, next int, v Verdict) {
	ns = i
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, 0, 0, 0, 0, Incomplete
	}
	if i == ns || b[i] != ':' {
		return 0, 0, 0, 0, 0, NotPlain
	}
	ne = i
	i++
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	vs = i
	for i < len(b) && isVchar(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, 0, 0, 0, 0, Incomplete
	}
	if b[i] != '\r' {
		return 0, 0, 0, 0, 0, NotPlain
	}
	if i+1 == len(b) {
		return 0, 0, 0, 0, 0, Incomplete
	}
	if b[i+1] != '\n' {
		return 0, 0, 0, 0, 0, NotPlain
	}
	ve = i
	for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
		ve--
	}
	return ns, ne, vs, ve, i + 2, Plain
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validHost accepts a host[:port] of the characters a reg-name, an IP
// literal and a port may hold; anything else is net/http's to refuse.
func validHost(v []byte) bool {
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '[' || c == ']' || c == '%':
		default:
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list v (a Connection
// value) holds tok, ASCII case folded on both sides.
func HasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		t := v[:i]
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if EqualFold(t, tok) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// EqualFold compares b with s, ASCII letters in either case alike.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// isTchar: RFC 9110's token characters.
func isTchar(c byte) bool { return tchar[c] }

// isVchar: what a field value may hold (visible ASCII, obs-text, space
// and tab inside).
func isVchar(c byte) bool { return c == '\t' || (c >= ' ' && c != 0x7f) }

var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// ResponseHead is a parsed response head: offsets into the parsed bytes.
type ResponseHead struct {
	Len           int // bytes of the head, final CRLF included
	Minor         int // HTTP/1.Minor: 0 or 1
	Status        int
	StatusStart   int   // "200 OK" starts here…
	StatusEnd     int   // …and ends here
	ContentLength int64 // -1: none
	Chunked       bool  // Transfer-Encoding: chunked (ParseAnyResponse only)
	Close         bool  // Connection: close
	Fields        []Field
}

// ParseResponse parses an upstream's response head at the start of b into
// h, reusing h.Fields' array. Plain is an HTTP/1.1 final answer (status
// 200 or above) framed by at most one Content-Length, without
// Transfer-Encoding; anything else is NotPlain, for net/http's reader.
func ParseResponse(b []byte, h *ResponseHead) Verdict {
	v := ParseAnyResponse(b, h)
	if v == Plain && (h.Minor != 1 || h.Status < 200 || h.Chunked) {
		return NotPlain
	}
	return v
}

// ParseAnyResponse is ParseResponse for a reader that frames bodies
// itself: it also takes HTTP/1.0, interim answers (1xx) and a body
// chunked as its only transfer coding (Chunked). A Content-Length beside
// Transfer-Encoding, two Content-Lengths, or another transfer coding is
// NotPlain: an answer whose end cannot be told for certain.
func ParseAnyResponse(b []byte, h *ResponseHead) Verdict {
	h.Fields = h.Fields[:0]
	h.ContentLength = -1
	h.Close = false
	h.Chunked = false
	const version = "HTTP/1."
	for i := 0; i < len(version); i++ {
		if i == len(b) {
			return Incomplete
		}
		if b[i] != version[i] {
			return NotPlain
		}
	}
	i := len(version)
	if i+1 >= len(b) {
		return Incomplete
	}
	switch {
	case b[i] == '1' || b[i] == '0':
		h.Minor = int(b[i] - '0')
	default:
		return NotPlain
	}
	if b[i+1] != ' ' {
		return NotPlain
	}
	i += 2
	h.StatusStart = i
	for j := 0; j < 3; j++ {
		if i == len(b) {
			return Incomplete
		}
		if b[i] < '0' || b[i] > '9' {
			return NotPlain
		}
		i++
	}
	h.Status = int(b[i-3]-'0')*100 + int(b[i-2]-'0')*10 + int(b[i-1]-'0')
	if h.Status < 100 {
		return NotPlain
	}
	if i == len(b) {
		return Incomplete
	}
	if b[i] == ' ' {
		for i < len(b) && isVchar(b[i]) {
			i++
		}
		if i == len(b) {
			return Incomplete
		}
	}
	if b[i] != '\r' {
		return NotPlain
	}
	h.StatusEnd = i
	if i+1 == len(b) {
		return Incomplete
	}
	if b[i+1] != '\n' {
		return NotPlain
	}
	i += 2
	encodings := 0
	keepAlive := false
	for {
		end, v := headEnd(b, i)
		if v != Plain {
			return v
		}
		if end {
			h.Len = i + 2
			if encodings > 0 && (h.ContentLength >= 0 || !h.Chunked || encodings > 1) {
				return NotPlain
			}
			if h.Minor == 0 && !keepAlive {
				h.Close = true
			}
			return Plain
		}
		ns, ne, vs, ve, next, v := fieldLine(b, i)
		if v != Plain {
			return v
		}
		i = next
		name, value := b[ns:ne], b[vs:ve]
		switch {
		case EqualFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || h.ContentLength >= 0 {
				return NotPlain
			}
			h.ContentLength = n
		case EqualFold(name, "transfer-encoding"):
			encodings++
			h.Chunked = EqualFold(value, "chunked")
		case EqualFold(name, "connection"):
			if HasToken(value, "close") {
				h.Close = true
			}
			if HasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
		if len(h.Fields) == MaxFields {
			return NotPlain
		}
		h.Fields = append(h.Fields, Field{ns, ne, vs, ve})
	}
}
