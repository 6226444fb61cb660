package sigv4

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// Payload hash values of x-amz-content-sha256 that are not a hex digest.
const (
	UnsignedPayload              = "UNSIGNED-PAYLOAD"
	StreamingPayload             = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingPayloadTrailer      = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	StreamingUnsignedPayloadTail = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

const (
	timeFormat  = "20060102T150405Z"
	dateFormat  = "20060102"
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// MaxPresignExpiry is the longest X-Amz-Expires AWS accepts: 7 days.
	MaxPresignExpiry = 7 * 24 * time.Hour
	// DefaultMaxSkew is how far a signed request's time may be from ours.
	DefaultMaxSkew = 15 * time.Minute
	// maxBufferedPayload bounds a body read whole to hash it (a request
	// without x-amz-content-sha256).
	maxBufferedPayload = 16 << 20
)

// Error is a verification failure with the code AWS answers it with.
type Error struct {
	Code    string
	Message string
	// Status is the HTTP status AWS uses for Code.
	Status int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// ErrUnknownKey is what a KeyLookup returns (wrapped or not) for an access
// key ID it does not know: the request is answered InvalidAccessKeyId.
var ErrUnknownKey = errors.New("unknown access key")

// ErrNoSignature is returned by Verify for a request that carries no
// signature at all (anonymous); the caller decides whether that is allowed.
var ErrNoSignature = errorf(http.StatusForbidden, "AccessDenied", "the request is not signed")

// KeyLookup returns the secret of an access key ID, or ErrUnknownKey.
type KeyLookup func(ctx context.Context, accessKeyID string) (secret string, err error)

// Verifier checks the signatures of requests to one service.
type Verifier struct {
	// Service is the scope's service name the requests must be signed
	// for ("s3").
	Service string
	Lookup  KeyLookup
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxSkew bounds the difference between a request's X-Amz-Date and
	// Now (default DefaultMaxSkew).
	MaxSkew time.Duration
	// DoubleEscapePath escapes the already escaped path once more in the
	// canonical URI, as SigV4 does for every service but S3.
	DoubleEscapePath bool

	keys sync.Map // signingKeyCacheKey → []byte
}

// Credential is the scope a request was signed with.
type Credential struct {
	AccessKeyID string
	Date        string // YYYYMMDD
	Region      string
	Service     string
}

func (c Credential) scope() string {
	return c.Date + "/" + c.Region + "/" + c.Service + "/aws4_request"
}

// Result is a verified request: who signed it, and its body to read
// instead of r.Body. The body verifies as it is read: a payload hash or a
// chunk signature that does not match is its read error (an *Error).
type Result struct {
	Credential Credential
	Presigned  bool
	// Body is the payload: r.Body, or its decoded aws-chunked content.
	Body io.ReadCloser
	// ContentLength is the payload's length, -1 when unknown.
	ContentLength int64
	// Trailer holds the trailing headers of an aws-chunked body (the
	// checksums the SDKs send after the data); it is complete once Body
	// returned io.EOF.
	Trailer http.Header
	// PayloadHash is the x-amz-content-sha256 the request was signed with.
	PayloadHash string
}

// parsed is what the request says about its signature.
type parsed struct {
	cred          Credential
	signedHeaders []string
	signature     string
	amzDate       time.Time
	amzDateRaw    string
	presigned     bool
	expires       time.Duration
}

// Verify checks r's signature (header or presigned query) and returns what
// to read as its body. Errors are *Error; ErrNoSignature for an unsigned
// request.
func (v *Verifier) Verify(r *http.Request) (*Result, error) {
	p, err := parseRequest(r)
	if err != nil {
		return nil, err
	}
	if p.cred.Service != v.Service {
		return nil, errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed",
			"the credential's service %q is wrong; expecting %q", p.cred.Service, v.Service)
	}
	if p.amzDate.Format(dateFormat) != p.cred.Date {
		return nil, errorf(http.StatusForbidden, "SignatureDoesNotMatch",
			"the credential's date %s is not the date of X-Amz-Date %s", p.cred.Date, p.amzDateRaw)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	if p.presigned {
		if t.Before(p.amzDate.Add(-v.maxSkew())) {
			return nil, errorf(http.StatusForbidden, "AccessDenied", "the request is not valid yet (X-Amz-Date %s)", p.amzDateRaw)
		}
		if t.After(p.amzDate.Add(p.expires)) {
			return nil, errorf(http.StatusForbidden, "AccessDenied", "Request has expired")
		}
	} else if d := t.Sub(p.amzDate); d > v.maxSkew() || d < -v.maxSkew() {
		return nil, errorf(http.StatusForbidden, "RequestTimeTooSkewed",
			"The difference between the request time (%s) and the current time (%s) is too large.",
			p.amzDate.Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if !slices.Contains(p.signedHeaders, "host") {
		return nil, errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed", "the host header must be signed")
	}
	if v.Lookup == nil {
		return nil, errorf(http.StatusForbidden, "InvalidAccessKeyId", "no access keys are configured")
	}
	secret, err := v.Lookup(r.Context(), p.cred.AccessKeyID)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			return nil, errorf(http.StatusForbidden, "InvalidAccessKeyId",
				"The AWS Access Key Id you provided does not exist in our records.")
		}
		return nil, err
	}

	res := &Result{Credential: p.cred, Presigned: p.presigned, Body: r.Body, ContentLength: r.ContentLength}
	if res.Body == nil {
		res.Body = http.NoBody
	}
	payload := UnsignedPayload
	if !p.presigned {
		payload = r.Header.Get("X-Amz-Content-Sha256")
		if payload == "" {
			// Services other than S3 sign the body's hash without sending
			// it: hash the body here (bounded).
			b, err := io.ReadAll(io.LimitReader(res.Body, maxBufferedPayload+1))
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "IncompleteBody", "reading the body: %v", err)
			}
			if len(b) > maxBufferedPayload {
				return nil, errorf(http.StatusRequestEntityTooLarge, "EntityTooLarge",
					"a body over %d bytes must be sent with x-amz-content-sha256", maxBufferedPayload)
			}
			sum := sha256.Sum256(b)
			payload = hex.EncodeToString(sum[:])
			res.Body = io.NopCloser(bytes.NewReader(b))
			res.ContentLength = int64(len(b))
		}
	} else if q := r.URL.Query().Get("X-Amz-Content-Sha256"); q != "" {
		payload = q
	}
	res.PayloadHash = payload

	key := v.signingKey(secret, p.cred)
	creq := canonicalRequest(r, p, payload, v.DoubleEscapePath)
	sts := stringToSign(p.amzDateRaw, p.cred.scope(), creq)
	want := hex.EncodeToString(hmacSHA256(key, []byte(sts)))
	if subtle.ConstantTimeCompare([]byte(want), []byte(p.signature)) != 1 {
		return nil, &Error{Code: "SignatureDoesNotMatch", Status: http.StatusForbidden,
			Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."}
	}

	switch payload {
	case UnsignedPayload:
	case StreamingPayload, StreamingPayloadTrailer, StreamingUnsignedPayloadTail:
		if p.presigned {
			return nil, errorf(http.StatusBadRequest, "InvalidRequest", "a presigned request cannot stream chunks")
		}
		n := int64(-1)
		if d := r.Header.Get("X-Amz-Decoded-Content-Length"); d != "" {
			if n, err = strconv.ParseInt(d, 10, 64); err != nil || n < 0 {
				return nil, errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-decoded-content-length %q is not a length", d)
			}
		} else if payload != StreamingUnsignedPayloadTail {
			return nil, errorf(http.StatusLengthRequired, "MissingContentLength", "x-amz-decoded-content-length is required with %s", payload)
		}
		res.Trailer = http.Header{}
		cr := &chunkedReader{
			src: newByteReader(res.Body), closer: res.Body, remaining: n, trailer: res.Trailer,
			signed:   payload != StreamingUnsignedPayloadTail,
			trailers: payload != StreamingPayload,
			key:      key, prevSig: p.signature, amzDate: p.amzDateRaw, scope: p.cred.scope(),
			declared: declaredTrailers(r.Header.Get("X-Amz-Trailer")),
		}
		res.Body, res.ContentLength = cr, n
	default:
		if len(payload) != 64 || !isHex(payload) {
			return nil, errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 %q is not a SHA-256 digest", payload)
		}
		res.Body = &hashingReader{r: res.Body, h: sha256.New(), want: payload}
	}
	return res, nil
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return DefaultMaxSkew
}

type signingKeyCacheKey struct {
	secretSum [32]byte
	scope     string
}

// signingKey derives (and caches per secret and scope) the day's key.
func (v *Verifier) signingKey(secret string, c Credential) []byte {
	k := signingKeyCacheKey{sha256.Sum256([]byte(secret)), c.scope()}
	if key, ok := v.keys.Load(k); ok {
		return key.([]byte)
	}
	key := deriveKey(secret, c)
	// A day's keys only: the cache stays as small as the set of keys in
	// use today.
	n := 0
	v.keys.Range(func(key, _ any) bool {
		if n++; n > 4096 {
			v.keys.Delete(key)
		}
		return true
	})
	v.keys.Store(k, key)
	return key
}

func deriveKey(secret string, c Credential) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(c.Date))
	k = hmacSHA256(k, []byte(c.Region))
	k = hmacSHA256(k, []byte(c.Service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

func stringToSign(amzDate, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

// parseRequest reads the signature from the Authorization header or the
// presigned query.
func parseRequest(r *http.Request) (*parsed, error) {
	auth := r.Header.Get("Authorization")
	q := r.URL.Query()
	switch {
	case auth != "":
		return parseAuthorization(auth, r.Header)
	case q.Get("X-Amz-Algorithm") != "" || q.Get("X-Amz-Signature") != "":
		return parsePresigned(q)
	}
	return nil, ErrNoSignature
}

func parseAuthorization(auth string, h http.Header) (*parsed, error) {
	malformed := func(format string, args ...any) error {
		return errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed", format, args...)
	}
	alg, rest, ok := strings.Cut(auth, " ")
	if !ok || alg != Algorithm {
		if strings.HasPrefix(auth, "AWS ") {
			return nil, errorf(http.StatusBadRequest, "InvalidRequest", "Signature Version 2 is not supported; sign with AWS4-HMAC-SHA256")
		}
		return nil, malformed("the authorization header's algorithm must be %s", Algorithm)
	}
	p := &parsed{}
	var cred, signed, sig string
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, malformed("the authorization header has a part %q without '='", part)
		}
		switch k {
		case "Credential":
			cred = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			sig = val
		}
	}
	if cred == "" || signed == "" || sig == "" {
		return nil, malformed("the authorization header needs Credential, SignedHeaders and Signature")
	}
	c, err := parseCredential(cred)
	if err != nil {
		return nil, err
	}
	p.cred, p.signature = c, sig
	p.signedHeaders = strings.Split(signed, ";")
	p.amzDateRaw = h.Get("X-Amz-Date")
	if p.amzDateRaw == "" {
		if d := h.Get("Date"); d != "" {
			t, err := http.ParseTime(d)
			if err != nil {
				return nil, errorf(http.StatusForbidden, "AccessDenied", "the Date header %q is not a date", d)
			}
			p.amzDateRaw = t.UTC().Format(timeFormat)
		} else {
			return nil, errorf(http.StatusForbidden, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
		}
	}
	if p.amzDate, err = time.Parse(timeFormat, p.amzDateRaw); err != nil {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "X-Amz-Date %q is not of the form %s", p.amzDateRaw, timeFormat)
	}
	return p, nil
}

func parsePresigned(q url.Values) (*parsed, error) {
	bad := func(format string, args ...any) error {
		return errorf(http.StatusBadRequest, "AuthorizationQueryParametersError", format, args...)
	}
	if q.Get("X-Amz-Algorithm") != Algorithm {
		return nil, bad("X-Amz-Algorithm only supports %q", Algorithm)
	}
	for _, k := range []string{"X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date", "X-Amz-Expires"} {
		if q.Get(k) == "" {
			return nil, bad("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters (%s is missing)", k)
		}
	}
	c, err := parseCredential(q.Get("X-Amz-Credential"))
	if err != nil {
		return nil, err
	}
	p := &parsed{cred: c, presigned: true, signature: q.Get("X-Amz-Signature"), amzDateRaw: q.Get("X-Amz-Date")}
	p.signedHeaders = strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	if p.amzDate, err = time.Parse(timeFormat, p.amzDateRaw); err != nil {
		return nil, bad("X-Amz-Date %q is not of the form %s", p.amzDateRaw, timeFormat)
	}
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || secs < 0 {
		return nil, bad("X-Amz-Expires should be a number of seconds")
	}
	if time.Duration(secs)*time.Second > MaxPresignExpiry {
		return nil, bad("X-Amz-Expires must be less than a week (in seconds) that is 604800")
	}
	p.expires = time.Duration(secs) * time.Second
	return p, nil
}

func parseCredential(s string) (Credential, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return Credential{}, errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed",
			"the credential %q is not of the form ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request", s)
	}
	if _, err := time.Parse(dateFormat, parts[1]); err != nil {
		return Credential{}, errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed", "the credential's date %q is not YYYYMMDD", parts[1])
	}
	return Credential{AccessKeyID: parts[0], Date: parts[1], Region: parts[2], Service: parts[3]}, nil
}

