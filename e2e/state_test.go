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
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
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
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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

// gauge is the value of metric name for environment env in /metrics.
func (s *server) gauge(name, env string) float64 {
	s.t.Helper()
	rc, err := s.client.Metrics(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	defer rc.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rc)
	if err != nil {
		s.t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, m := range fams[name].GetMetric() {
		if label(m, "environment") == env {
			return m.GetGauge().GetValue()
		}
	}
	return -1
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
	s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: alpha}\nspec: {quota: {objectStorage: 1Mi, objects: 20}}\n---\n"+
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
	// The status is written by the controller's next sync: polled.
	testutil.WaitForState(t, 10*time.Second, "three cold starts counted", func() (bool, string) {
		fn := s.function("alpha", "visits")
		return fn.Status.ColdStarts >= 3, fmt.Sprintf("cold starts = %d", fn.Status.ColdStarts)
	})
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
	describe := func(kind string) {
		t.Helper()
		out := s.mustBerth("", "describe", kind, "alpha")
		if !strings.Contains(out, "1 buckets, 6 objects, 90 B of 1.0 MiB (at most 20 objects)") || !strings.Contains(out, "1 entries") {
			t.Errorf("describe environment:\n%s", out)
		}
	}
	describe("environment")
	// The quota holds for people too, and what it refused is not counted.
	big := writeFile(t, t.TempDir(), "big", strings.Repeat("x", 2<<20))
	if _, errOut, code := s.berth("", "object", "put", "bodies/big", big, "-e", "alpha"); code == 0 || !strings.Contains(errOut, "quota") {
		t.Fatalf("object put over the quota: exit %d, %s", code, errOut)
	}
	describe("env")
	if got := s.gauge("berth_object_store_objects", "alpha"); got != 6 {
		t.Errorf("berth_object_store_objects{environment=alpha} = %v, want 6", got)
	}

	// From inside alpha: its own bucket through its endpoint, yes; beta's,
	// no (its S3 name does not resolve there, and the gateway refuses
	// alpha's callers on beta's endpoint).
	peek := func(env, bucket string, query ...string) (ok bool, out string) {
		path := "/peek?env=" + env + "&bucket=" + bucket
		if len(query) > 0 {
			path += "&" + query[0]
		}
		code, out, err := s.gatewayDo(http.MethodGet, "visits.alpha.berth.localhost", path, nil)
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
	// Reaching its own gateway under beta's name does not help.
	if ok, out := peek("beta", "private", "dial=own"); ok || strings.Contains(out, "only-beta") || !strings.Contains(out, "403") {
		t.Fatalf("alpha's instance on beta's endpoint through alpha's gateway: %s", out)
	}
	// Nor does its key pair from where the network lets anyone in (the
	// host): a URL the instance presigns for beta's object is refused,
	// one for alpha's is served.
	fetch := func(key, bucket, env string) (int, string) {
		code, u, err := s.gatewayDo(http.MethodGet, "visits.alpha.berth.localhost", "/presign?env="+env+"&bucket="+bucket+"&key="+key, nil)
		if err != nil || code != 200 {
			t.Fatalf("presign: %d %v %s", code, err, u)
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Host = req.URL.Host
		req.URL.Host = s.gateway
		res, err := longClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := fetch("bodies/000001", "bodies", "alpha"); code != 200 || body != "body of visit 1" {
		t.Fatalf("alpha's instance key on alpha's object: %d %s", code, body)
	}
	if code, body := fetch("only-beta.txt", "private", "beta"); code != http.StatusForbidden || !strings.Contains(body, "<Code>AccessDenied</Code>") {
		t.Fatalf("alpha's instance key on beta's object: %d %s", code, body)
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
	// minio-go, unchanged but for the dialer, virtual-host style: its
	// streaming signed chunks and its own multipart.
	_, port, _ := net.SplitHostPort(s.gateway)
	mc, err := minio.New("s3.dev.berth.localhost:"+port, &minio.Options{
		Creds: miniocreds.NewStaticV4(id, secret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupDNS,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.gateway)
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.PutObject(ctx, "media", "clips/film-copy.bin", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{PartSize: 5 << 20, ContentType: "video/mp4"}); err != nil {
		t.Fatalf("minio put: %v", err)
	}
	if _, err := mc.PutObject(ctx, "media", "clips/note.txt", strings.NewReader("unknown length"), -1, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("minio put of unknown length: %v", err)
	}
	var listed []string
	for o := range mc.ListObjects(ctx, "media", minio.ListObjectsOptions{Prefix: "clips/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		listed = append(listed, o.Key)
	}
	if strings.Join(listed, ",") != "clips/film-copy.bin,clips/note.txt" {
		t.Fatalf("minio list = %v", listed)
	}
	// What minio wrote, the AWS SDK reads.
	mo, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("media"), Key: aws.String("clips/film-copy.bin")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(mo.Body)
	mo.Body.Close()
	if !bytes.Equal(got, data) || aws.ToString(mo.ContentType) != "video/mp4" {
		t.Fatalf("minio's object read by the SDK: %d bytes, %s", len(got), aws.ToString(mo.ContentType))
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
	// The bodies cut by the kill left no file: one per object listed, and
	// the upload's part.
	if data, tmp := s.objectFiles(); data != listed+1 || tmp != 0 {
		t.Fatalf("after the restart: %d data files for %d objects and a part, %d temporary", data, listed, tmp)
	}
	t.Logf("%d uploads acknowledged before kill -9, all intact; %d objects listed", len(done), listed)
}

// sendHalf starts the request a presigned URL allows, saying its body has
// size bytes, sends half of them and returns the connection, still open.
func (s *server) sendHalf(method, presigned string, signed http.Header, size int64) net.Conn {
	s.t.Helper()
	u, err := url.Parse(presigned)
	if err != nil {
		s.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.gateway)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, u.RequestURI(), u.Host, size)
	for k, vs := range signed {
		if !strings.EqualFold(k, "host") {
			fmt.Fprintf(&head, "%s: %s\r\n", k, strings.Join(vs, ","))
		}
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		s.t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	for sent := int64(0); sent < size/2; sent += int64(len(chunk)) {
		if _, err := conn.Write(chunk); err != nil {
			s.t.Fatalf("sending the first half: %v\n%s", err, s.logs())
		}
	}
	return conn
}

// objectFiles counts the files of the object store's data (objects and
// parts) and of its temporary directory.
func (s *server) objectFiles() (data, tmp int) {
	filepath.WalkDir(filepath.Join(s.dataDir, "objects", "data"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data++
		}
		return nil
	})
	ents, _ := os.ReadDir(filepath.Join(s.dataDir, "objects", "tmp"))
	return data, len(ents)
}

// TestStateUploadStoppedHalfWay: a 1 GiB PutObject over an object, and a
// 64 MiB part of a multipart upload, whose clients go away half way:
// neither is ever visible, the object keeps its old bytes, nothing of
// them is counted, and their files are removed; the upload, aborted,
// leaves nothing either.
func TestStateUploadStoppedHalfWay(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	id, secret := s.accessKey()
	c := s.s3Client("default", id, secret)
	bucket := aws.String("big")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	old := []byte("the old film\n")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("film.bin"), Body: bytes.NewReader(old)}); err != nil {
		t.Fatal(err)
	}
	oldObject := func(when string) {
		t.Helper()
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String("film.bin")})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(b, old) {
			t.Fatalf("%s: film.bin is %d bytes, want the old %d", when, len(b), len(old))
		}
		list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket})
		if err != nil || len(list.Contents) != 1 || aws.ToInt64(list.Contents[0].Size) != int64(len(old)) {
			t.Fatalf("%s: listed %+v %v", when, list, err)
		}
	}
	usage := func() float64 { return s.gauge("berth_object_store_bytes", "default") }

	// The 1 GiB PutObject (a presigned URL: the body is not signed).
	pp, err := s3.NewPresignClient(c).PresignPutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("film.bin")})
	if err != nil {
		t.Fatal(err)
	}
	conn := s.sendHalf(pp.Method, pp.URL, pp.SignedHeader, 1<<30)
	testutil.WaitForState(t, 60*time.Second, "the upload's first half on disk", func() (bool, string) {
		ents, _ := os.ReadDir(filepath.Join(s.dataDir, "objects", "tmp"))
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Size() >= 256<<20 {
				return true, ""
			}
		}
		return false, fmt.Sprint(ents)
	})
	oldObject("during the upload")
	conn.Close()
	testutil.WaitForState(t, 60*time.Second, "the broken upload's file removed", func() (bool, string) {
		data, tmp := s.objectFiles()
		return data == 1 && tmp == 0, fmt.Sprintf("%d data files, %d temporary", data, tmp)
	})
	oldObject("after the upload broke off")
	if u := usage(); u != float64(len(old)) {
		t.Fatalf("berth_object_store_bytes = %v, want %d", u, len(old))
	}

	// A multipart upload: part 1 in, part 2 broken off half way.
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String("film.bin")})
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 5<<20)
	rand.Read(part)
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String("film.bin"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part)}); err != nil {
		t.Fatal(err)
	}
	pu, err := s3.NewPresignClient(c).PresignUploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String("film.bin"),
		UploadId: up.UploadId, PartNumber: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	s.sendHalf(pu.Method, pu.URL, pu.SignedHeader, 64<<20).Close()
	testutil.WaitForState(t, 60*time.Second, "the broken part's file removed", func() (bool, string) {
		data, tmp := s.objectFiles()
		return data == 2 && tmp == 0, fmt.Sprintf("%d data files, %d temporary", data, tmp)
	})
	parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: bucket, Key: aws.String("film.bin"), UploadId: up.UploadId})
	if err != nil || len(parts.Parts) != 1 || aws.ToInt64(parts.Parts[0].Size) != int64(len(part)) {
		t.Fatalf("list parts: %+v %v", parts, err)
	}
	if u := usage(); u != float64(len(old)+len(part)) {
		t.Fatalf("berth_object_store_bytes with a part = %v, want %d", u, len(old)+len(part))
	}
	oldObject("with an upload in progress")
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: bucket, Key: aws.String("film.bin"), UploadId: up.UploadId}); err != nil {
		t.Fatal(err)
	}
	uploads, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket})
	if err != nil || len(uploads.Uploads) != 0 {
		t.Fatalf("uploads after the abort: %+v %v", uploads, err)
	}
	if data, tmp := s.objectFiles(); data != 1 || tmp != 0 {
		t.Fatalf("after the abort: %d data files, %d temporary", data, tmp)
	}
	if u := usage(); u != float64(len(old)) {
		t.Fatalf("berth_object_store_bytes after the abort = %v, want %d", u, len(old))
	}
	oldObject("after the abort")
}

