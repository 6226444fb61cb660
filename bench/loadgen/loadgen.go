package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options describes the load.
type Options struct {
	URL string
	// Host overrides the Host header (e.g. NAME.ENV.berth.localhost) while
	// connecting to URL's address.
	Host   string
	Method string // default GET
	Body   []byte
	Header http.Header
	// Concurrency is the number of workers, each with one request in
	// flight at a time (default 1).
	Concurrency int
	// Duration and Requests end the run, whichever comes first. Run needs
	// one of them; a Start without either runs until Stop.
	Duration time.Duration
	Requests int
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// KeepErrors is how many failure messages to keep (default 5).
	KeepErrors int
	// Client replaces the built-in keep-alive client.
	Client *http.Client
	// H2C speaks HTTP/2 without TLS (prior knowledge) instead of
	// HTTP/1.1, each worker on a connection of its own.
	H2C bool
}

// Result is what a run measured.
type Result struct {
	Requests     int64
	Failures     int64 // transport errors and non-2xx answers
	StatusCounts map[int]int64
	// Errors holds the first few failure messages.
	Errors  []string
	Elapsed time.Duration
	RPS     float64
	P50     time.Duration
	P90     time.Duration
	P99     time.Duration
	Max     time.Duration
}

// String is one line, the same shape for every run so runs compare.
func (r Result) String() string {
	codes := make([]int, 0, len(r.StatusCounts))
	for c := range r.StatusCounts {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var st []string
	for _, c := range codes {
		st = append(st, fmt.Sprintf("%d:%d", c, r.StatusCounts[c]))
	}
	return fmt.Sprintf("requests=%d failures=%d rps=%.0f p50=%s p90=%s p99=%s max=%s status=[%s]",
		r.Requests, r.Failures, r.RPS, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), strings.Join(st, " "))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// Load is a run in progress.
type Load struct {
	opts     Options
	client   *http.Client
	ownTr    *http.Transport
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	start    time.Time
	issued   atomic.Int64
	workers  []*worker

	mu     sync.Mutex
	errors []string
	result Result
}

type worker struct {
	client    *http.Client // nil: the load's
	latencies []time.Duration
	status    map[int]int64
	failures  int64
	end       time.Time
}

// Run drives load until opts.Duration passes or opts.Requests are made.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Duration <= 0 && opts.Requests <= 0 {
		return Result{}, fmt.Errorf("loadgen: Duration or Requests must be set")
	}
	l, err := Start(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	return l.Wait(), nil
}

// Start begins driving load in the background.
func Start(ctx context.Context, opts Options) (*Load, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("loadgen: URL %q is not an http(s) URL", opts.URL)
	}
	if opts.Method == "" {
		opts.Method = http.MethodGet
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.KeepErrors <= 0 {
		opts.KeepErrors = 5
	}
	l := &Load{opts: opts, client: opts.Client, stop: make(chan struct{}), done: make(chan struct{})}
	if l.client == nil {
		l.ownTr = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        opts.Concurrency,
			MaxIdleConnsPerHost: opts.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		l.client = &http.Client{Transport: l.ownTr}
	}
	l.start = time.Now()
	var wg sync.WaitGroup
	for range opts.Concurrency {
		w := &worker{status: map[int]int64{}}
		if opts.H2C && opts.Client == nil {
			tr := &http.Transport{
				Proxy:              nil,
				DialContext:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				DisableCompression: true,
				Protocols:          new(http.Protocols),
			}
			tr.Protocols.SetUnencryptedHTTP2(true)
			w.client = &http.Client{Transport: tr}
		}
		l.workers = append(l.workers, w)
		wg.Go(func() { l.work(ctx, w) })
	}
	var timer *time.Timer
	if opts.Duration > 0 {
		timer = time.AfterFunc(opts.Duration, l.signalStop)
	}
	go func() {
		wg.Wait()
		if timer != nil {
			timer.Stop()
		}
		l.finish()
		close(l.done)
	}()
	return l, nil
}

func (l *Load) signalStop() { l.stopOnce.Do(func() { close(l.stop) }) }

// Stop ends the load, waits for requests in flight and returns the result.
func (l *Load) Stop() Result {
	l.signalStop()
	return l.Wait()
}

// Wait returns the result once the load has ended by itself (duration,
// request count, or its context).
func (l *Load) Wait() Result {
	<-l.done
	return l.result
}

func (l *Load) work(ctx context.Context, w *worker) {
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		// Counted even without a request limit: Issued reports progress.
		if n := l.issued.Add(1); l.opts.Requests > 0 && n > int64(l.opts.Requests) {
			return
		}
		start := time.Now()
		status, err := l.one(ctx, w)
		if ctx.Err() != nil {
			return // aborted by the caller, not a failure of the target
		}
		w.end = time.Now()
		w.latencies = append(w.latencies, w.end.Sub(start))
		if err != nil {
			w.failures++
			l.keepError(err.Error())
			continue
		}
		w.status[status]++
		if status < 200 || status > 299 {
			w.failures++
		}
	}
}

// one makes a request and returns its status; err is a transport error.
// The start of a non-2xx answer's body is kept: it usually says why.
func (l *Load) one(ctx context.Context, w *worker) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	var body io.Reader
	if l.opts.Body != nil {
		body = bytes.NewReader(l.opts.Body)
	}
	req, err := http.NewRequestWithContext(ctx, l.opts.Method, l.opts.URL, body)
	if err != nil {
		return 0, err
	}
	for k, vs := range l.opts.Header {
		req.Header[k] = vs
	}
	if l.opts.Host != "" {
		req.Host = l.opts.Host
	}
	c := l.client
	if w.client != nil {
		c = w.client
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode >= 200 && res.StatusCode <= 299 {
		// Read to the end so the connection goes back to the pool.
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return 0, fmt.Errorf("%s %s: reading body: %w", req.Method, req.URL, err)
		}
		return res.StatusCode, nil
	}
	head, _ := io.ReadAll(io.LimitReader(res.Body, 300))
	io.Copy(io.Discard, res.Body)
	l.keepError(fmt.Sprintf("%s %s: status %d: %s", req.Method, req.URL, res.StatusCode, bytes.TrimSpace(head)))
	return res.StatusCode, nil
}

func (l *Load) keepError(msg string) {
	l.mu.Lock()
	if len(l.errors) < l.opts.KeepErrors {
		l.errors = append(l.errors, msg)
	}
	l.mu.Unlock()
}

func (l *Load) finish() {
	if l.ownTr != nil {
		l.ownTr.CloseIdleConnections()
	}
	for _, w := range l.workers {
		if w.client != nil {
			w.client.CloseIdleConnections()
		}
	}
	r := Result{StatusCounts: map[int]int64{}}
	var all []time.Duration
	end := l.start
	for _, w := range l.workers {
		all = append(all, w.latencies...)
		r.Failures += w.failures
		for c, n := range w.status {
			r.StatusCounts[c] += n
		}
		if w.end.After(end) {
			end = w.end
		}
	}
	r.Requests = int64(len(all))
	r.Elapsed = end.Sub(l.start)
	if r.Elapsed > 0 {
		r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
	}
	slices.Sort(all)
	r.P50, r.P90, r.P99 = percentile(all, 0.50), percentile(all, 0.90), percentile(all, 0.99)
	if len(all) > 0 {
		r.Max = all[len(all)-1]
	}
	l.mu.Lock()
	r.Errors = l.errors
	l.mu.Unlock()
	l.result = r
}

// percentile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
