package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/testutil"
)

const stateFnImage = "berth.test/statefn:v1"

// buildStateFn builds the image of internal/testutil/statefn: a function
// that uses the AWS SDK with its default configuration and the KV store.
func buildStateFn(t *testing.T) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	path := filepath.Join(t.TempDir(), "statefn.tar")
	err := build.GoToFile(context.Background(), build.GoOptions{
		Dir: filepath.Join(filepath.Dir(self), "..", "internal", "testutil", "statefn"),
		Ref: stateFnImage, Port: "8080", Binary: "/statefn",
	}, path)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// gatewayDo sends a request to the gateway with Host host.
func (s *server) gatewayDo(method, host, path string, body []byte) (int, string, error) {
	req, _ := http.NewRequest(method, "http://"+s.gateway+path, bytes.NewReader(body))
	req.Host = host
	resp, err := longClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// s3Client is the AWS SDK's S3 client of a user on the host: default
// settings (virtual-host-style addresses), the gateway's S3 endpoint of
// env, a key pair from `berth accesskey create`. It dials the gateway
// whatever the host (as *.localhost resolves to loopback), reading its
// address at each dial: it changes when the server restarts.
func (s *server) s3Client(env, id, secret string) *s3.Client {
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, s.gateway)
	}
	_, port, _ := net.SplitHostPort(s.gateway)
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://s3." + env + ".berth.localhost:" + port),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 2 * time.Minute},
	})
}

func (s *server) accessKey() (string, string) {
	s.t.Helper()
	var ak v1.AccessKey
	if err := json.Unmarshal([]byte(s.mustBerth("", "accesskey", "create", "-o", "json")), &ak); err != nil {
		s.t.Fatal(err)
	}
	return ak.Metadata.Name, ak.Secret
}

func s3Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

// TestStateFunction: a function that counts its visits in its
// environment's KV store and stores each request body as an object keeps
// its count across two scales from zero; the objects are there for the
// user; an instance of one environment is refused on another's bucket.
func TestStateFunction(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "image", "import", buildStateFn(t))
	s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: alpha}\n---\n"+
		"apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: beta}\n", "apply", "-f", "-")
	s.mustBerth("", "bucket", "create", "bodies", "-e", "alpha")
	s.mustBerth("", "bucket", "create", "private", "-e", "beta")
	s.mustBerth("beta's data\n", "object", "put", "private/only-beta.txt", "-", "-e", "beta")
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: visits, environment: alpha}
spec:
  image: %s
  scale: {max: 2, idleTimeout: 3s}
  timeout: 30s
