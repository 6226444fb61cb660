package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/web"
	"berth.dev/berth/internal/workflow/engine"
)

const adminToken = "admin-secret"

type passInvoker struct{}

func (passInvoker) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	return http.StatusOK, nil, body, nil
}

// stack is the API (bbolt, role tokens, a real workflow engine) and the
// dashboard on one mux, as the composition root mounts them.
type stack struct {
	t     *testing.T
	url   string
	admin *client.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := apiserver.EnsureDefaultEnvironment(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: st, Invoker: passInvoker{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	api := apiserver.New(apiserver.Config{Store: st, Authorizer: apiserver.NewRoleAuthorizer(adminToken, st),
		Executions: eng, Logger: logger})
	dash, err := web.New(web.Config{API: api.Handler(), Gateway: "127.0.0.1:8080", Logger: logger, SampleEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dash.Close)
	mux := http.NewServeMux()
	mux.Handle("/ui/", dash.Handler())
	mux.Handle("/", api.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &stack{t: t, url: ts.URL, admin: client.New(client.Config{Addr: ts.URL, Token: adminToken})}
}

// browser is a cookie-keeping client that does not follow redirects, so
// tests see them.
type browser struct {
	t    *testing.T
	s    *stack
	http *http.Client
}

func (s *stack) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: s.t, s: s, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	location string
	body     string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(b.t.Context(), http.MethodGet, b.s.url+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(b.t.Context(), http.MethodPost, b.s.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.s.url)
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([0-9a-f]+)"`)

// csrf reads the form token from a page of the session.
func (b *browser) csrf() string {
	b.t.Helper()
	p := b.get("/ui/environments")
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no form token on the environments page (%d): %s", p.status, p.body)
	}
	return m[1]
}

func (b *browser) login(token string) {
	b.t.Helper()
	p := b.post("/ui/login", url.Values{"token": {token}, "next": {"/ui/environments"}})
	if p.status != http.StatusSeeOther || p.location != "/ui/environments" {
		b.t.Fatalf("login: %d to %q: %s", p.status, p.location, p.body)
	}
}

func (s *stack) token(name, role string, envs ...string) string {
	s.t.Helper()
	tok, err := s.admin.CreateToken(s.t.Context(), v1.TokenRequest{Name: name, Role: role, Environments: envs})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok.Secret
}

func (s *stack) apply(obj v1.Object) {
	s.t.Helper()
	if _, _, err := s.admin.Apply(s.t.Context(), obj, false); err != nil {
		s.t.Fatalf("apply: %v", err)
	}
}

func service(env, name string, replicas int32) *v1.Service {
	return &v1.Service{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: name, Environment: env},
		Spec:     v1.ServiceSpec{Replicas: &replicas, Template: v1.Template{Image: "berth.test/echo:v1", Port: 8080}}}
}

func TestLoginSessionsAndLinks(t *testing.T) {
	s := newStack(t)
	b := s.browser()
	p := b.get("/ui/environments")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/ui/login?next=") {
		t.Fatalf("a page without a session: %d %q", p.status, p.location)
	}
	// A wrong token gets the API's own words.
	p = b.post("/ui/login", url.Values{"token": {"nope"}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "invalid bearer token") {
		t.Fatalf("a wrong token: %d %s", p.status, p.body)
	}
	// A login posted from another site's page is refused.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/ui/login", strings.NewReader("token="+adminToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Fatalf("a cross-site login: %d", p.status)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/ui/login", strings.NewReader("token="+adminToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "null")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Fatalf("a cross-site login with Sec-Fetch-Site: %d", p.status)
	}
	b.login(adminToken)
	p = b.get("/ui/environments")
	if p.status != 200 || !strings.Contains(p.body, `href="/ui/env/default"`) || !strings.Contains(p.body, ">admin<") {
		t.Fatalf("environments after login: %d %s", p.status, p.body)
	}
	if csp := b.http.Jar.Cookies(mustURL(s.url + "/ui/")); len(csp) != 1 {
		t.Fatalf("cookies for /ui/: %v", csp)
	}
	// The cookie is not for the API: the browser never sends it there.
	if c := b.http.Jar.Cookies(mustURL(s.url + "/api/v1/")); len(c) != 0 {
		t.Fatalf("the session cookie reaches the API: %v", c)
	}

	// A login link: issued for a bearer token, good once.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/ui/login-links", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var link v1.DashboardLink
	json.NewDecoder(resp.Body).Decode(&link)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(link.Path, "/ui/login/link?code=") || strings.Contains(link.Path, adminToken) {
		t.Fatalf("login link: %d %+v", resp.StatusCode, link)
	}
	fresh := s.browser()
	p = fresh.get(link.Path)
	if p.status != http.StatusSeeOther || p.location != "/ui/environments" {
		t.Fatalf("following the link: %d %q", p.status, p.location)
	}
	if p := fresh.get("/ui/environments"); p.status != 200 {
		t.Fatalf("a page after the link: %d", p.status)
	}
	if p := s.browser().get(link.Path); p.status != http.StatusSeeOther || !strings.Contains(p.location, "link=expired") {
		t.Fatalf("the link a second time: %d %q", p.status, p.location)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/ui/login-links", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a link for a wrong token: %d", resp.StatusCode)
	}

	// Logging out ends the session on the server.
	csrf := b.csrf()
	b.post("/ui/logout", url.Values{"_csrf": {csrf}})
	if p := b.get("/ui/environments"); p.status != http.StatusSeeOther {
		t.Fatalf("a page after logout: %d", p.status)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// The dashboard acts with the session's token: a viewer sees, and its
// actions get the API's refusal; a deployer's go through; a form from
// another page (no form token) is refused before the API is asked.
func TestActionsGoThroughTheAPIWithTheSessionsToken(t *testing.T) {
	s := newStack(t)
	s.apply(service("default", "web", 2))
	viewer := s.browser()
	viewer.login(s.token("looker", v1.RoleViewer, "default"))
	p := viewer.get("/ui/env/default/services/web")
	if p.status != 200 || !strings.Contains(p.body, "Service web") || !strings.Contains(p.body, "0/2 ready") {
		t.Fatalf("the service page for a viewer: %d %s", p.status, p.body)
	}
	csrf := viewer.csrf()
	p = viewer.post("/ui/env/default/services/web", url.Values{"_csrf": {csrf}, "action": {"scale"}, "replicas": {"3"}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "needs role deployer") || !strings.Contains(p.body, `id="action-error"`) {
		t.Fatalf("a viewer scaling: %d %s", p.status, p.body)
	}
	// Logs are the deployer's: the page says so in the API's words.
	p = viewer.get("/ui/env/default/services/web/logs")
	if p.status != 200 || !strings.Contains(p.body, "needs role deployer") {
		t.Fatalf("logs for a viewer: %d %s", p.status, p.body)
	}

	deployer := s.browser()
	deployer.login(s.token("ci", v1.RoleDeployer, "default"))
	csrf = deployer.csrf()
	p = deployer.post("/ui/env/default/services/web", url.Values{"action": {"scale"}, "replicas": {"3"}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "reload the page") {
		t.Fatalf("a form without its token: %d %s", p.status, p.body)
	}
	p = deployer.post("/ui/env/default/services/web", url.Values{"_csrf": {csrf}, "action": {"scale"}, "replicas": {"3"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("a deployer scaling: %d %s", p.status, p.body)
	}
	var svc v1.Service
	if err := s.admin.Get(t.Context(), v1.KindService, "default", "web", &svc); err != nil || *svc.Spec.Replicas != 3 {
		t.Fatalf("replicas after the scale: %v %v", svc.Spec.Replicas, err)
	}
	if p := deployer.get(p.location); !strings.Contains(p.body, "scaled to 3 replicas") {
		t.Fatalf("the page after the scale has no message: %s", p.body)
	}
	// Bad input: the API's error, its field, and the form as typed.
	p = deployer.post("/ui/env/default/services/web", url.Values{"_csrf": {csrf}, "action": {"scale"}, "replicas": {"-4"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "field spec.replicas") || !strings.Contains(p.body, `value="-4"`) {
		t.Fatalf("a negative scale: %d %s", p.status, p.body)
	}
	p = deployer.post("/ui/env/default/services/web", url.Values{"_csrf": {csrf}, "action": {"delete"}, "confirm": {"wbe"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, `type &#34;web&#34; to confirm`) {
		t.Fatalf("a delete with the wrong name: %d %s", p.status, p.body)
	}
	p = deployer.post("/ui/env/default/services/web", url.Values{"_csrf": {csrf}, "action": {"delete"}, "confirm": {"web"}})
	if p.status != http.StatusSeeOther || p.location != "/ui/env/default" {
		t.Fatalf("a delete: %d %q %s", p.status, p.location, p.body)
	}
	if err := s.admin.Get(t.Context(), v1.KindService, "default", "web", &svc); !v1.IsNotFound(err) {
		t.Fatalf("the service after the delete: %v", err)
	}
}

const orderDef = `{"StartAt":"Check","States":{
 "Check":{"Type":"Choice","Choices":[{"Variable":"$.qty","NumericGreaterThan":0,"Next":"Charge"}],"Default":"Reject"},
 "Charge":{"Type":"Task","Resource":"function:pay","Next":"Done"},
 "Done":{"Type":"Pass","End":true},
 "Reject":{"Type":"Fail","Error":"Rejected"}}}`

func TestWorkflowStartAndPath(t *testing.T) {
	s := newStack(t)
	s.apply(&v1.Workflow{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
		Metadata: v1.ObjectMeta{Name: "order", Environment: "default"}, Spec: v1.WorkflowSpec{Definition: json.RawMessage(orderDef)}})
	b := s.browser()
	b.login(adminToken)
	p := b.get("/ui/env/default/workflows/order")
	for _, state := range []string{"Check", "Charge", "Done", "Reject"} {
		if !strings.Contains(p.body, `data-state="`+state+`"`) {
			t.Fatalf("the graph has no state %s: %s", state, p.body)
		}
	}
	csrf := b.csrf()
	p = b.post("/ui/env/default/workflows/order", url.Values{"_csrf": {csrf}, "action": {"start"}, "input": {`{qty: 2`}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "field input") || !strings.Contains(p.body, `{qty: 2</textarea>`) {
		t.Fatalf("a start with input that is not JSON: %d %s", p.status, p.body)
	}
	p = b.post("/ui/env/default/workflows/order", url.Values{"_csrf": {csrf}, "action": {"start"}, "input": {`{"qty": 2}`}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/ui/env/default/executions/") {
		t.Fatalf("a start: %d %q %s", p.status, p.location, p.body)
	}
	id := strings.TrimPrefix(p.location, "/ui/env/default/executions/")
	if _, err := s.admin.WaitExecution(t.Context(), "default", id, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	p = b.get(p.location)
	if !strings.Contains(p.body, "SUCCEEDED") || !strings.Contains(p.body, "Check → Charge → Done") {
		t.Fatalf("the execution page: %s", p.body)
	}
	// The path is drawn: the states it went through visited, the one it
	// did not take not.
	for state, want := range map[string]string{"Check": "visited", "Charge": "visited", "Done": "visited", "Reject": ""} {
		re := regexp.MustCompile(`<g class="node([^"]*)" data-state="` + state + `"`)
		m := re.FindStringSubmatch(p.body)
		if m == nil || strings.Contains(m[1], "visited") != (want == "visited") {
			t.Errorf("state %s drawn as %q, want %q", state, m, want)
		}
	}
}

// The live stream names what changed as the API's watch does, in the
// session's environments only.
func TestLiveStreamRelaysTheWatch(t *testing.T) {
	s := newStack(t)
	if _, _, err := s.admin.Apply(t.Context(), &v1.Environment{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment},
		Metadata: v1.ObjectMeta{Name: "dev"}}, false); err != nil {
		t.Fatal(err)
	}
	b := s.browser()
	b.login(s.token("devview", v1.RoleViewer, "dev"))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+"/ui/live", nil)
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The stream is open once its watch is: wait for the first metrics
	// tick, which comes after both started.
	waitLine(t, lines, "event: metrics")
	s.apply(service("default", "hidden", 1))
	s.apply(service("dev", "api", 1))
	line := waitLine(t, lines, `"name":"api"`)
	if strings.Contains(line, "hidden") {
		t.Fatalf("the dev viewer saw default: %s", line)
	}
}

func waitLine(t *testing.T, lines <-chan string, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended before %q", want)
			}
			if strings.Contains(l, "hidden") {
				t.Fatalf("the stream showed %s", l)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q on the stream within 10s", want)
		}
	}
}

// Every page answers for an admin, with no template error, and its assets
// are served from the binary.
func TestEveryPageDraws(t *testing.T) {
	s := newStack(t)
	s.apply(service("default", "web", 1))
	b := s.browser()
	b.login(adminToken)
	for _, path := range []string{"/ui/", "/ui/environments", "/ui/env/default", "/ui/env/default/services/web",
		"/ui/env/default/services/web/logs", "/ui/traces", "/ui/images"} {
		p := b.get(path)
		if path == "/ui/" {
			if p.status != http.StatusSeeOther {
				t.Errorf("%s: %d", path, p.status)
			}
			continue
		}
		if p.status != 200 || !strings.Contains(p.body, "</html>") {
			t.Errorf("%s: %d %s", path, p.status, p.body)
		}
	}
	if p := b.get("/ui/env/default/services/nope"); p.status != http.StatusNotFound || !strings.Contains(p.body, `service \"nope\" not found`) && !strings.Contains(p.body, "not found") {
		t.Errorf("a missing service: %d %s", p.status, p.body)
	}
	for _, asset := range []string{"/ui/static/app.css", "/ui/static/app.js"} {
		p := b.get(asset)
		if p.status != 200 || len(p.body) < 100 {
			t.Errorf("%s: %d", asset, p.status)
		}
	}
}

// What the API refuses reaches the page in its words, with what was typed
// kept: a roll back with nothing to roll back to, an invocation and a
// publish on a server that runs none, a body that is not JSON, a delete
// confirmed with the wrong name.
func TestRefusedActionsShowTheAPIsError(t *testing.T) {
	s := newStack(t)
	s.apply(service("default", "web", 1))
	s.apply(&v1.Function{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "fn", Environment: "default"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "berth.test/echo:v1", Port: 8080}}})
	s.apply(&v1.Topic{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTopic},
		Metadata: v1.ObjectMeta{Name: "orders", Environment: "default"}})
	b := s.browser()
	b.login(s.token("ci", v1.RoleDeployer, "default"))
	csrf := b.csrf()
	for _, c := range []struct {
		what, path string
		form       url.Values
		status     int
		want       []string
	}{
		{"a roll back with no earlier revision", "/ui/env/default/services/web", url.Values{"action": {"undo"}},
			http.StatusNotFound, []string{"NotFound", "no revision before its current one"}},
		{"a body that is not JSON", "/ui/env/default/functions/fn", url.Values{"action": {"invoke"}, "contentType": {"application/json"}, "body": {`{"a": 1`}},
			http.StatusBadRequest, []string{"field body", "the body is not JSON", `{&#34;a&#34;: 1</textarea>`}},
		{"an invocation the server cannot run", "/ui/env/default/functions/fn", url.Values{"action": {"invoke"}, "contentType": {"text/plain"}, "body": {"hello"}},
			http.StatusServiceUnavailable, []string{"Unavailable", "does not run function invocations", "hello</textarea>"}},
		{"a publish the server cannot run", "/ui/env/default", url.Values{"action": {"publish"}, "topic": {"orders"}, "body": {"order-1"}},
			http.StatusServiceUnavailable, []string{"Unavailable", "does not run function invocations", "order-1</textarea>"}},
		{"a publish to no topic", "/ui/env/default", url.Values{"action": {"publish"}, "body": {"order-2"}},
			http.StatusBadRequest, []string{"field topic", "order-2</textarea>"}},
		{"an environment delete with the wrong name", "/ui/env/default", url.Values{"action": {"delete"}, "confirm": {"defualt"}},
			http.StatusBadRequest, []string{"field confirm", `type &#34;default&#34; to confirm`}},
	} {
		c.form.Set("_csrf", csrf)
		p := b.post(c.path, c.form)
		if p.status != c.status || !strings.Contains(p.body, `id="action-error"`) {
			t.Errorf("%s: %d, want %d: %s", c.what, p.status, c.status, p.body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(p.body, w) {
				t.Errorf("%s: the page has no %q: %s", c.what, w, p.body)
			}
		}
	}
	var env v1.Environment
	if err := s.admin.Get(t.Context(), v1.KindEnvironment, "", "default", &env); err != nil {
		t.Fatalf("the environment after a delete with the wrong name: %v", err)
	}
}