// TestStateCLI: what a person does with berth bucket, object, kv and
// accesskey, with the exit codes scripts rely on.
func TestStateCLI(t *testing.T) {
	s := startServer(t)
	s.mustBerth("", "env", "create", "dev")
	dir := t.TempDir()
	exit := func(want int, wantErr string, args ...string) {
		t.Helper()
		out, errOut, code := s.berth("", args...)
		if code != want || !strings.Contains(errOut, wantErr) {
			t.Fatalf("berth %s: exit %d (want %d)\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
		}
	}

	// Buckets and objects.
	exit(3, "", "bucket", "create", "Bad_Name", "-e", "dev")
	s.mustBerth("", "bucket", "create", "photos", "-e", "dev")
	exit(6, "", "bucket", "create", "photos", "-e", "dev")
	if out := s.mustBerth("", "bucket", "ls", "-e", "dev"); !strings.Contains(out, "photos") {
		t.Fatalf("bucket ls:\n%s", out)
	}
	s.mustBerth("", "object", "put", "photos/2026/cat.txt", writeFile(t, dir, "cat.txt", "a cat\n"), "-e", "dev")
	s.mustBerth("a dog\n", "object", "put", "photos/2026/dog.txt", "-", "-e", "dev")
	s.mustBerth("top\n", "object", "put", "photos/top.txt", "-", "-e", "dev")
	if out := s.mustBerth("", "object", "ls", "photos", "-e", "dev"); !strings.Contains(out, "2026/") || !strings.Contains(out, "top.txt") || strings.Contains(out, "cat.txt") {
		t.Fatalf("object ls (one level):\n%s", out)
	}
	if out := s.mustBerth("", "object", "ls", "photos/2026/", "-r", "-e", "dev"); !strings.Contains(out, "cat.txt") || !strings.Contains(out, "dog.txt") || strings.Contains(out, "top.txt") {
		t.Fatalf("object ls of a prefix:\n%s", out)
	}
	copyPath := filepath.Join(dir, "copy.txt")
	s.mustBerth("", "object", "get", "photos/2026/cat.txt", copyPath, "-e", "dev")
	if b, err := os.ReadFile(copyPath); err != nil || string(b) != "a cat\n" {
		t.Fatalf("object get to a file: %q %v", b, err)
	}
	exit(5, "", "object", "get", "photos/none.txt", "-e", "dev")
	s.mustBerth("", "object", "rm", "photos/2026/dog.txt", "-e", "dev")
	exit(5, "", "object", "get", "photos/2026/dog.txt", "-e", "dev")
	exit(6, "", "bucket", "rm", "photos", "-e", "dev")
	// Other environments do not see dev's.
	s.mustBerth("", "env", "create", "prod")
	exit(5, "", "object", "get", "photos/top.txt", "-e", "prod")

	// Keys: compare-and-swap, create-only, prefix listing, watch, TTL.
	rev := func(out string) string {
		t.Helper()
		_, r, ok := strings.Cut(strings.TrimSpace(out), "revision ")
		if !ok {
			t.Fatalf("no revision in %q", out)
		}
		return r
	}
	watchOut := newLines()
	watch := exec.Command(berthBin, "kv", "watch", "config/", "-e", "dev")
	watch.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(s.dataDir, "client.json"), "BERTH_ADDR=", "BERTH_TOKEN=")
	watch.Stdout = watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	// The watch is in place once it shows a change.
	testutil.WaitForState(t, 30*time.Second, "kv watch to show a change", func() (bool, string) {
		s.mustBerth("", "kv", "put", "config/hello", "hi", "-e", "dev")
		got := watchOut.String()
		return strings.Contains(got, "put config/hello"), got
	})
	r1 := rev(s.mustBerth("", "kv", "put", "config/mode", "fast", "-e", "dev", "--create"))
	exit(6, "", "kv", "put", "config/mode", "again", "-e", "dev", "--create")
	r2 := rev(s.mustBerth("", "kv", "put", "config/mode", "slow", "-e", "dev", "--if-revision", r1))
	exit(6, "", "kv", "put", "config/mode", "stale", "-e", "dev", "--if-revision", r1)
	if got := strings.TrimSpace(s.mustBerth("", "kv", "get", "config/mode", "-e", "dev")); got != "slow" {
		t.Fatalf("kv get = %q", got)
	}
	s.mustBerth("", "kv", "put", "config/size", "10", "-e", "dev")
	s.mustBerth("", "kv", "put", "other", "x", "-e", "dev")
	s.mustBerth("", "kv", "rm", "config/hello", "-e", "dev")
	if out := s.mustBerth("", "kv", "ls", "config/", "--values", "-e", "dev"); !strings.Contains(out, "config/mode") || !strings.Contains(out, "slow") ||
		!strings.Contains(out, "config/size") || strings.Contains(out, "other") {
		t.Fatalf("kv ls config/:\n%s", out)
	}
	exit(6, "", "kv", "rm", "config/size", "-e", "dev", "--if-revision", r1)
	s.mustBerth("", "kv", "rm", "config/size", "-e", "dev")
	exit(5, "", "kv", "get", "config/size", "-e", "dev")
	exit(5, "", "kv", "get", "config/mode", "-e", "prod")
	// The watch saw dev's changes under config/ in order, and nothing else.
	watchOut.waitFor(t, "delete config/size")
	want := []string{"put config/mode " + r1 + " fast", "put config/mode " + r2 + " slow", "put config/size", "delete config/size"}
	got := watchOut.String()
	at := 0
	for _, w := range want {
		i := strings.Index(got[at:], w)
		if i < 0 {
			t.Fatalf("kv watch misses %q after byte %d:\n%s", w, at, got)
		}
		at += i + len(w)
	}
	if strings.Contains(got, "other") {
		t.Fatalf("kv watch config/ shows other keys:\n%s", got)
	}
	s.mustBerth("", "kv", "put", "session/abc", "token", "--ttl", "1s", "-e", "dev")
	testutil.WaitForState(t, 30*time.Second, "the key to expire", func() (bool, string) {
		_, errOut, code := s.berth("", "kv", "get", "session/abc", "-e", "dev")
		return code == 5, errOut
	})

	// A viewer reads and does not write.
	viewer := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "dev", "--role", "viewer", "--name", "look"))
	exit(0, "", "kv", "get", "config/mode", "-e", "dev", "--token", viewer)
	exit(0, "", "object", "ls", "photos", "-e", "dev", "--token", viewer)
	exit(4, "", "kv", "put", "config/mode", "mine", "-e", "dev", "--token", viewer)
	exit(4, "", "object", "put", "photos/x.txt", copyPath, "-e", "dev", "--token", viewer)
	exit(4, "", "kv", "get", "config/mode", "-e", "prod", "--token", viewer)

	// Access keys: listed without their secret, revoked at once.
	id, secret := s.accessKey()
	c := s.s3Client("dev", id, secret)
	if _, err := c.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String("photos")}); err != nil {
		t.Fatalf("a new key: %v", err)
	}
	if out := s.mustBerth("", "accesskey", "ls"); !strings.Contains(out, id) || strings.Contains(out, secret) {
		t.Fatalf("accesskey ls:\n%s", out)
	}
	s.mustBerth("", "accesskey", "rm", id)
	if _, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("photos")}); s3Code(err) != "InvalidAccessKeyId" {
		t.Fatalf("a revoked key: %v", err)
	}

	s.mustBerth("", "bucket", "rm", "photos", "--force", "-e", "dev")
	if out := s.mustBerth("", "bucket", "ls", "-e", "dev"); strings.Contains(out, "photos") {
		t.Fatalf("bucket ls after rm:\n%s", out)
	}
}

// lines collects a process's output for a test to wait on.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLines() *lines { return &lines{} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lines) waitFor(t *testing.T, want string) {
	t.Helper()
	testutil.WaitForState(t, 30*time.Second, "output "+want, func() (bool, string) {
		got := l.String()
		return strings.Contains(got, want), got
	})
}
