package s3api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"

	"berth.dev/berth/internal/objects"
	"berth.dev/berth/internal/s3api"
	"berth.dev/berth/internal/sigv4"
)

const domain = "berth.localhost"

// key is a test access key: its environment and whether it may write.
type key struct {
	env   string
	write bool
}

func (k key) CanAccess(env string, write bool) error {
	if env != k.env {
		return fmt.Errorf("the key is for environment %s, not %s", k.env, env)
	}
	if write && !k.write {
		return errors.New("the key may only read")
	}
	return nil
}

var keys = map[string]struct {
	secret string
	who    key
}{
	"DEVKEY":  {"dev-secret", key{"dev", true}},
	"VIEWKEY": {"view-secret", key{"dev", false}},
	"PRODKEY": {"prod-secret", key{"prod", true}},
}

// harness is the API behind a test server that routes by host as the
// gateway does: s3.ENV.DOMAIN and BUCKET.s3.ENV.DOMAIN.
type harness struct {
	store *objects.Store
	srv   *httptest.Server
	addr  string
}

func newHarness(t *testing.T, limits objects.Limits) *harness {
	t.Helper()
	st, err := objects.Open(objects.Config{Dir: t.TempDir(), Limits: func(string) objects.Limits { return limits }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	api := s3api.New(s3api.Config{Store: st, Keys: func(_ context.Context, id string) (string, s3api.Identity, error) {
		k, ok := keys[id]
		if !ok {
			return "", nil, sigv4.ErrUnknownKey
		}
		return k.secret, k.who, nil
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		rest, ok := strings.CutSuffix(host, "."+domain)
		if !ok {
			http.Error(w, "not an s3 host", http.StatusNotFound)
			return
		}
		labels := strings.Split(rest, ".")
		n := len(labels)
		if n < 2 || labels[n-2] != "s3" {
			http.Error(w, "not an s3 host", http.StatusNotFound)
			return
		}
		api.ServePlatform(w, r, labels[n-1], strings.Join(labels[:n-2], "."))
	}))
	t.Cleanup(srv.Close)
	return &harness{store: st, srv: srv, addr: srv.Listener.Addr().String()}
}

// httpClient dials the test server whatever host a URL names, as the
// environment's DNS answers every name with its gateway.
func (h *harness) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
	}}
}

func (h *harness) endpoint(env string) string {
	_, port, _ := net.SplitHostPort(h.addr)
	return "http://s3." + env + "." + domain + ":" + port
}

// sdk is an AWS SDK v2 S3 client as a function would make it: default
// settings (virtual-host-style addresses, default checksums) but for the
// endpoint and the key.
func (h *harness) sdk(env, id string, pathStyle bool) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(h.endpoint(env)),
		Credentials:  credentials.NewStaticCredentialsProvider(id, keys[id].secret, ""),
		HTTPClient:   h.httpClient(),
		UsePathStyle: pathStyle,
	})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// signedAgo presigns as if the clock were ago behind.
type signedAgo struct {
	*v4.Signer
	ago time.Duration
}

