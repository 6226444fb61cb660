package sigv4

import (
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Signer signs requests as an AWS SDK would, for Berth's own clients and
// tests.
type Signer struct {
	AccessKeyID, Secret string
	Region, Service     string
	// DoubleEscapePath as in Verifier.
	DoubleEscapePath bool
}

func (s Signer) credential(t time.Time) Credential {
	return Credential{AccessKeyID: s.AccessKeyID, Date: t.UTC().Format(dateFormat), Region: s.Region, Service: s.Service}
}

// Sign adds X-Amz-Date, X-Amz-Content-Sha256 (payloadHash, UnsignedPayload
// when empty) and the Authorization header, signing every header r has.
func (s Signer) Sign(r *http.Request, payloadHash string, t time.Time) {
	if payloadHash == "" {
		payloadHash = UnsignedPayload
	}
	amzDate := t.UTC().Format(timeFormat)
	r.Header.Set("X-Amz-Date", amzDate)
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	r.Header.Del("Authorization")
	signed := []string{"host"}
	for name := range r.Header {
		if n := strings.ToLower(name); n != "user-agent" && !slices.Contains(signed, n) {
			signed = append(signed, n)
		}
	}
	slices.Sort(signed)
	c := s.credential(t)
	p := &parsed{cred: c, signedHeaders: signed, amzDateRaw: amzDate}
	creq := canonicalRequest(r, p, payloadHash, s.DoubleEscapePath)
	sig := hex.EncodeToString(hmacSHA256(deriveKey(s.Secret, c), []byte(stringToSign(amzDate, c.scope(), creq))))
	r.Header.Set("Authorization", Algorithm+" Credential="+s.AccessKeyID+"/"+c.scope()+
		", SignedHeaders="+strings.Join(signed, ";")+", Signature="+sig)
}

// Presign returns u (for method, with only the host signed) as a
// presigned URL valid for expires from t.
func (s Signer) Presign(method string, u *url.URL, expires time.Duration, t time.Time) *url.URL {
	out := *u
	c := s.credential(t)
	amzDate := t.UTC().Format(timeFormat)
	q := out.Query()
	q.Set("X-Amz-Algorithm", Algorithm)
	q.Set("X-Amz-Credential", s.AccessKeyID+"/"+c.scope())
	q.Set("X-Amz-Date", amzDate)
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	q.Set("X-Amz-SignedHeaders", "host")
	out.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	r := &http.Request{Method: method, URL: &out, Host: out.Host, Header: http.Header{}}
	p := &parsed{cred: c, signedHeaders: []string{"host"}, amzDateRaw: amzDate, presigned: true}
	creq := canonicalRequest(r, p, UnsignedPayload, s.DoubleEscapePath)
	sig := hex.EncodeToString(hmacSHA256(deriveKey(s.Secret, c), []byte(stringToSign(amzDate, c.scope(), creq))))
	out.RawQuery += "&X-Amz-Signature=" + sig
	return &out
}
