package apiserver

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/telemetry/logs"
)

// logs streams a service's log lines as text/plain (docs/api.md, Logs).
func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	q, err := logQuery(r, time.Now())
	if err != nil {
		return err
	}
	q.Environment, q.Owner = env, name
	if err := q.Validate(); err != nil {
		return err
	}

	// Logs outlive their service, so a deleted service's logs still read;
	// but neither a service nor logs means a typo, which must not hang a
	// follow forever.
	_, svcErr := s.loadService(ctx, env, name)
	if svcErr != nil && !v1.IsNotFound(svcErr) {
		return svcErr
	}
	if svcErr != nil {
		if _, err := os.Stat(logs.Dir(s.logDir, env, name)); errors.Is(err, fs.ErrNotExist) {
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
	err = logs.Read(ctx, s.logDir, q, lw)
	switch {
	case err == nil:
	case !lw.started && v1.IsNotFound(err) && svcErr == nil && q.Instance == "":
		// The service exists but has written nothing yet: no lines. A
		// named instance without logs stays NotFound: likely a typo.
	case !lw.started:
		return err
	default:
		// Headers are gone; all that is left is to stop the stream.
		s.log.Debug("log stream ended", "env", env, "service", name, "err", err)
		return nil
	}
	lw.start()
	return nil
}

// logQuery reads follow, since, tail, instance and timestamps.
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
	if since := v.Get("since"); since != "" {
		if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
			q.Since = t
		} else if d, err := time.ParseDuration(since); err == nil && d >= 0 {
			q.Since = now.Add(-d)
		} else {
			return q, v1.FieldError("since", "%q is neither an RFC 3339 time nor a duration like 5m", since)
		}
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
