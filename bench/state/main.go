// Command state measures an environment's object and key-value stores as
// a function uses them: the AWS SDK's PutObject and GetObject of 4 KiB and
// 4 MiB objects through Berth's gateway (in this process, on loopback, the
// data dir on this machine's disk with every write fsynced), beside nginx
// serving the same bytes as static files (the yardstick for reads), and the
// KV store's get and put over HTTP.
//
//	go run ./bench/state [-duration 5s] [-c 8]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/kv"
	"berth.dev/berth/internal/objects"
	"berth.dev/berth/internal/queue"
	"berth.dev/berth/internal/s3api"
)

const (
	env    = "bench"
	keyID  = "BKBENCH"
	secret = "bench-secret"
)

type allow struct{}

func (allow) CanAccess(string, bool) error { return nil }

type noInvoker struct{}

func (noInvoker) Invoke(context.Context, string, string, []byte, http.Header) (int, http.Header, []byte, error) {
	return 0, nil, nil, fmt.Errorf("no functions here")
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "measured time per row")
	conc := flag.Int("c", 8, "concurrent clients")
	nginx := flag.String("nginx", "/usr/sbin/nginx", "nginx binary for the static-file baseline (empty: skip)")
	flag.Parse()
	if err := run(*duration, *conc, *nginx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/state:", err)
		os.Exit(1)
	}
}

// row is one measured line.
type row struct {
	what       string
	ops, bytes int64
	elapsed    time.Duration
	p50, p99   time.Duration
	failures   int64
	firstErr   string
}