func (s signedAgo) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string,
	at time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return s.Signer.PresignHTTP(ctx, creds, r, payloadHash, service, region, at.Add(-s.ago), optFns...)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSDKRoundTrip(t *testing.T) {
	h := newHarness(t, objects.Limits{})
	ctx := context.Background()
	for _, pathStyle := range []bool{false, true} {
		t.Run(fmt.Sprintf("pathStyle=%v", pathStyle), func(t *testing.T) {
			c := h.sdk("dev", "DEVKEY", pathStyle)
			bucket := fmt.Sprintf("photos-%v", pathStyle)
			if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); apiCode(err) != "BucketAlreadyOwnedByYou" {
				t.Fatalf("second create: %v", err)
			}
			body := []byte("hello, berth")
			put, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt"),
				Body: bytes.NewReader(body), ContentType: aws.String("text/plain"), Metadata: map[string]string{"colour": "blue"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt")})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(got.Body)
			got.Body.Close()
			if !bytes.Equal(b, body) || aws.ToString(got.ContentType) != "text/plain" || got.Metadata["colour"] != "blue" || aws.ToString(got.ETag) != aws.ToString(put.ETag) {
				t.Fatalf("got %q type %q meta %v etag %s (put %s)", b, aws.ToString(got.ContentType), got.Metadata, aws.ToString(got.ETag), aws.ToString(put.ETag))
			}
			// A range.
			rg, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt"), Range: aws.String("bytes=7-11")})
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(rg.Body)
			if string(b) != "berth" || aws.ToString(rg.ContentRange) != "bytes 7-11/12" {
				t.Fatalf("range: %q %s", b, aws.ToString(rg.ContentRange))
			}
			// Conditional reads and writes.
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt"), IfMatch: aws.String(`"nope"`)}); apiCode(err) != "PreconditionFailed" {
				t.Fatalf("If-Match other etag: %v", err)
			}
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt"), Body: strings.NewReader("x"), IfNoneMatch: aws.String("*")}); apiCode(err) != "PreconditionFailed" {
				t.Fatalf("If-None-Match * on an existing key: %v", err)
			}
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("dir/a b+c.txt"), Body: strings.NewReader("v2"), IfMatch: put.ETag}); err != nil {
				t.Fatalf("If-Match current etag: %v", err)
			}
			// Head, copy, list with delimiter and pagination.
			if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &bucket, Key: aws.String("copy.txt"), CopySource: aws.String(bucket + "/dir/a b+c.txt")}); err != nil {
				t.Fatal(err)
			}
			hd, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("copy.txt")})
			if err != nil || aws.ToInt64(hd.ContentLength) != 2 {
				t.Fatalf("head of copy: %v %v", hd, err)
			}
			for i := range 5 {
				c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprintf("logs/%d", i)), Body: strings.NewReader("l")})
			}
			var keysSeen []string
			p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, MaxKeys: aws.Int32(2)})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range page.Contents {
					keysSeen = append(keysSeen, aws.ToString(o.Key))
				}
			}
			if want := "copy.txt dir/a b+c.txt logs/0 logs/1 logs/2 logs/3 logs/4"; strings.Join(keysSeen, " ") != want {
				t.Fatalf("paged listing = %q, want %q", strings.Join(keysSeen, " "), want)
			}
			top, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Delimiter: aws.String("/")})
			if err != nil {
				t.Fatal(err)
			}
			var prefixes []string
			for _, cp := range top.CommonPrefixes {
				prefixes = append(prefixes, aws.ToString(cp.Prefix))
			}
			if strings.Join(prefixes, " ") != "dir/ logs/" || len(top.Contents) != 1 {
				t.Fatalf("delimited listing: prefixes %v, %d objects", prefixes, len(top.Contents))
			}
			// Delete many, then the bucket.
			del := &types.Delete{}
			for _, k := range append(keysSeen, "never-there") {
				del.Objects = append(del.Objects, types.ObjectIdentifier{Key: aws.String(k)})
			}
			if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &bucket, Delete: del}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if u := h.store.Usage("dev"); u != (objects.Usage{}) {
		t.Errorf("usage after deleting everything = %+v", u)
	}
}

