// Command gateway measures what Berth's gateway costs: the same load, in the
// same run, straight at a workload, through nginx (the yardstick), and
// through the gateway, printed as one table.
//
//	go run ./bench/gateway -self -duration 5s
//	go run ./bench/gateway -direct http://10.88.1.5:8080/ \
//	    -gateway http://127.0.0.1:8080/ -host echo.default.berth.localhost
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"berth.dev/berth/bench/loadgen"
	"berth.dev/berth/internal/gateway"
)

type options struct {
	direct, gateway, host string
	nginx                 string
	self                  bool
	duration, warmup      time.Duration
	concurrency           int
}

func main() {
	var o options
	flag.StringVar(&o.direct, "direct", "", "URL of the workload reached directly")
	flag.StringVar(&o.gateway, "gateway", "", "URL of the Berth gateway")
	flag.StringVar(&o.host, "host", "", "Host header for the gateway, NAME.ENV.berth.localhost")
	flag.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx binary to measure as a reference proxy (empty: skip)")
	flag.BoolVar(&o.self, "self", false, "start an echo upstream and a gateway in this process")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per path")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load per path before measuring")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent keep-alive connections")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
}

type path struct {
	name string
	url  string
	host string
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.self {
		if o.direct != "" || o.gateway != "" {
			return errors.New("-self starts its own upstream and gateway: drop -direct and -gateway")
		}
		direct, gw, host, cleanup, err := startSelf()
		if err != nil {
			return err
		}
		defer cleanup()
		o.direct, o.gateway, o.host = direct, gw, host
	}
	if o.direct == "" && o.gateway == "" {
		return errors.New("nothing to measure: give -direct and/or -gateway with -host, or -self")
	}

	var paths []path
	if o.direct != "" {
		paths = append(paths, path{name: "direct", url: o.direct})
		if o.nginx != "" {
			if _, err := os.Stat(o.nginx); err != nil {
				fmt.Fprintf(out, "nginx skipped: %v\n", err)
			} else {
				nginxURL, stopNginx, err := startNginx(ctx, o.nginx, o.direct)
				if err != nil {
					return fmt.Errorf("nginx: %w", err)
				}
				defer stopNginx()
				paths = append(paths, path{name: "nginx", url: nginxURL})
			}
		}
	}
	if o.gateway != "" {
		paths = append(paths, path{name: "berth gateway", url: o.gateway, host: o.host})
	}

	fmt.Fprintf(out, "%d connections, %s per path after %s warm-up, GOMAXPROCS=%d, %d CPUs\n",
		o.concurrency, o.duration, o.warmup, runtime.GOMAXPROCS(0), runtime.NumCPU())
	results := make([]loadgen.Result, len(paths))
	for i, p := range paths {
		opts := loadgen.Options{URL: p.url, Host: p.host, Concurrency: o.concurrency, Timeout: 10 * time.Second}
		if o.warmup > 0 {
			opts.Duration = o.warmup
			if _, err := loadgen.Run(ctx, opts); err != nil {
				return err
			}
		}
		opts.Duration = o.duration
		r, err := loadgen.Run(ctx, opts)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results[i] = r
	}

	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\trequests/s\tp50\tp90\tp99\tmax\tfailures\t")
	for i, p := range paths {
		r := results[i]
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", p.name, r.RPS, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Failures)
	}
	tw.Flush()
	for i, p := range paths {
		for _, e := range results[i].Errors {
			fmt.Fprintf(out, "%s: %s\n", p.name, e)
		}
	}
	return nil
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// startSelf serves a small echo upstream and a Gateway in front of it, both
// on loopback in this process.
func startSelf() (direct, gw, host string, cleanup func(), err error) {
	body := []byte("hello from the echo upstream\n")
	up, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	if err != nil {
		return "", "", "", nil, err
	}
	g := gateway.New(gateway.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	g.SetTargets([]gateway.Target{{
		Environment: "bench", Name: "echo", Kind: "Service",
		Endpoints: []gateway.Endpoint{{ID: "echo-1", Address: up.Addr().String(), Revision: 1}},
	}})
	gs, err := serve(g)
	if err != nil {
		up.Close()
		return "", "", "", nil, err
	}
	cleanup = func() {
		gs.Close()
		up.Close()
		g.CloseIdleConnections()
	}
	return "http://" + up.Addr().String() + "/", "http://" + gs.Addr().String() + "/", "echo.bench.berth.localhost", cleanup, nil
}

type server struct {
	*http.Server
	ln net.Listener
}

func (s server) Addr() net.Addr { return s.ln.Addr() }

func serve(h http.Handler) (server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	s := server{Server: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go s.Serve(ln)
	return s, nil
}

// startNginx runs nginx as a keep-alive reverse proxy to direct, with its
// whole state in a temp dir, and returns its URL (with direct's path).
func startNginx(ctx context.Context, bin, direct string) (string, func(), error) {
	du, err := url.Parse(direct)
	if err != nil || du.Host == "" {
		return "", nil, fmt.Errorf("bad -direct URL %q", direct)
	}
	upstream := du.Host
	if du.Port() == "" {
		upstream = net.JoinHostPort(du.Hostname(), "80")
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-nginx-")
	if err != nil {
		return "", nil, err
	}
	// Workers run as an unprivileged user when started as root; they must
	// reach their temp paths inside the prefix.
	os.Chmod(dir, 0o755)
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream direct {
		server %[2]s;
		keepalive 128;
	}
	server {
		listen 127.0.0.1:%[3]d;
		location / {
			proxy_pass http://direct;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
		}
	}
}
`, dir, upstream, port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		// SIGQUIT is nginx's graceful shutdown; it ends its own workers.
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("exited before listening (%v): %s", err, strings.TrimSpace(string(log)))
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("not listening on %s after 10s", addr)
		}
	}
	u := *du
	u.Host = addr
	u.Scheme = "http"
	return u.String(), stop, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
