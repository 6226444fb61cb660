package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsv4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	md5simd "github.com/minio/md5-simd"
	miniosigner "github.com/minio/minio-go/v7/pkg/signer"

	"berth.dev/berth/internal/sigv4"
)

const (
	keyID  = "AKIDEXAMPLE"
	secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	region = "us-east-1"
)

var now = time.Date(2026, 3, 4, 10, 20, 30, 0, time.UTC)

func verifier() *sigv4.Verifier {
	return &sigv4.Verifier{
		Service: "s3",
		Now:     func() time.Time { return now },
		Lookup: func(_ context.Context, id string) (string, error) {
			if id == keyID {
				return secret, nil
			}
			return "", sigv4.ErrUnknownKey
		},
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func awsSign(t *testing.T, r *http.Request, body []byte, secretKey string, at time.Time) {
	t.Helper()
	r.Header.Set("X-Amz-Content-Sha256", sha(body))
	err := awsv4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secretKey},
		r, sha(body), "s3", region, at, func(o *awsv4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		t.Fatal(err)
	}
}

func code(err error) string {
	var e *sigv4.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return "not a sigv4 error: " + err.Error()
}

func readAll(t *testing.T, res *sigv4.Result) ([]byte, error) {
	t.Helper()
	return io.ReadAll(res.Body)
}

// The AWS SDK's own signer is the reference: what it signs verifies, with
// keys, paths and queries that need escaping.
func TestVerifyAWSSignedRequests(t *testing.T) {
	body := []byte("hello, object")
	for _, target := range []string{
		"http://s3.dev.berth.localhost/bucket/key",
		"http://bucket.s3.dev.berth.localhost/a%20b/c%2Bd~e%C3%A9.txt",
		"http://s3.dev.berth.localhost/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F&max-keys=10",
		"http://s3.dev.berth.localhost:8080/bucket/key?uploads",
		"http://s3.dev.berth.localhost/bucket/key?partNumber=2&uploadId=abc%3D%3D",
	} {
		r := httptest.NewRequest(http.MethodPut, target, bytes.NewReader(body))
		r.Header.Set("Content-Type", "text/plain")
		r.Header.Set("X-Amz-Meta-Colour", "  deep   blue ")
		awsSign(t, r, body, secret, now.Add(-time.Minute))
		res, err := verifier().Verify(r)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		got, err := readAll(t, res)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: body %q, %v", target, got, err)
		}
		if res.Credential.AccessKeyID != keyID || res.Credential.Region != region {
			t.Errorf("credential = %+v", res.Credential)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	body := []byte("payload")
	mk := func(mut func(r *http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/bucket/key", bytes.NewReader(body))
		awsSign(t, r, body, secret, now)
		if mut != nil {
			mut(r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"unsigned", httptest.NewRequest(http.MethodGet, "http://s3.dev.berth.localhost/b", nil), "AccessDenied"},
		{"wrong secret", func() *http.Request {
			r := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/bucket/key", bytes.NewReader(body))
			awsSign(t, r, body, "not-the-secret", now)
			return r
		}(), "SignatureDoesNotMatch"},
		{"changed path", mk(func(r *http.Request) { r.URL.Path = "/bucket/other" }), "SignatureDoesNotMatch"},
		{"changed host", mk(func(r *http.Request) { r.Host = "s3.prod.berth.localhost" }), "SignatureDoesNotMatch"},
		{"changed signed header", mk(func(r *http.Request) { r.Header.Set("X-Amz-Date", now.Add(time.Second).Format("20060102T150405Z")) }), "SignatureDoesNotMatch"},
		{"unknown key", mk(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), keyID, "AKIDOTHER", 1))
		}), "InvalidAccessKeyId"},
		{"too old", func() *http.Request {
			r := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/bucket/key", bytes.NewReader(body))
			awsSign(t, r, body, secret, now.Add(-20*time.Minute))
			return r
		}(), "RequestTimeTooSkewed"},
		{"other service", mk(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/s3/", "/lambda/", 1))
		}), "AuthorizationHeaderMalformed"},
		{"signature v2", mk(func(r *http.Request) { r.Header.Set("Authorization", "AWS "+keyID+":abc") }), "InvalidRequest"},
		{"garbage", mk(func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense") }), "AuthorizationHeaderMalformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifier().Verify(tc.r)
			if got := code(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

// A body that is not the one whose hash was signed fails as it is read:
// nothing of it may be stored as if it were whole.
func TestVerifyPayloadHashMismatch(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/bucket/key", strings.NewReader("tampered"))
	r.Header.Set("X-Amz-Content-Sha256", sha([]byte("original")))
	awsv4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret},
		r, sha([]byte("original")), "s3", region, now, func(o *awsv4.SignerOptions) { o.DisableURIPathEscaping = true })
	res, err := verifier().Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, res); code(err) != "XAmzContentSHA256Mismatch" {
		t.Fatalf("read error = %v, want XAmzContentSHA256Mismatch", err)
	}
}

func TestVerifyPresigned(t *testing.T) {
	presign := func(expires time.Duration, at time.Time) string {
		r := httptest.NewRequest(http.MethodGet, "http://bucket.s3.dev.berth.localhost/some%20key.txt", nil)
		q := r.URL.Query()
		q.Set("X-Amz-Expires", "900")
		if expires > 0 {
			q.Set("X-Amz-Expires", strings.TrimSuffix(expires.String(), "s"))
		}
		r.URL.RawQuery = q.Encode()
		u, _, err := awsv4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret},
			r, sigv4.UnsignedPayload, "s3", region, at, func(o *awsv4.SignerOptions) { o.DisableURIPathEscaping = true })
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	get := func(u string) error {
		r := httptest.NewRequest(http.MethodGet, u, nil)
		_, err := verifier().Verify(r)
		return err
	}
	if err := get(presign(0, now.Add(-time.Minute))); err != nil {
		t.Fatalf("fresh presigned URL: %v", err)
	}
	if err := get(presign(0, now.Add(-16*time.Minute))); code(err) != "AccessDenied" {
		t.Fatalf("expired presigned URL: %v", err)
	}
	u := presign(0, now)
	if err := get(strings.Replace(u, "some%20key", "other%20key", 1)); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("presigned URL for another key: %v", err)
	}
	// Our own signer's presigned URLs verify too.
	ours := sigv4.Signer{AccessKeyID: keyID, Secret: secret, Region: region, Service: "s3"}.
		Presign(http.MethodGet, mustURL(t, "http://s3.dev.berth.localhost/b/k%2Fx y"), time.Hour, now)
	if err := get(ours.String()); err != nil {
		t.Fatalf("Signer.Presign: %v", err)
	}
	week := sigv4.Signer{AccessKeyID: keyID, Secret: secret, Region: region, Service: "s3"}.
		Presign(http.MethodGet, mustURL(t, "http://s3.dev.berth.localhost/b/k"), 8*24*time.Hour, now)
	if err := get(week.String()); code(err) != "AuthorizationQueryParametersError" {
		t.Fatalf("presigned for 8 days: %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSignerRoundTrip(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://kv.dev.berth.localhost/x?b=2&a=1", strings.NewReader("v"))
	r.Header.Set("Content-Type", "text/plain")
	sigv4.Signer{AccessKeyID: keyID, Secret: secret, Region: region, Service: "s3"}.Sign(r, sha([]byte("v")), now)
	res, err := verifier().Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(t, res); err != nil || string(b) != "v" {
		t.Fatalf("%q %v", b, err)
	}
}

