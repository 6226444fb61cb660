package gateway

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

// TestOverCapChunkedBodyNeverReachesTheUpstream: a chunked body over the
// cap is refused with 413 before the upstream is called, so it never sees
// a truncated request (it used to get the first 10 MiB); one under the cap
// but past the in-memory buffer arrives whole, with its length, and leaves
// nothing in the spool directory.
func TestOverCapChunkedBodyNeverReachesTheUpstream(t *testing.T) {
	var mu sync.Mutex
	var got []int
	u := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, len(b))
		mu.Unlock()
		if err != nil || r.ContentLength != int64(len(b)) {
			http.Error(w, "broken body", http.StatusBadRequest)
		}
	})
	spool := t.TempDir()
	const limit = 1 << 20
	_, url, c := startGateway(t, Config{MaxBodyBytes: limit, SpoolDir: spool}, target("dev", "api", u))
	hc := hostClient(c, "api.dev.berth.localhost")

	req := mustRequest(t, http.MethodPost, url+"/", io.MultiReader(bytes.NewReader(make([]byte, limit+100<<10))))
	req.ContentLength = -1
	res, body := do(t, hc, req)
	decodeError(t, res, body, http.StatusRequestEntityTooLarge, v1.ErrTooLarge)
	if n := u.hits.Load(); n != 0 {
		t.Errorf("the upstream was called %d times for a body over the cap (bodies %v)", n, got)
	}

	for _, n := range []int{200 << 10, limit} {
		req := mustRequest(t, http.MethodPost, url+"/", io.MultiReader(strings.NewReader(strings.Repeat("x", n))))
		req.ContentLength = -1
		res, body := do(t, hc, req)
		if res.StatusCode != http.StatusOK {
			t.Errorf("chunked body of %d bytes: %d %s", n, res.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != 200<<10 || got[1] != limit {
		t.Errorf("the upstream got bodies of %v bytes; want [%d %d]", got, 200<<10, limit)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool directory holds %d files after the requests", len(left))
	}
}