// canonicalRequest is SigV4's canonical form of r.
func canonicalRequest(r *http.Request, p *parsed, payload string, doubleEscape bool) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	uri := escapePath(path)
	if doubleEscape {
		uri = escapePath(uri)
	}
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery, p.presigned))
	b.WriteByte('\n')
	for _, name := range p.signedHeaders {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(p.signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		if v := r.Header.Values("Content-Length"); len(v) > 0 {
			vals = v
		} else if r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		vals = r.TransferEncoding
	default:
		vals = r.Header.Values(name)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// canonicalQuery sorts the query's parameters, each name and value
// escaped as SigV4 escapes them; a presigned request's signature is left
// out.
func canonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		params = append(params, kv{escape(k, true), escape(v, true)})
	}
	slices.SortFunc(params, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// escapePath escapes every byte of a path but unreserved ones and '/'.
func escapePath(p string) string { return escape(p, false) }

// escape is SigV4's URI encoding: A-Z a-z 0-9 - _ . ~ stay, everything
// else is %XX (upper case); '/' stays unless encodeSlash.
func escape(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// hashingReader checks the body's SHA-256 against the signed one at EOF.
type hashingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want string
	err  error
}

func (h *hashingReader) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(h.h.Sum(nil)); !strings.EqualFold(got, h.want) {
			h.err = errorf(http.StatusBadRequest, "XAmzContentSHA256Mismatch",
				"The provided 'x-amz-content-sha256' header does not match what was computed.")
			return n, h.err
		}
	}
	return n, err
}

func (h *hashingReader) Close() error { return h.r.Close() }
