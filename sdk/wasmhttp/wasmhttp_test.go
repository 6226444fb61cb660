package wasmhttp

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// Outside a Wasm function there is no host: every call says so, in an
// error errors.Is can tell through net/http's *url.Error.
func TestOutsideWasm(t *testing.T) {
	_, err := Get("http://orders/")
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "only in a Wasm function") {
		t.Fatalf("err = %v, want ErrUnavailable saying why", err)
	}
	req, _ := http.NewRequest("GET", "/relative", nil)
	if _, err := Transport.RoundTrip(req); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a request without an absolute URL: %v", err)
	}
}
