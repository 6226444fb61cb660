package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func TestErrorResponseUsesTheOneTable(t *testing.T) {
	for _, c := range []struct {
		err      error
		status   int
		kind     string
		internal bool
	}{
		{fmt.Errorf("hold: %w", v1.Errorf(v1.ErrTooManyRequests, "full")), http.StatusTooManyRequests, v1.ErrTooManyRequests, false},
		{v1.Errorf(v1.ErrBadGateway, "crashed"), http.StatusBadGateway, v1.ErrBadGateway, false},
		{v1.NotFound("gone"), http.StatusNotFound, v1.ErrNotFound, false},
		{v1.Errorf("Bogus", "a kind nobody knows"), http.StatusInternalServerError, v1.ErrInternal, true},
		{errors.New("plain"), http.StatusInternalServerError, v1.ErrInternal, true},
	} {
		status, body, internal := errorResponse(c.err)
		if status != c.status || body.Kind != c.kind || internal != c.internal {
			t.Errorf("%v: %d %s internal=%v, want %d %s internal=%v", c.err, status, body.Kind, internal, c.status, c.kind, c.internal)
		}
	}
}
