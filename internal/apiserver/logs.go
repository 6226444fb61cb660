package apiserver

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/logs"
)

// maxGrepLen bounds a --grep pattern; Go's regexp runs in linear time, so
// only the compiled size needs a bound.
const maxGrepLen = 1024

// LogReader reads the log lines of a workload's instances (the backend).
type LogReader interface {
	Logs(ctx context.Context, q logs.Query, w io.Writer) error
}

// logs streams a service's or function's log lines as text/plain
// (docs/api.md, Logs); the route says which kind.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	kind := v1.KindService
	if strings.Contains(r.Pattern, "/functions/") {
		kind = v1.KindFunction
	}
	q, err := logQuery(r, time.Now())
	if err != nil {
		return err
	}
	q.Environment, q.Owner = env, name
	if err := q.Validate(); err != nil {
		return err
	}

	// Logs outlive their workload, so a deleted one's logs still read;
	// but neither a workload nor logs means a typo, which must not hang a
	// follow forever.
	res, _ := byKind(kind)
	_, svcErr := s.load(ctx, res, env, name)
	if svcErr != nil && !v1.IsNotFound(svcErr) {
		return svcErr
	}
	if s.logReader == nil {
		return v1.Unavailable("this server keeps no logs")
	}
	if svcErr != nil {
		// Reading no lines tells whether any logs are there.
		probe := q
		probe.Follow, probe.Tail, probe.Instance, probe.Revision = false, -1, "", 0
		if err := s.logReader.Logs(ctx, probe, io.Discard); v1.IsNotFound(err) {
			return svcErr
		}
	}

	lw := &lazyWriter{w: w}
	if q.Follow {
		// A follow can last hours: the server's write timeout is for
		// ordinary answers. Headers go out now so the client knows the
		// stream is open before the first line.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		lw.start()
		lw.Flush()
	}
	err = s.logReader.Logs(ctx, q, lw)
	switch {
	case err == nil:
	case !lw.started && v1.IsNotFound(err) && svcErr != nil:
		// Neither the workload nor any of its logs.
		return svcErr
	case !lw.started && v1.IsNotFound(err) && svcErr == nil && q.Instance == "":
		// The workload exists but has written nothing yet (or nothing
		// of that revision): no lines. A named instance without logs
		// stays NotFound: likely a typo.
	case !lw.started:
		return err
	default:
		// Headers are gone; all that is left is to stop the stream.
		s.log.Debug("log stream ended", "env", env, "kind", kind, "name", name, "err", err)
		return nil
	}
	lw.start()
	return nil
}

// logQuery reads follow, since, until, tail, instance, revision, grep and
// timestamps.
func logQuery(r *http.Request, now time.Time) (logs.Query, error) {
	v := r.URL.Query()
	q := logs.Query{
		Instance:   v.Get("instance"),
		Follow:     queryFlag(r, "follow"),
		Timestamps: queryFlag(r, "timestamps"),
	}
	// Lines are prefixed unless one instance is asked for, even when only
	// one instance exists: the output's shape must not change with scale.
	q.Prefix = q.Instance == ""
	var err error
	if q.Since, err = logTime(v.Get("since"), "since", now); err != nil {
		return q, err
	}
	if q.Until, err = logTime(v.Get("until"), "until", now); err != nil {
		return q, err
	}
	if rev := v.Get("revision"); rev != "" {
		n, err := strconv.ParseInt(rev, 10, 64)
		if err != nil || n < 1 {
			return q, v1.FieldError("revision", "%q is not a revision number", rev)
		}
		q.Revision = n
	}
	if g := v.Get("grep"); g != "" {
		if len(g) > maxGrepLen {
			return q, v1.FieldError("grep", "pattern longer than %d bytes", maxGrepLen)
		}
		re, err := regexp.Compile(g)
		if err != nil {
			return q, v1.FieldError("grep", "%q is not a regular expression: %v", g, err)
		}
		q.Grep = re
	}
	if tail := v.Get("tail"); tail != "" {
		n, err := strconv.Atoi(tail)
		if err != nil || n < 0 {
			return q, v1.FieldError("tail", "%q is not a number of lines", tail)
		}
		q.Tail = n
		if n == 0 {
			q.Tail = -1 // no lines of the past; with follow, only new ones
		}
	}
	return q, nil
}

// logTime reads an RFC 3339 time or a duration before now ("5m").
func logTime(s, field string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, v1.FieldError(field, "%q is neither an RFC 3339 time nor a duration like 5m", s)
}

// lazyWriter sends the 200 and text/plain headers with the first line, so
// that an error found before any output can still be a JSON error.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) start() {
	if l.started {
		return
	}
	l.started = true
	h := l.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	l.start()
	return l.w.Write(p)
}

func (l *lazyWriter) Flush() {
	if l.started {
		if f, ok := l.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}