func TestSDKMultipartAndPresign(t *testing.T) {
	h := newHarness(t, objects.Limits{})
	ctx := context.Background()
	c := h.sdk("dev", "DEVKEY", false)
	bucket := "big"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	part1, part2 := random(5<<20), random(1<<20+17)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("video.bin"), ContentType: aws.String("video/mp4")})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, data := range [][]byte{part1, part2} {
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String("video.bin"), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(data)})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32})
	}
	// Until completed, nothing is visible.
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("video.bin")}); apiCode(err) != "NotFound" {
		t.Fatalf("head before complete: %v", err)
	}
	parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: aws.String("video.bin"), UploadId: up.UploadId})
	if err != nil || len(parts.Parts) != 2 {
		t.Fatalf("list parts: %v %v", parts, err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: aws.String("video.bin"),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("video.bin")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	if !bytes.Equal(b, append(bytes.Clone(part1), part2...)) || !strings.HasSuffix(aws.ToString(got.ETag), `-2"`) {
		t.Fatalf("assembled object: %d bytes, etag %s", len(b), aws.ToString(got.ETag))
	}
	// A range across the parts' boundary.
	rg, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("video.bin"), Range: aws.String(fmt.Sprintf("bytes=%d-%d", 5<<20-3, 5<<20+2))})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(rg.Body)
	if !bytes.Equal(b, append(bytes.Clone(part1[len(part1)-3:]), part2[:3]...)) {
		t.Fatalf("range across parts = %x", b)
	}
	// An aborted upload leaves nothing.
	up2, _ := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("gone")})
	c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String("gone"), UploadId: up2.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(part2)})
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: aws.String("gone"), UploadId: up2.UploadId}); err != nil {
		t.Fatal(err)
	}
	if u := h.store.Usage("dev"); u.Bytes != int64(len(part1)+len(part2)) || u.Objects != 1 {
		t.Fatalf("usage = %+v", u)
	}

	// Presigned GET and PUT work with a plain HTTP client.
	ps := s3.NewPresignClient(c)
	pg, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("video.bin")}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.httpClient().Get(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || n != int64(len(part1)+len(part2)) {
		t.Fatalf("presigned GET: %s, %d bytes", res.Status, n)
	}
	pp, err := ps.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("uploaded.txt")}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, pp.URL, strings.NewReader("from a browser"))
	res, err = h.httpClient().Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("presigned PUT: %v %v", res, err)
	}
	// Tampered: another key with the same signature.
	res, _ = h.httpClient().Get(strings.Replace(pg.URL, "video.bin", "uploaded.txt", 1))
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("presigned URL used for another key: %s", res.Status)
	}
	// Expired: signed two hours ago for one hour.
	old := s3.NewPresignClient(c, func(o *s3.PresignOptions) { o.Presigner = signedAgo{v4.NewSigner(), 2 * time.Hour} })
	pe, err := old.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("video.bin")}, s3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	res, err = h.httpClient().Get(pe.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>AccessDenied</Code>") || !strings.Contains(string(body), "expired") {
		t.Fatalf("expired presigned URL: %s %s", res.Status, body)
	}
}

