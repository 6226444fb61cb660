package sigv4_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"berth.dev/berth/internal/sigv4"
)

// FuzzVerify feeds arbitrary Authorization headers, queries and bodies:
// Verify must never panic, and a request signed for one path, query and
// body never verifies for another.
func FuzzVerify(f *testing.F) {
	f.Add("/bucket/key", "list-type=2&prefix=a", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00", []byte("x"))
	f.Add("/", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260304%2Fus-east-1%2Fs3%2Faws4_request", "", []byte{})
	f.Add("/b/%00%ff", "a=%zz&&=&b", "AWS4-HMAC-SHA256 ,,,=", []byte("0;chunk-signature=\r\n\r\n"))
	f.Fuzz(func(t *testing.T, path, query, auth string, body []byte) {
		u := &url.URL{Scheme: "http", Host: "s3.dev.berth.localhost", Path: path, RawQuery: query}
		r, err := http.NewRequest(http.MethodPut, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Amz-Date", now.Format("20060102T150405Z"))
		r.Header.Set("X-Amz-Content-Sha256", sigv4.StreamingUnsignedPayloadTail)
		if res, err := verifier().Verify(r); err == nil {
			io.Copy(io.Discard, res.Body)
		}

		// Signed properly, for another path: refused.
		signed, err := http.NewRequest(http.MethodPut, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		sigv4.Signer{AccessKeyID: keyID, Secret: secret, Region: region, Service: "s3"}.Sign(signed, sha(body), now)
		in := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/other", bytes.NewReader(body))
		in.Header = signed.Header
		if u.EscapedPath() != "/other" {
			if _, err := verifier().Verify(in); err == nil {
				t.Fatalf("a request signed for %q verified for /other", u.EscapedPath())
			}
		}
	})
}

// FuzzChunked decodes arbitrary aws-chunked bodies: no panic, no more
// data than the body held, and an error (never a silent short read) when
// the declared length is not what the chunks hold.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"), int64(5))
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\n"), int64(4))
	f.Add([]byte("ffffffff\r\n"), int64(-1))
	f.Fuzz(func(t *testing.T, body []byte, declared int64) {
		r := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/b/k", bytes.NewReader(body))
		if declared >= 0 {
			r.Header.Set("X-Amz-Decoded-Content-Length", itoa(declared))
		}
		r.Header.Set("Content-Encoding", "aws-chunked")
		sigv4.Signer{AccessKeyID: keyID, Secret: secret, Region: region, Service: "s3"}.Sign(r, sigv4.StreamingUnsignedPayloadTail, now)
		res, err := verifier().Verify(r)
		if err != nil {
			return
		}
		got, err := io.ReadAll(res.Body)
		if len(got) > len(body) {
			t.Fatalf("decoded %d bytes from a %d-byte body", len(got), len(body))
		}
		if err == nil && declared >= 0 && int64(len(got)) != declared {
			t.Fatalf("decoded %d bytes without error, declared %d", len(got), declared)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