// minio-go's streaming signer (signed chunks, with and without a signed
// trailer) is a second client's view of aws-chunked bodies.
func TestVerifyStreamingSigned(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 70_000/16+7) // more than one 64 KiB chunk
	for _, trailer := range []bool{false, true} {
		r, _ := http.NewRequest(http.MethodPut, "http://s3.dev.berth.localhost/bucket/big", bytes.NewReader(data))
		if trailer {
			r.Trailer = http.Header{"X-Amz-Checksum-Crc32": {"AAAAAA=="}}
		}
		r = miniosigner.StreamingSignV4(r, keyID, secret, "", region, int64(len(data)), now, sha256Hasher{sha256.New()})
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		// A server sees the body and the headers the client sent.
		in := httptest.NewRequest(http.MethodPut, r.URL.String(), bytes.NewReader(raw))
		in.Header = r.Header.Clone()
		in.ContentLength = int64(len(raw))
		res, err := verifier().Verify(in)
		if err != nil {
			t.Fatalf("trailer=%v: %v", trailer, err)
		}
		got, err := readAll(t, res)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("trailer=%v: %d bytes, %v", trailer, len(got), err)
		}
		if trailer && res.Trailer.Get("x-amz-checksum-crc32") != "AAAAAA==" {
			t.Errorf("trailer = %v", res.Trailer)
		}
		// One flipped byte of data breaks the chain.
		bad := bytes.Clone(raw)
		bad[len(bad)/2] ^= 1
		in = httptest.NewRequest(http.MethodPut, r.URL.String(), bytes.NewReader(bad))
		in.Header = r.Header.Clone()
		res, err = verifier().Verify(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, res); code(err) != "SignatureDoesNotMatch" && code(err) != "IncompleteBody" {
			t.Fatalf("tampered chunk: %v", err)
		}
	}
}

// sha256Hasher is the md5simd.Hasher minio's signer hashes chunks with.
type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

var _ md5simd.Hasher = sha256Hasher{}
