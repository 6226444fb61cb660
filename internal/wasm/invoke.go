package wasm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/textproto"
	"path"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/tracing"
)

// Transport returns the http.RoundTripper that serves a function's
// requests in-process: the gateway's endpoint for it. It serves whatever
// revision is current when a request arrives.
func (h *Host) Transport(env, name string) http.RoundTripper {
	return &transport{h: h, k: key{env, name}}
}

type transport struct {
	h *Host
	k key
}

// RoundTrip runs one fresh instance for req. Failures of the module are
// answered, not returned: a 502 or 504 in the API's error shape that says
// what the module did, so the gateway passes it on as the upstream's
// answer (and never retries an invocation that may have had effects).
func (t *transport) RoundTrip(req *http.Request) (res *http.Response, err error) {
	defer func() {
		// A bug of ours (not the module's: its traps are errors) must not
		// take the server down or leak the gateway's slot.
		if p := recover(); p != nil {
			t.h.log.Error("wasm invocation panicked", "environment", t.k.env, "function", t.k.name, "panic", p)
			res, err = errorResponse(req, v1.ErrInternal, fmt.Sprintf("function %s: internal error running the module", t.k.name)), nil
		}
	}()
	t.h.mu.Lock()
	fn := t.h.fns[t.k]
	t.h.mu.Unlock()
	var rev *revision
	for fn != nil {
		rev = fn.cur.Load()
		if rev == nil {
			break
		}
		// Take a reference unless the revision is being retired under us.
		if n := rev.refs.Load(); n > 0 && rev.refs.CompareAndSwap(n, n+1) {
			break
		}
	}
	if req.Body != nil {
		defer req.Body.Close()
	}
	if rev == nil {
		return errorResponse(req, v1.ErrUnavailable, fmt.Sprintf("function %s in environment %s has no compiled module", t.k.name, t.k.env)), nil
	}
	defer rev.release(context.WithoutCancel(req.Context()))
	return fn.invoke(req, rev), nil
}

// invoke runs one instance of rev for req and turns what it did into a
// response.
func (fn *function) invoke(req *http.Request, rev *revision) *http.Response {
	ctx := req.Context()
	var span trace.Span
	if tr := fn.h.tracer; tr != nil {
		ctx, span = tr.Start(ctx, "wasm "+fn.name, trace.WithAttributes(
			attribute.String(tracing.AttrWorkload, fn.name),
			attribute.String(tracing.AttrEnvironment, fn.env),
			attribute.String(tracing.AttrKind, v1.KindFunction),
			attribute.Int64("berth.revision", rev.spec.Revision),
		))
		defer span.End()
	}
	timeout := rev.spec.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var stdin io.Reader = http.NoBody
	if req.Body != nil {
		stdin = req.Body
	}
	stdout := &limitedBuffer{max: MaxResponseBytes}
	stderr := &logLines{fn: fn, rev: rev.spec.Revision}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: any number may run at once
		WithArgs(append([]string{fn.name}, rev.spec.Args...)...).
		WithStdin(stdin).
		WithStdout(stdout).
		WithStderr(stderr).
		WithSysWalltime().
		WithSysNanotime().
		// A sleep ends with the invocation: wazero stops a module at its
		// deadline only while it runs, not inside a host call.
		WithNanosleep(func(ns int64) {
			t := time.NewTimer(time.Duration(ns))
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}).
		WithRandSource(rand.Reader).
		WithFSConfig(rev.fsys)
	for _, kv := range rev.spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	for _, kv := range cgiEnv(req) {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}

	release, err := fn.h.admission.admit(ctx)
	if err != nil {
		kind, msg := v1.ErrGatewayTimeout, fmt.Sprintf("function %s in environment %s could not start within its timeout of %s: the server was starting other instances", fn.name, fn.env, timeout)
		if req.Context().Err() != nil {
			kind, msg = v1.ErrBadGateway, fmt.Sprintf("function %s in environment %s: the caller went away", fn.name, fn.env)
		}
		if span != nil {
			span.SetStatus(codes.Error, msg)
		}
		return errorResponse(req, kind, msg)
	}
	fn.running.Add(1)
	fn.started.Add(1)
	start := time.Now()
	mod, err := rev.code.rt.InstantiateModule(withMemory(fn.withCalls(ctx, release), rev.code.image, &fn.memory), rev.code.compiled, cfg)
	release()
	if mod != nil {
		_ = mod.Close(context.WithoutCancel(ctx))
	}
	fn.running.Add(-1)
	stderr.flush()
	if span != nil {
		span.SetAttributes(attribute.Float64("berth.wasm.run_ms", float64(time.Since(start).Microseconds())/1000))
	}

	if err == nil && ctx.Err() != nil {
		// It finished after its time (a sleep cut short by the deadline
		// lets it run on briefly): what it wrote is not its answer.
		err = ctx.Err()
	}
	if err != nil {
		kind, msg := fn.failure(ctx, req, err, stderr.last(), timeout)
		if span != nil {
			span.SetStatus(codes.Error, msg)
		}
		if kind != "" {
			fn.h.log.Debug("wasm invocation failed", "environment", fn.env, "function", fn.name, "err", msg)
		}
		return errorResponse(req, kind, msg)
	}
	if stdout.overflow {
		return errorResponse(req, v1.ErrBadGateway, fmt.Sprintf("function %s wrote more than %d bytes of response", fn.name, MaxResponseBytes))
	}
	res, perr := parseCGI(req, stdout.Bytes())
	if perr != nil {
		msg := fmt.Sprintf("function %s: %v", fn.name, perr)
		if span != nil {
			span.SetStatus(codes.Error, msg)
		}
		return errorResponse(req, v1.ErrBadGateway, msg)
	}
	return res
}

