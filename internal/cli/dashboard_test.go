package cli

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/web"
)

// berth dashboard prints a link that logs a browser in once, without the
// token in it; a wrong token gets the API's refusal and exit code 4.
func TestDashboardPrintsAOneUseLink(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	api := apiserver.New(apiserver.Config{Store: st, Authorizer: apiserver.NewRoleAuthorizer(testToken, st), Logger: slog.New(slog.DiscardHandler)})
	dash, err := web.New(web.Config{API: api.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dash.Close)
	mux := http.NewServeMux()
	mux.Handle("/ui/", dash.Handler())
	mux.Handle("/", api.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	r := runCtx(context.Background(), t, srv.URL, "", newSyncBuffer(), "dashboard")
	mustSucceed(t, r)
	link := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(link, srv.URL+"/ui/login/link?code=") || strings.Contains(link, testToken) || !strings.Contains(r.stderr, "one use") {
		t.Fatalf("berth dashboard printed %q (stderr %q)", link, r.stderr)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []string{"/ui/environments", "/ui/login?link=expired"} {
		resp, err := noFollow.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != want {
			t.Fatalf("following the link, time %d: to %q, want %q", i+1, got, want)
		}
	}

	o := &options{out: newSyncBuffer(), errOut: newSyncBuffer()}
	root := newRootCommand(o)
	root.SetArgs([]string{"--addr", srv.URL, "--token", "wrong", "dashboard"})
	if err := root.Execute(); ExitCode(err) != 4 || !strings.Contains(err.Error(), "invalid bearer token") {
		t.Fatalf("a wrong token: exit %d, %v", ExitCode(err), err)
	}
}