// measure runs op from c workers for d and times each call.
func measure(ctx context.Context, what string, c int, d time.Duration, op func(ctx context.Context, worker, i int) (int64, error)) row {
	var mu sync.Mutex
	var lat []time.Duration
	r := row{what: what}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var ops, n, fails int64
			var first string
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				b, err := op(ctx, w, i)
				mine = append(mine, time.Since(t0))
				if err != nil {
					fails++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				ops++
				n += b
			}
			mu.Lock()
			lat = append(lat, mine...)
			r.ops += ops
			r.bytes += n
			r.failures += fails
			if r.firstErr == "" {
				r.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r
}

func run(d time.Duration, c int, nginxBin string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "berth-bench-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)

	st, err := objects.Open(objects.Config{Dir: filepath.Join(dir, "objects"), Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	q, err := queue.Open(ctx, queue.Config{Dir: filepath.Join(dir, "queue"), Invoker: noInvoker{}, Logger: log})
	if err != nil {
		return err
	}
	defer q.Close()
	kvs := kv.New(kv.Config{JetStream: q.JetStream(), Logger: log})
	g := gateway.New(gateway.Config{Logger: log})
	g.SetAllowFrom(env, nil)
	g.SetPlatform("s3", s3api.New(s3api.Config{Store: st, Logger: log,
		Keys: func(context.Context, string) (string, s3api.Identity, error) { return secret, allow{}, nil }}))
	g.SetPlatform("kv", kv.NewHandler(kvs, func(*http.Request) (kv.Identity, error) { return allow{}, nil }, log))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: g}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	transport := &http.Transport{
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
		MaxIdleConnsPerHost: c * 2,
	}
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://s3." + env + ".berth.localhost:" + port),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:  &http.Client{Transport: transport},
	})
	bucket := "bench"
	if err := st.CreateBucket(ctx, env, bucket); err != nil {
		return err
	}

	static := filepath.Join(dir, "static")
	os.MkdirAll(static, 0o755)
	os.Chmod(dir, 0o755)
	var rows []row
	for _, size := range []int{4 << 10, 4 << 20} {
		label := map[int]string{4 << 10: "4 KiB", 4 << 20: "4 MiB"}[size]
		body := make([]byte, size)
		rand.Read(body)
		os.WriteFile(filepath.Join(static, "obj-"+strconv.Itoa(size)), body, 0o644)
		rows = append(rows, measure(ctx, "PutObject "+label+" (SDK, fsync)", c, d, func(ctx context.Context, w, i int) (int64, error) {
			key := fmt.Sprintf("put-%d-%d-%d", size, w, i%8)
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
			return int64(size), err
		}))
		key := "get-" + strconv.Itoa(size)
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
			return err
		}
		rows = append(rows, measure(ctx, "GetObject "+label+" (SDK)", c, d, func(ctx context.Context, w, i int) (int64, error) {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
			if err != nil {
				return 0, err
			}
			n, err := io.Copy(io.Discard, out.Body)
			out.Body.Close()
			return n, err
		}))
		pre, err := s3.NewPresignClient(client).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key}, s3.WithPresignExpires(time.Hour))
		if err != nil {
			return err
		}
		rows = append(rows, httpRow("GetObject "+label+" (presigned URL, plain client)", pre.URL, size, c, d, transport))
		if nginxBin != "" {
			if _, err := os.Stat(nginxBin); err == nil {
				url, stop, err := startNginx(nginxBin, static)
				if err != nil {
					return fmt.Errorf("nginx: %w", err)
				}
				rows = append(rows, httpRow("nginx static file "+label+" (baseline)", url+"/obj-"+strconv.Itoa(size), size, c, d, nil))
				stop()
			}
		}
	}

	kvClient := &http.Client{Transport: transport}
	kvURL := "http://kv." + env + ".berth.localhost:" + port
	val := bytes.Repeat([]byte("v"), 100)
	rows = append(rows, measure(ctx, "KV put 100 B (fsync)", c, d, func(ctx context.Context, w, i int) (int64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/k-%d-%d", kvURL, w, i%64), bytes.NewReader(val))
		return 0, do(kvClient, req)
	}))
	rows = append(rows, measure(ctx, "KV get 100 B", c, d, func(ctx context.Context, w, i int) (int64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/k-%d-%d", kvURL, w, i%64), nil)
		return 0, do(kvClient, req)
	}))

	tw := tabwriter.NewWriter(os.Stdout, 4, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "what\trequests/s\tMiB/s\tp50\tp99\tfailures\n")
	for _, r := range rows {
		secs := r.elapsed.Seconds()
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t%s\t%d\n", r.what, float64(r.ops)/secs, float64(r.bytes)/secs/(1<<20),
			fmtDur(r.p50), fmtDur(r.p99), r.failures)
		if r.firstErr != "" {
			fmt.Fprintf(tw, "  first failure: %s\t\t\t\t\t\n", r.firstErr)
		}
	}
	fmt.Fprintf(tw, "(%d clients, %s per row, GOMAXPROCS=%s; client, gateway and store share the machine)\n", c, d, runtimeProcs())
	return tw.Flush()
}

func do(c *http.Client, req *http.Request) error {
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s", res.Status)
	}
	return nil
}

func httpRow(what, url string, size, c int, d time.Duration, tr *http.Transport) row {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c * 2}}
	if tr != nil {
		hc = &http.Client{Transport: tr}
	}
	res, _ := loadgen.Run(context.Background(), loadgen.Options{URL: url, Concurrency: c, Duration: d, Client: hc})
	r := row{what: what, ops: res.Requests - res.Failures, bytes: (res.Requests - res.Failures) * int64(size),
		elapsed: res.Elapsed, p50: res.P50, p99: res.P99, failures: res.Failures}
	if len(res.Errors) > 0 {
		r.firstErr = res.Errors[0]
	}
	return r
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// startNginx serves root's files on a free loopback port.
func startNginx(bin, root string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "berth-bench-nginx-")
	if err != nil {
		return "", nil, err
	}
	os.Chmod(dir, 0o755)
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
	}
}
`, dir, port, root)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("not listening on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + addr, stop, nil
}

func runtimeProcs() string { return strings.TrimSpace(os.Getenv("GOMAXPROCS") + " (default: cores)") }