// failure says why an instance did not answer: the timeout (504), the
// caller gone, or the module's own failure (502) with its last words.
func (fn *function) failure(ctx context.Context, req *http.Request, err error, lastErr string, timeout time.Duration) (kind, msg string) {
	what := fmt.Sprintf("function %s in environment %s", fn.name, fn.env)
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded,
		errors.Is(context.Cause(ctx), context.DeadlineExceeded) && req.Context().Err() == nil:
		return v1.ErrGatewayTimeout, fmt.Sprintf("%s did not answer within its timeout of %s and was stopped", what, timeout)
	case req.Context().Err() != nil:
		return v1.ErrBadGateway, fmt.Sprintf("%s: the caller went away", what)
	case errors.As(err, &exit):
		msg = fmt.Sprintf("%s exited with code %d before answering", what, exit.ExitCode())
	default:
		// A trap: unreachable, out-of-bounds access, stack overflow, a
		// memory that cannot grow.
		msg = fmt.Sprintf("%s trapped: %v", what, trimTrap(err))
	}
	if lastErr != "" {
		msg += "; it said on stderr: " + lastErr
	}
	return v1.ErrBadGateway, msg
}

// trimTrap keeps the trap's reason, not wazero's stack trace.
func trimTrap(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\nwasm stack trace:"); i >= 0 {
		s = s[:i]
	}
	return s
}

// cgiEnv is RFC 3875's meta-variables for req, as net/http/cgi's child
// reads them.
func cgiEnv(req *http.Request) []string {
	host, port := req.Host, "80"
	if h, p, err := net.SplitHostPort(req.Host); err == nil {
		host, port = h, p
	}
	env := []string{
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_SOFTWARE=berth",
		"SERVER_PROTOCOL=" + req.Proto,
		"SERVER_NAME=" + host,
		"SERVER_PORT=" + port,
		"REQUEST_METHOD=" + req.Method,
		"REQUEST_URI=" + req.URL.RequestURI(),
		"SCRIPT_NAME=",
		"PATH_INFO=" + req.URL.Path,
		"QUERY_STRING=" + req.URL.RawQuery,
		"HTTP_HOST=" + req.Host,
	}
	if req.Proto == "" {
		env[2] = "SERVER_PROTOCOL=HTTP/1.1"
	}
	if ra, rp, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		env = append(env, "REMOTE_ADDR="+ra, "REMOTE_PORT="+rp)
	}
	if req.ContentLength > 0 {
		env = append(env, "CONTENT_LENGTH="+strconv.FormatInt(req.ContentLength, 10))
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		env = append(env, "CONTENT_TYPE="+ct)
	}
	for k, vs := range req.Header {
		if k == "Content-Type" || k == "Content-Length" {
			continue
		}
		name := "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		if name == "HTTP_PROXY" {
			continue // httpoxy: never let a header become a proxy setting
		}
		env = append(env, name+"="+strings.Join(vs, ", "))
	}
	return env
}

