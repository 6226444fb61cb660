package apiserver_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store/bolt"
)

// FuzzPUT sends arbitrary bodies to the apply endpoint: whatever a client
// sends, the answer is never a server error.
func FuzzPUT(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"image":"nginx"}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web","resourceVersion":3},"spec":{"image":"nginx","replicas":2,"strategy":{"maxSurge":1}}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"image":"nginx","readinessProbe":{"httpGet":{"path":"/"}}},"status":{"replicas":1}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Environment","metadata":{"name":"web"}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Revision","metadata":{"name":"web"},"spec":{"owner":"web"}}`,
		"apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: nginx, resources: {cpu: 500m, memory: 64Mi}}\n",
		`[{"kind":"Service"}]`,
		`{"kind":"List","items":[]}`,
		`{"apiVersion":"berth.dev/v1","kind":"Service","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"image":"nginx","port":99999}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Function","metadata":{"name":"web"},"spec":{"image":"fn","triggers":[{"topic":"t"}],"async":{"deadLetterTopic":"d"}}}`,
		`{"apiVersion":"berth.dev/v1","kind":"Topic","metadata":{"name":"web"},"spec":{"retention":"1h"}}`,
		"a: &a [*a, *a]\n",
		`null`, ``, `{`, "\x00\xff",
	} {
		f.Add([]byte(seed), false)
	}
	st, err := bolt.Open(filepath.Join(f.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	h := apiserver.New(apiserver.Config{Store: st, Token: token, Logger: slog.New(slog.DiscardHandler)}).Handler()
	f.Fuzz(func(t *testing.T, body []byte, dryRun bool) {
		path := "/api/v1/environments/default/services/web"
		if dryRun {
			path += "?dryRun=1"
		}
		req := httptest.NewRequest(http.MethodPut, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); h.ServeHTTP(rec, req) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("PUT %q: no answer in 10s", body)
		}
		if rec.Code >= 500 {
			t.Fatalf("PUT %q: status %d: %s", body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && !bytes.Contains(rec.Body.Bytes(), []byte(`"kind"`)) {
			t.Fatalf("PUT %q: status %d without a JSON error: %s", body, rec.Code, rec.Body)
		}
	})
}
