package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// methodError is the one answer whose status the kind table cannot give:
// the path exists but not with this method. Its kind stays Invalid, so a
// client that only reads kinds still sees a usage problem.
type methodError struct {
	allow []string
	err   *v1.Error
}

func (e *methodError) Error() string { return e.err.Error() }
func (e *methodError) Unwrap() error { return e.err }

func notAllowed(allow []string, format string, args ...any) error {
	return &methodError{allow: allow, err: v1.Invalid(format, args...)}
}

// errorResponse maps err to a status code (v1.HTTPStatus, the table the
// gateway uses too) and the body of an error answer. internal reports that
// the cause must be logged, not shown.
func errorResponse(err error) (status int, body v1.ErrorBody, internal bool) {
	var me *methodError
	if errors.As(err, &me) {
		return http.StatusMethodNotAllowed, v1.ErrorBody{Kind: me.err.Kind, Message: me.err.Message}, false
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, v1.ErrorBody{
			Kind:    v1.ErrTooLarge,
			Message: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit),
		}, false
	}
	var e *v1.Error
	if errors.As(err, &e) {
		if status, ok := v1.HTTPStatus(e.Kind); ok {
			return status, v1.ErrorBody{Kind: e.Kind, Message: message(err, e), Field: e.Field, File: e.File, Document: e.Document}, e.Kind == v1.ErrInternal
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, v1.ErrorBody{Kind: v1.ErrUnavailable, Message: "the request timed out"}, false
	}
	return http.StatusInternalServerError, v1.ErrorBody{
		Kind:    v1.ErrInternal,
		Message: "internal error; the server log has the details",
	}, true
}

// message keeps the context that wrapping added in front of e ("create
// service web: ...") but not e's field, which travels in its own member.
func message(err error, e *v1.Error) string {
	prefix, _ := strings.CutSuffix(err.Error(), e.Error())
	return prefix + e.Message
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err as {"error": {...}}.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body, internal := errorResponse(err)
	if internal {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var me *methodError
	if errors.As(err, &me) {
		w.Header().Set("Allow", strings.Join(me.allow, ", "))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
	}
	writeJSON(w, status, v1.Status{Error: body})
}