`, stateFnImage), "apply", "-f", "-")

	visit := func(body string) int {
		t.Helper()
		code, out, err := s.gatewayDo(http.MethodPost, "visits.alpha.berth.localhost", "/visit", []byte(body))
		if err != nil || code != 200 {
			t.Fatalf("visit: %d %v %s\n%s", code, err, out, s.logs())
		}
		var res struct{ Visits int }
		json.Unmarshal([]byte(out), &res)
		return res.Visits
	}
	atZero := func(what string) {
		testutil.WaitForState(t, 90*time.Second, what, func() (bool, string) {
			fn := s.function("alpha", "visits")
			return fn.Status.ReadyInstances == 0 && fn.Status.Desired == 0 && started(fn) == 0, fnState(fn)
		})
	}
	n := 0
	for round := 1; round <= 3; round++ {
		if round > 1 {
			atZero(fmt.Sprintf("the function back at zero (round %d)", round))
		}
		for range 2 {
			n++
			if got := visit(fmt.Sprintf("body of visit %d", n)); got != n {
				t.Fatalf("visit %d counted %d (round %d)", n, got, round)
			}
		}
	}
	if fn := s.function("alpha", "visits"); fn.Status.ColdStarts < 3 {
		t.Errorf("cold starts = %d, want at least 3", fn.Status.ColdStarts)
	}
	// The user sees the same state.
	if got := strings.TrimSpace(s.mustBerth("", "kv", "get", "visits", "-e", "alpha")); got != fmt.Sprint(n) {
		t.Fatalf("berth kv get visits = %q, want %d", got, n)
	}
	ls := s.mustBerth("", "object", "ls", "bodies", "-r", "-e", "alpha")
	for i := 1; i <= n; i++ {
		if !strings.Contains(ls, fmt.Sprintf("bodies/%06d", i)) {
			t.Fatalf("object ls misses visit %d:\n%s", i, ls)
		}
	}
	if got := s.mustBerth("", "object", "get", fmt.Sprintf("bodies/bodies/%06d", n), "-e", "alpha"); got != fmt.Sprintf("body of visit %d", n) {
		t.Fatalf("object get = %q", got)
	}
	if out := s.mustBerth("", "describe", "environment", "alpha"); !strings.Contains(out, "1 buckets, 6 objects") {
		t.Errorf("describe environment:\n%s", out)
	}

	// From inside alpha: its own bucket through its endpoint, yes; beta's,
	// no (its S3 name does not resolve there, and the gateway refuses
	// alpha's callers on beta's endpoint).
	peek := func(env, bucket string) (ok bool, out string) {
		code, out, err := s.gatewayDo(http.MethodGet, "visits.alpha.berth.localhost", "/peek?env="+env+"&bucket="+bucket, nil)
		if err != nil || code != 200 {
			t.Fatalf("peek: %d %v %s", code, err, out)
		}
		var res struct{ OK bool }
		json.Unmarshal([]byte(out), &res)
		return res.OK, out
	}
	if ok, out := peek("alpha", "bodies"); !ok || !strings.Contains(out, "bodies/000001") {
		t.Fatalf("alpha's instance on alpha's bucket: %s", out)
	}
	if ok, out := peek("beta", "private"); ok || strings.Contains(out, "only-beta") {
		t.Fatalf("alpha's instance read beta's bucket: %s", out)
	}
	// The admin's key reaches beta's bucket from the host (the control
	// that the bucket is there to be refused).
	id, secret := s.accessKey()
	admin := s.s3Client("beta", id, secret)
	if _, err := admin.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("private")}); err != nil {
		t.Fatalf("the admin's key on beta: %v", err)
	}
}

// TestStateSDKRoundTrip: the AWS SDK on the host, through the gateway,
// with a key issued to a token: multipart, presigned URLs, and the key's
// environment and role applied.
func TestStateSDKRoundTrip(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: dev}\n", "apply", "-f", "-")
	id, secret := s.accessKey()
	c := s.s3Client("dev", id, secret)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("media")}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 6<<20+123)
	rand.Read(data)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("media"), Key: aws.String("film.bin")})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i, chunk := range [][]byte{data[:5<<20], data[5<<20:]} {
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("media"), Key: aws.String("film.bin"), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(chunk)})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: p.ETag})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("media"), Key: aws.String("film.bin"),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
	pg, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("media"), Key: aws.String("film.bin")})
	if err != nil {
		t.Fatal(err)
	}
	// A plain client (curl) on the presigned URL, to the gateway.
	req, _ := http.NewRequest(http.MethodGet, pg.URL, nil)
	req.URL.Host = s.gateway
	req.Host = strings.TrimPrefix(strings.Split(pg.URL, "/")[2], "")
	res, err := longClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("presigned GET: %s, %d bytes", res.Status, len(got))
	}
	// A viewer's key reads and does not write; a revoked token's key
	// stops working.
	viewer := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "dev", "--role", "viewer", "--name", "look"))
	out, _, code := s.run("", "", "accesskey", "create", "-o", "json", "--token", viewer)
	if code != 0 {
		t.Fatalf("accesskey create as a viewer: %s", out)
	}
	var vk v1.AccessKey
	json.Unmarshal([]byte(out), &vk)
	vc := s.s3Client("dev", vk.Metadata.Name, vk.Secret)
	if _, err := vc.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("media"), Key: aws.String("film.bin")}); err != nil {
		t.Fatalf("viewer head: %v", err)
	}
	if _, err := vc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("media"), Key: aws.String("x"), Body: strings.NewReader("x")}); s3Code(err) != "AccessDenied" {
		t.Fatalf("viewer put: %v", err)
	}
	s.mustBerth("", "token", "revoke", "look")
	if _, err := vc.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("media"), Key: aws.String("film.bin")}); err == nil {
		t.Fatal("a revoked token's key still reads")
	}
}

// TestStateKill9DuringUploads: uploads run while the server is killed;
// every upload that was acknowledged is there, whole, after the restart,
// and an upload cut in the middle left no object.
func TestStateKill9DuringUploads(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	id, secret := s.accessKey()
	c := s.s3Client("default", id, secret)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("crash")}); err != nil {
		t.Fatal(err)
	}
	// An upload in progress at the kill: a part in, never completed.
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("crash"), Key: aws.String("half")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("crash"), Key: aws.String("half"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 5<<20))}); err != nil {
		t.Fatal(err)
	}

	type acked struct {
		key string
		sum [32]byte
	}
	var (
		mu    sync.Mutex
		done  []acked
		count atomic.Int64
		wg    sync.WaitGroup
	)
	bodies := sync.Map{} // every key attempted → its sum
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := make([]byte, 1<<10+(i*37%512)<<10)
				rand.Read(body)
				key := fmt.Sprintf("obj-%d-%d", g, i)
				sum := sha256.Sum256(body)
				bodies.Store(key, sum)
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := c.PutObject(cctx, &s3.PutObjectInput{Bucket: aws.String("crash"), Key: &key, Body: bytes.NewReader(body)},
					func(o *s3.Options) { o.RetryMaxAttempts = 1 })
				cancel()
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				done = append(done, acked{key, sum})
				mu.Unlock()
				count.Add(1)
			}
		}()
	}
	testutil.WaitFor(t, 60*time.Second, "40 acknowledged uploads", func() bool { return count.Load() >= 40 })
	s.kill9()
	wg.Wait()
	s.start()

	mu.Lock()
	defer mu.Unlock()
	for _, a := range done {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("crash"), Key: aws.String(a.key)})
		if err != nil {
			t.Fatalf("acknowledged %s lost: %v", a.key, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if sha256.Sum256(b) != a.sum {
			t.Fatalf("acknowledged %s changed: %d bytes", a.key, len(b))
		}
	}
	// Whatever else is listed is whole too: no torn object.
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("crash")})
	listed := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			listed++
			want, ok := bodies.Load(aws.ToString(o.Key))
			if !ok {
				t.Fatalf("unknown object %s", aws.ToString(o.Key))
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("crash"), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if sha256.Sum256(b) != want.([32]byte) {
				t.Fatalf("object %s is torn: %d bytes", aws.ToString(o.Key), len(b))
			}
		}
	}
	if listed < len(done) {
		t.Fatalf("%d objects listed, %d acknowledged", listed, len(done))
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("crash"), Key: aws.String("half")}); s3Code(err) != "NotFound" {
		t.Fatalf("an incomplete multipart upload is visible: %v", err)
	}
	t.Logf("%d uploads acknowledged before kill -9, all intact; %d objects listed", len(done), listed)
}