// parseCGI reads a CGI response: header lines, a blank line, the body.
// "Status: 404 Not Found" sets the status; a Location without Status is a
// redirect.
func parseCGI(req *http.Request, out []byte) (*http.Response, error) {
	if len(out) == 0 {
		return nil, errors.New("the module wrote nothing to stdout; a Wasm function answers with CGI headers, a blank line and the body (net/http/cgi.Serve does this)")
	}
	br := bufio.NewReader(bytes.NewReader(out))
	tp := textproto.NewReader(br)
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("malformed CGI response headers: %v", err)
	}
	h := http.Header(mh)
	status := http.StatusOK
	if s := h.Get("Status"); s != "" {
		code, _, _ := strings.Cut(s, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			return nil, fmt.Errorf("malformed CGI Status header %q", s)
		}
		status = n
		h.Del("Status")
	} else if h.Get("Location") != "" {
		status = http.StatusFound
	}
	if len(h) == 0 {
		return nil, errors.New("the module's response has no CGI headers (at least Content-Type, then a blank line)")
	}
	body, _ := io.ReadAll(br)
	h.Del("Content-Length")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}, nil
}

// errorResponse is the API's error shape, as the gateway writes it.
func errorResponse(req *http.Request, kind, msg string) *http.Response {
	status, _ := v1.HTTPStatus(kind)
	body, _ := json.Marshal(v1.Status{Error: v1.ErrorBody{Kind: kind, Message: msg}})
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}
}

// limitedBuffer keeps at most max bytes and notes an overflow.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.overflow = true
		return 0, errors.New("response too large")
	}
	return b.Buffer.Write(p)
}

// logLines sends a module's stderr to the function's log, line by line,
// and keeps the last non-empty line for an error message.
type logLines struct {
	fn      *function
	rev     int64
	partial []byte
	lastNE  string
	crash   bool
	lines   int
}

const maxLogLinesPerInvocation = 1000

func (l *logLines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) > 16<<10 {
				l.emit(l.partial)
				l.partial = l.partial[:0]
			}
			break
		}
		l.emit(append(l.partial, p[:i]...))
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (l *logLines) emit(line []byte) {
	// A Go runtime's crash starts with the reason and goes on with
	// stacks: the reason is worth more than the last line.
	if s := strings.TrimSpace(string(line)); s != "" && !l.crash {
		l.lastNE = s
		l.crash = strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ")
	}
	l.lines++
	if l.lines > maxLogLinesPerInvocation {
		return
	}
	if w := l.fn.logWriter(l.rev); w != nil {
		_ = w.WriteRecord(time.Now(), "stderr", false, line)
	} else {
		l.fn.h.log.Info("wasm stderr", "environment", l.fn.env, "function", l.fn.name, "line", string(line))
	}
}

func (l *logLines) flush() {
	if len(l.partial) > 0 {
		l.emit(l.partial)
		l.partial = nil
	}
}

func (l *logLines) last() string {
	if len(l.lastNE) > 512 {
		return l.lastNE[:512] + "…"
	}
	return l.lastNE
}

// filesConfig gives a module exactly files (read-only), or no file system
// at all.
func filesConfig(files map[string][]byte) wazero.FSConfig {
	cfg := wazero.NewFSConfig()
	if len(files) == 0 {
		return cfg
	}
	m := fstest.MapFS{}
	for p, c := range files {
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		m[p] = &fstest.MapFile{Data: c, Mode: 0o444}
	}
	return cfg.WithFSMount(fs.FS(m), "/")
}
