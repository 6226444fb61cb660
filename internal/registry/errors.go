package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"syscall"
)

// ErrDenied is what an Authorizer wraps when the caller is known but may not
// do what it asks; the registry answers 403 DENIED instead of asking for
// credentials again with 401.
var ErrDenied = errors.New("registry: access denied")

// Error codes of the distribution spec (section "Error Codes").
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
	codeUnknown             = "UNKNOWN"
)

// regError is an error with the spec's code and the HTTP status it maps to.
// Handlers return it; writeError renders it once.
type regError struct {
	status  int
	code    string
	message string
	detail  any
	header  http.Header
	// kind refines code where the Go API must tell causes apart that the
	// spec gives one code (a quota refusal is DENIED, like a missing right).
	kind string
}

const kindQuota = "quota"

func (e *regError) withKind(k string) *regError { e.kind = k; return e }

func (e *regError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *regError {
	return &regError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func (e *regError) withDetail(d any) *regError { e.detail = d; return e }

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError renders err as the spec's error body. Anything that is not a
// *regError is an internal failure: 500 with a message that says what, but
// never a half-done result.
func (g *Registry) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var re *regError
	if !errors.As(err, &re) {
		msg := "internal error"
		if errors.Is(err, syscall.ENOSPC) {
			msg = "storage full: no space left on device"
		}
		g.log.Error("registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		re = &regError{status: http.StatusInternalServerError, code: codeUnknown, message: msg}
	}
	for k, v := range re.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(re.status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(errorBody{Errors: []errorEntry{{Code: re.code, Message: re.message, Detail: re.detail}}})
}
