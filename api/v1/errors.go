package v1

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is the one error type that crosses Berth's seams. Parts wrap it with
// %w; the API server and the gateway map Kind to an HTTP status at the edge
// (HTTPStatus), and the CLI maps it to an exit code.
type Error struct {
	Kind     string
	Message  string
	Field    string
	File     string
	Document int
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.File != "" {
		loc := e.File
		if e.Document > 0 {
			loc = fmt.Sprintf("%s (document %d)", e.File, e.Document)
		}
		msg = loc + ": " + msg
	}
	return msg
}

// Is makes errors.Is(err, v1.ErrNotFoundSentinel) style checks unnecessary:
// compare kinds with KindOf instead.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Message == "" && t.Field == ""
}

// statusByKind is the table of docs/api.md.
var statusByKind = map[string]int{
	ErrInvalid:         http.StatusBadRequest,
	ErrUnauthorized:    http.StatusUnauthorized,
	ErrForbidden:       http.StatusForbidden,
	ErrNotFound:        http.StatusNotFound,
	ErrConflict:        http.StatusConflict,
	ErrTooLarge:        http.StatusRequestEntityTooLarge,
	ErrRequestTimeout:  http.StatusRequestTimeout,
	ErrTooManyRequests: http.StatusTooManyRequests,
	ErrInternal:        http.StatusInternalServerError,
	ErrBadGateway:      http.StatusBadGateway,
	ErrUnavailable:     http.StatusServiceUnavailable,
	ErrGatewayTimeout:  http.StatusGatewayTimeout,
}

// HTTPStatus is the status code that answers an error of kind, at the API
// server and at the gateway alike: the one place a kind becomes a status.
// ok is false for a kind not in the table; the caller answers it as
// Internal (500).
func HTTPStatus(kind string) (status int, ok bool) {
	status, ok = statusByKind[kind]
	if !ok {
		return http.StatusInternalServerError, false
	}
	return status, true
}

// Errorf returns an *Error of the given kind.
func Errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an Invalid error about one field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func NotFound(format string, args ...any) *Error { return Errorf(ErrNotFound, format, args...) }
func Conflict(format string, args ...any) *Error { return Errorf(ErrConflict, format, args...) }
func Invalid(format string, args ...any) *Error  { return Errorf(ErrInvalid, format, args...) }
func Unavailable(format string, args ...any) *Error {
	return Errorf(ErrUnavailable, format, args...)
}

// KindOf returns the kind of the first *Error in err's chain, or ErrInternal.
func KindOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ErrInternal
}

func IsNotFound(err error) bool { return err != nil && KindOf(err) == ErrNotFound }
func IsConflict(err error) bool { return err != nil && KindOf(err) == ErrConflict }
func IsInvalid(err error) bool  { return err != nil && KindOf(err) == ErrInvalid }