func TestMinioClient(t *testing.T) {
	h := newHarness(t, objects.Limits{})
	ctx := context.Background()
	_, port, _ := net.SplitHostPort(h.addr)
	mc, err := minio.New("s3.dev."+domain+":"+port, &minio.Options{
		Creds: miniocreds.NewStaticV4("DEVKEY", keys["DEVKEY"].secret, ""), Secure: false,
		Transport: h.httpClient().Transport, BucketLookup: minio.BucketLookupDNS, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.MakeBucket(ctx, "minio-bucket", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	data := random(6<<20 + 5)
	// minio-go streams with signed chunks over plain HTTP, and splits this
	// into a multipart upload with a part size of 5 MiB.
	if _, err := mc.PutObject(ctx, "minio-bucket", "k/obj", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{PartSize: 5 << 20, ContentType: "application/x-test"}); err != nil {
		t.Fatal(err)
	}
	small := []byte("small")
	if _, err := mc.PutObject(ctx, "minio-bucket", "k/small", bytes.NewReader(small), -1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := mc.GetObject(ctx, "minio-bucket", "k/obj", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("minio get: %d bytes, %v", len(got), err)
	}
	var listed []string
	for o := range mc.ListObjects(ctx, "minio-bucket", minio.ListObjectsOptions{Prefix: "k/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		listed = append(listed, o.Key)
	}
	if strings.Join(listed, ",") != "k/obj,k/small" {
		t.Fatalf("minio list = %v", listed)
	}
	if err := mc.RemoveObject(ctx, "minio-bucket", "k/small", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Bad input gets the codes the SDKs expect, and changes nothing.
func TestSDKRefusals(t *testing.T) {
	h := newHarness(t, objects.Limits{Bytes: 1 << 20, Objects: 3})
	ctx := context.Background()
	c := h.sdk("dev", "DEVKEY", true)
	bucket := "bkt1"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("Not_Valid")}); apiCode(err) != "InvalidBucketName" {
		t.Fatalf("invalid bucket name: %v", err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(strings.Repeat("k", 1025)), Body: strings.NewReader("x")}); apiCode(err) != "KeyTooLongError" {
		t.Fatalf("long key: %v", err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("missing")}); apiCode(err) != "NoSuchKey" {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("k")}); apiCode(err) != "NoSuchBucket" {
		t.Fatalf("missing bucket: %v", err)
	}
	// A checksum that does not match the body.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("sum"), Body: strings.NewReader("data"),
		ChecksumCRC32: aws.String("AAAAAA==")}); apiCode(err) != "BadDigest" {
		t.Fatalf("wrong checksum: %v", err)
	}
	// Wrong secret.
	bad := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(h.endpoint("dev")), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("DEVKEY", "wrong", ""), HTTPClient: h.httpClient()})
	if _, err := bad.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket}); apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	// A viewer reads, but does not write.
	v := h.sdk("dev", "VIEWKEY", true)
	if _, err := v.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket}); err != nil {
		t.Fatalf("viewer list: %v", err)
	}
	if _, err := v.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("x"), Body: strings.NewReader("x")}); apiCode(err) != "AccessDenied" {
		t.Fatalf("viewer put: %v", err)
	}
	// Another environment's key, on this environment's endpoint.
	p := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(h.endpoint("dev")), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("PRODKEY", keys["PRODKEY"].secret, ""), HTTPClient: h.httpClient()})
	if _, err := p.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket}); apiCode(err) != "AccessDenied" {
		t.Fatalf("prod key on dev: %v", err)
	}
	// Quotas: bytes, then objects.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("huge"), Body: bytes.NewReader(random(1<<20 + 1))}); apiCode(err) != "QuotaExceeded" {
		t.Fatalf("over the byte quota: %v", err)
	}
	for i := range 3 {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprint(i)), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("4th"), Body: strings.NewReader("x")}); apiCode(err) != "QuotaExceeded" {
		t.Fatalf("over the object quota: %v", err)
	}
	// Overwriting an object is no new object.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("0"), Body: strings.NewReader("y")}); err != nil {
		t.Fatalf("overwrite at the object quota: %v", err)
	}
	if u := h.store.Usage("dev"); u.Objects != 3 || u.Bytes != 3 {
		t.Fatalf("usage = %+v", u)
	}
	// Not empty.
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); apiCode(err) != "BucketNotEmpty" {
		t.Fatalf("delete non-empty bucket: %v", err)
	}
	// Multipart: parts out of order, too small.
	up, _ := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("mp")})
	var parts []types.CompletedPart
	for i := 1; i <= 2; i++ {
		r, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String("mp"), UploadId: up.UploadId, PartNumber: aws.Int32(int32(i)), Body: strings.NewReader("small")})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(int32(i)), ETag: r.ETag})
	}
	_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: aws.String("mp"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{parts[1], parts[0]}}})
	if apiCode(err) != "InvalidPartOrder" {
		t.Fatalf("parts out of order: %v", err)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: aws.String("mp"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if apiCode(err) != "EntityTooSmall" {
		t.Fatalf("small parts: %v", err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: aws.String("mp"), UploadId: aws.String("nope"), PartNumber: aws.Int32(1), Body: strings.NewReader("x")}); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("unknown upload: %v", err)
	}
}
