package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// browser is a headless Chromium (Debian's) driven over the DevTools
// protocol. Every console error, uncaught exception and failed load is
// kept, and each step fails the test if one came that the step did not
// expect.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string

	mu      sync.Mutex
	errs    []string
	allowed []string // substrings of errors the current step expects
}

// chromium finds Debian's Chromium; without it the test skips, or fails
// under BERTH_NO_SKIP (CI), before it starts a server.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testutil.Skip(t, "chromium is not installed (scripts/install-deps.sh installs Debian's): "+err.Error())
	}
	return path
}

func newBrowser(t *testing.T, path, base string) *browser {
	t.Helper()
	b := &browser{t: t, base: base, dir: t.ArtifactDir()}
	// The machine's network is closed and the test owns the profile: no
	// sandbox (root in a container), no GPU, nothing that phones home.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.ctx = ctx
	return b
}

func (b *browser) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		msg = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, msg)
	b.mu.Unlock()
}

// expect lets the next steps see errors containing these substrings (a
// form the API refuses answers 4xx, which Chromium logs).
func (b *browser) expect(substrings ...string) {
	b.mu.Lock()
	b.allowed = substrings
	b.mu.Unlock()
}

// checkConsole fails on errors the step did not expect.
func (b *browser) checkConsole(step string) {
	b.t.Helper()
	b.mu.Lock()
	errs, allowed := b.errs, b.allowed
	b.errs, b.allowed = nil, nil
	b.mu.Unlock()
	for _, e := range errs {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.Contains(e, a)
		}
		if !ok {
			b.t.Errorf("%s: the browser reported an error: %s", step, e)
		}
	}
}

func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + step)
		b.t.Fatalf("%s: %v", step, err)
	}
	b.checkConsole(step)
}

// until waits, with a deadline, for a JavaScript predicate to hold on the
// page; the page keeps its own state (no reload).
func (b *browser) until(what, predicate string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	var err error
	for {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond)))
		// A page that navigates (a form's answer arriving) ends a poll
		// with a DevTools server error (-32000: the target navigated, its
		// execution context is gone); the predicate is then asked of the
		// new page.
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "(-32000)") {
			break
		}
	}
	if err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.querySelector('main') ? document.querySelector('main').innerText : ''"))
		b.t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, body)
	}
	b.checkConsole(what)
}

// submit runs actions that post a form, then waits for the answer's page
// (not the page the form was on: that one carries a mark the new one does
// not) and for done to hold on it. Errors expected before it stay
// expected until the answer is in.
func (b *browser) submit(step, done string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.mu.Lock()
	allowed := b.allowed
	b.mu.Unlock()
	b.eval(`window.berthSubmitted = true; ''`)
	b.do(step, actions...)
	b.expect(allowed...)
	b.until(step+": the answer", `!window.berthSubmitted && document.readyState === 'complete' && (`+done+`)`, 20*time.Second)
}

// hasError and resultSays are predicates on a form's answer: an error,
// or a message (#action-result on the answer itself, #flash on the page a
// done action redirects to).
const hasError = `!!document.getElementById('action-error')`

func resultSays(s string) string {
	return `[...document.querySelectorAll('#flash, #action-result')].some(e => e.textContent.includes(` + strconv.Quote(s) + `))`
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// shot saves a PNG of the whole page into the test's artifact directory
// (go test -artifacts keeps it).
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d KiB)", p, len(png)>>10)
}

func (b *browser) open(path string) chromedp.Action[chromedp.Void] {
	return chromedp.Navigate(b.base + path)
}

// colorScheme makes the page's prefers-color-scheme light or dark.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// lowContrast lists the visible text of the page whose contrast with its
// background is under WCAG AA's 4.5:1.
const lowContrast = `(() => {
  const lum = c => { const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = el => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor; const m = c.match(/[\d.]+/g); if (m && (m.length < 4 || Number(m[3]) > 0.5)) return c; } return 'rgb(255, 255, 255)'; };
  const bad = [];
  for (const el of document.querySelectorAll('h1, h2, h3, p, td, th, dt, dd, a, button, label, .badge, .muted, code')) {
    if (!el.offsetParent || !el.textContent.trim()) continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) bad.push(el.tagName + '.' + el.className + ' ' + ratio.toFixed(2) + ' "' + el.textContent.trim().slice(0, 24) + '"');
  }
  return bad.join('; ');
})()`

const dashboardWorkflow = `apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: order}
spec:
  definition:
    StartAt: Check
    States:
      Check:
        Type: Choice
        Choices:
          - {Variable: "$.qty", NumericGreaterThan: 0, Next: Charge}
        Default: Reject
      Charge:
        Type: Task
        Resource: "function:fn"
        ResultPath: "$.payment"
        Next: Done
      Done: {Type: Succeed}
      Reject: {Type: Fail, Error: Rejected}
`

// TestDashboard drives the web dashboard in a real browser against a real
// server: log in with `berth dashboard`'s link, see a service and its
// instances, watch a function scale from zero after a request (the page
// redraws itself), follow logs as lines arrive, open a trace's waterfall,
// get the API's error for bad input, start a workflow and see its path,
// and, as a viewer, be refused an action. Each page is screenshotted into
// the test's artifact directory, at 1280 and 390 px wide.
func TestDashboard(t *testing.T) {
	path := chromium(t)
	s := startServer(t)
	b := newBrowser(t, path, "http://"+s.apiAddr)
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec: {image: %s, replicas: 2}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: old}
spec: {image: %s, replicas: 0}
---
apiVersion: berth.dev/v1
kind: Topic
metadata: {name: orders}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: fn}
spec:
  image: %s
  scale: {max: 2, idleTimeout: 300s}
  triggers: [{topic: orders}]
---
`, echoV1, echoV1, echoV1)+dashboardWorkflow, "apply", "-f", "-")
	testutil.WaitForState(t, 90*time.Second, "web 2/2 ready and fn at zero with a standby", func() (bool, string) {
		svc := s.service("default", "web")
		fn := s.function("default", "fn")
		standby := false
		for _, i := range fn.Status.Instances {
			standby = standby || i.Phase == v1.PhaseStandby
		}
		return svc.Status.ReadyReplicas == 2 && standby, fmt.Sprintf("web %d ready; fn %s", svc.Status.ReadyReplicas, fnState(fn))
	})

	t.Run("log in with the link of berth dashboard", func(t *testing.T) {
		link := strings.TrimSpace(s.mustBerth("", "dashboard"))
		if !strings.HasPrefix(link, "http://"+s.apiAddr+"/ui/login/link?code=") {
			t.Fatalf("berth dashboard printed %q", link)
		}
		b.do("login", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#envs")))
		if loc := b.eval("location.pathname + location.search"); loc != "/ui/environments" {
			t.Fatalf("after the link the browser is at %s", loc)
		}
		b.until("the default environment listed", `!!document.querySelector('#envs a[href="/ui/env/default"]')`, 10*time.Second)
		b.shot("01-environments")
		// Keyboard: the first Tab reaches the skip link, the next the
		// navigation.
		b.do("tab", chromedp.KeyEvent("\t"))
		if got := b.eval("document.activeElement.textContent"); got != "Skip to content" {
			t.Errorf("the first Tab focuses %q", got)
		}
		b.do("environment page", b.open("/ui/env/default"), chromedp.WaitVisible(chromedp.CSS("#workloads")))
		b.until("web and fn listed", `document.querySelector('#workloads').textContent.includes('web') && document.querySelector('#workloads').textContent.includes('fn')`, 10*time.Second)
		b.shot("02-environment")
	})

	t.Run("a service and its instances", func(t *testing.T) {
		b.do("service page", b.open("/ui/env/default/services/web"), chromedp.WaitVisible(chromedp.CSS("#instances")))
		b.until("two running instances", `document.querySelectorAll('#instances tr[data-instance]').length === 2 && document.getElementById('ready-count').textContent.startsWith('2/2')`, 20*time.Second)
		weight := b.eval(`(() => { const n = performance.getEntriesByType('navigation')[0]; let total = n.encodedBodySize; const parts = ['html ' + n.encodedBodySize];
			for (const r of performance.getEntriesByType('resource')) { if (r.name.includes('/ui/static/')) { total += r.encodedBodySize; parts.push(r.name.split('/').pop().split('?')[0] + ' ' + r.encodedBodySize); } }
			return total + ' bytes: ' + parts.join(', '); })()`)
		t.Logf("page weight of the service page: %s", weight)
		var total int
		fmt.Sscan(weight, &total)
		if total == 0 || total > 100<<10 {
			t.Errorf("the service page weighs %s; it should stay under 100 KiB", weight)
		}
		b.shot("03-service")
		for _, scheme := range []string{"light", "dark"} {
			b.do("colour scheme "+scheme, colorScheme(scheme))
			if bad := b.eval(lowContrast); bad != "" {
				t.Errorf("text under 4.5:1 contrast in the %s scheme: %s", scheme, bad)
			}
		}
		b.shot("03-service-dark")
		b.do("light again", colorScheme("light"))
	})

	t.Run("a function scales from zero on the page", func(t *testing.T) {
		b.do("function page", b.open("/ui/env/default/functions/fn"), chromedp.WaitVisible(chromedp.CSS("#instances")))
		b.until("fn at zero and the live stream open", `document.getElementById('ready-count').textContent.startsWith('0 ready') && document.body.getAttribute('data-live-open') === '1'`, 20*time.Second)
		b.eval(`window.berthMarker = 'same page'; ''`)
		code, body, err := s.gatewayGetWith(longClient, "fn.default.berth.localhost", "/")
		if err != nil || code != 200 {
			t.Fatalf("request to fn: %d %v %s", code, err, body)
		}
		b.until("one ready instance and a cold start, drawn without a reload",
			`window.berthMarker === 'same page' && document.getElementById('ready-count').textContent.startsWith('1 ready') && document.getElementById('cold-starts').textContent.startsWith('1')`, 30*time.Second)
		b.until("the chart's first points", `document.querySelectorAll('#charts svg polyline, #charts svg circle').length > 0`, 30*time.Second)
		b.shot("04-function-after-cold-start")
	})

	t.Run("logs follow as lines arrive", func(t *testing.T) {
		b.do("logs page", b.open("/ui/env/default/services/web/logs"), chromedp.WaitVisible(chromedp.CSS("#log-lines")))
		b.until("the stream open", `document.getElementById('log-lines').getAttribute('data-following') === '1'`, 20*time.Second)
		b.eval(`window.berthMarker = 'same page'; ''`)
		for i := 1; i <= 3; i++ {
			if code, _, err := s.gatewayGet("web.default.berth.localhost", fmt.Sprintf("/log?msg=dashboard-line-%d", i)); err != nil || code != 200 {
				t.Fatalf("log request: %d %v", code, err)
			}
		}
		b.until("the three lines on the page", `window.berthMarker === 'same page' && ['1','2','3'].every(n => document.getElementById('log-lines').textContent.includes('dashboard-line-' + n))`, 20*time.Second)
		b.shot("05-logs")
	})

	t.Run("a trace's waterfall", func(t *testing.T) {
		b.do("traces page", b.open("/ui/traces?workload=fn&environment=default"), chromedp.WaitVisible(chromedp.CSS("main")))
		b.until("fn's traces listed", `!!document.querySelector('table a[href^="/ui/traces/"]')`, 20*time.Second)
		b.shot("06-traces")
		// The oldest of fn's traces is the cold start's.
		b.do("open the oldest", chromedp.Click(chromedp.Search(`(//table//a[starts-with(@href, "/ui/traces/")])[last()]`)), chromedp.WaitVisible(chromedp.CSS("#waterfall")))
		b.until("spans laid out, the cold start among them", `document.querySelectorAll('#waterfall tr.span-row').length >= 2 && document.getElementById('waterfall').textContent.includes('cold start')`, 10*time.Second)
		b.shot("07-trace-waterfall")
	})

	t.Run("bad input gets the API's error, then a workflow runs and shows its path", func(t *testing.T) {
		b.do("workflow page", b.open("/ui/env/default/workflows/order"), chromedp.WaitVisible(chromedp.CSS(`[data-state="Charge"]`)))
		b.expect("400")
		b.do("start with bad input", chromedp.SetValue(chromedp.CSS("#start-input"), `{"qty": 1`), chromedp.Click(chromedp.CSS("#start-button")), chromedp.WaitVisible(chromedp.CSS("#action-error")))
		if msg := b.eval(`document.getElementById('action-error').textContent`); !strings.Contains(msg, "Invalid") || !strings.Contains(msg, "field input") {
			t.Fatalf("the error shown for input that is not JSON: %q", msg)
		}
		if kept := b.eval(`document.getElementById('start-input').value`); kept != `{"qty": 1` {
			t.Errorf("the form lost what was typed: %q", kept)
		}
		b.shot("08-workflow-bad-input")
		b.do("start", chromedp.SetValue(chromedp.CSS("#start-input"), `{"qty": 1}`), chromedp.Click(chromedp.CSS("#start-button")), chromedp.WaitVisible(chromedp.CSS("#exec-state")))
		b.until("the execution succeeded on the page", `document.getElementById('exec-state').textContent === 'SUCCEEDED'`, 60*time.Second)
		b.until("its path drawn", `['Check','Charge','Done'].every(s => document.querySelector('[data-state="' + s + '"]').classList.contains('visited')) && !document.querySelector('[data-state="Reject"]').classList.contains('visited')`, 10*time.Second)
		if path := b.eval(`document.getElementById('exec-path').textContent`); path != "Check → Charge → Done" {
			t.Errorf("path shown: %q", path)
		}
		b.shot("09-execution-path")
	})

	t.Run("a deployer scales, rolls back, invokes, publishes and deletes", func(t *testing.T) {
		// Scale: the message, then the page follows the new instance
		// live; the API has the new count.
		b.do("service page", b.open("/ui/env/default/services/web"), chromedp.WaitVisible(chromedp.CSS("#instances")))
		b.eval(`window.berthMarker = 'before scale'; ''`)
		b.expect("400")
		b.submit("scale to -1", hasError, chromedp.SetValue(chromedp.CSS(`input[name="replicas"]`), "-1"), chromedp.Click(chromedp.CSS("#scale-button")))
		if msg := b.eval(`document.getElementById('action-error').textContent`); !strings.Contains(msg, "Invalid") || !strings.Contains(msg, "field spec.replicas") {
			t.Errorf("the error shown for -1 replicas: %q", msg)
		}
		if kept := b.eval(`document.querySelector('input[name="replicas"]').value`); kept != "-1" {
			t.Errorf("the form lost what was typed: %q", kept)
		}
		b.submit("scale to 3", resultSays("scaled to 3 replicas"), chromedp.SetValue(chromedp.CSS(`input[name="replicas"]`), "3"), chromedp.Click(chromedp.CSS("#scale-button")))
		b.eval(`window.berthMarker = 'after scale'; ''`)
		b.until("three ready instances drawn without a reload", `window.berthMarker === 'after scale' && document.querySelectorAll('#instances tr[data-instance]').length === 3 && document.getElementById('ready-count').textContent.startsWith('3/3')`, 60*time.Second)
		if svc := s.service("default", "web"); *svc.Spec.Replicas != 3 {
			t.Fatalf("replicas after the scale: %d", *svc.Spec.Replicas)
		}
		b.shot("10-service-scaled")

		// Roll back: a second revision made with the CLI, undone on the
		// page; the API runs the first revision's image again.
		s.mustBerth(fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: %s, replicas: 3}\n", echoV2), "apply", "-f", "-")
		// The previous revision is the one before the service's current:
		// revision 2 must be current before the roll back is asked for.
		testutil.WaitForState(t, 90*time.Second, "web's current revision 2", func() (bool, string) {
			svc := s.service("default", "web")
			return svc.Status.Revision == 2, fmt.Sprintf("revision %d; conditions %+v", svc.Status.Revision, svc.Status.Conditions)
		})
		b.until("revision 2 on the page", `document.getElementById('revisions').textContent.includes('echo:v2')`, 30*time.Second)
		b.submit("roll back", resultSays("web rolled back to the previous revision"), chromedp.Click(chromedp.CSS("#undo-button")))
		testutil.WaitForState(t, 90*time.Second, "web back on v1, 3/3 up to date", func() (bool, string) {
			svc := s.service("default", "web")
			return svc.Spec.Image == echoV1 && svc.Status.ReadyReplicas == 3 && svc.Status.UpdatedReplicas == 3 && svc.Status.ObservedGeneration == svc.Metadata.Generation,
				fmt.Sprintf("image %s, %d ready, %d updated, generation %d observed %d", svc.Spec.Image, svc.Status.ReadyReplicas, svc.Status.UpdatedReplicas, svc.Metadata.Generation, svc.Status.ObservedGeneration)
		})
		b.until("the page on v1 again", `document.getElementById('overview').textContent.includes('echo:v1') && document.getElementById('ready-count').textContent.startsWith('3/3')`, 30*time.Second)
		b.shot("11-service-rolled-back")

		// Invoke with a body: a body that is not JSON is refused with its
		// field and kept; a good one shows the function's answer.
		b.do("function page", b.open("/ui/env/default/functions/fn"), chromedp.WaitVisible(chromedp.CSS("#invoke-button")))
		b.expect("400")
		b.submit("invoke with bad JSON", hasError, chromedp.SetValue(chromedp.CSS(`textarea[name="body"]`), `{"name": "Ada"`), chromedp.Click(chromedp.CSS("#invoke-button")))
		if msg := b.eval(`document.getElementById('action-error').textContent`); !strings.Contains(msg, "Invalid") || !strings.Contains(msg, "field body") {
			t.Errorf("the error shown for a body that is not JSON: %q", msg)
		}
		if kept := b.eval(`document.querySelector('textarea[name="body"]').value`); kept != `{"name": "Ada"` {
			t.Errorf("the form lost the body: %q", kept)
		}
		// A missing field: the function's max scale left empty.
		b.expect("400")
		b.submit("scale with no max", hasError, chromedp.SetValue(chromedp.CSS(`input[name="max"]`), ""), chromedp.Click(chromedp.CSS("#scale-button")))
		if msg := b.eval(`document.getElementById('action-error').textContent`); !strings.Contains(msg, "field spec.scale.max") {
			t.Errorf("the error shown for a missing max: %q", msg)
		}
		b.submit("invoke", resultSays("fn answered"), chromedp.SetValue(chromedp.CSS(`textarea[name="body"]`), `{"name": "Ada"}`), chromedp.Click(chromedp.CSS("#invoke-button")))
		if out := b.eval(`document.getElementById('action-result').textContent`); !strings.Contains(out, "fn answered 200 OK") || !strings.Contains(out, `"version"`) {
			t.Errorf("the invocation's answer on the page: %q", out)
		}
		b.shot("12-function-invoked")

		// Publish to a topic: fn subscribes to it and logs the delivery.
		b.do("environment page", b.open("/ui/env/default"), chromedp.WaitVisible(chromedp.CSS("#publish-button")))
		b.submit("publish", resultSays("Published to orders"), chromedp.SetValue(chromedp.CSS(`textarea[name="body"]`), "dashboard-message"), chromedp.Click(chromedp.CSS("#publish-button")))
		testutil.WaitForState(t, 60*time.Second, "the message delivered to fn", func() (bool, string) {
			out, _, _ := s.berth("", "logs", "fn")
			return strings.Contains(out, `body "dashboard-message"`), out
		})

		// Delete with confirmation: a wrong name deletes nothing; the
		// right one deletes, and the environment page stops listing it.
		b.do("old's page", b.open("/ui/env/default/services/old"), chromedp.WaitVisible(chromedp.CSS("#delete-button")))
		b.expect("400")
		b.submit("delete with the wrong name", hasError, chromedp.SetValue(chromedp.CSS(`input[name="confirm"]`), "web"), chromedp.Click(chromedp.CSS("#delete-button")))
		if msg := b.eval(`document.getElementById('action-error').textContent`); !strings.Contains(msg, `type "old" to confirm`) {
			t.Errorf("the error shown for a wrong name: %q", msg)
		}
		if err := s.client.Get(t.Context(), v1.KindService, "default", "old", &v1.Service{}); err != nil {
			t.Fatalf("old after a delete confirmed with the wrong name: %v", err)
		}
		b.shot("13-delete-refused")
		b.submit("delete", `location.pathname === '/ui/env/default' && `+resultSays("old deleted"), chromedp.SetValue(chromedp.CSS(`input[name="confirm"]`), "old"), chromedp.Click(chromedp.CSS("#delete-button")))
		if err := s.client.Get(t.Context(), v1.KindService, "default", "old", &v1.Service{}); !v1.IsNotFound(err) {
			t.Fatalf("old after the delete: %v", err)
		}
		if b.eval(`String(!!document.querySelector('#workloads a[href="/ui/env/default/services/old"]'))`) != "false" {
			t.Errorf("the environment page still lists old")
		}
	})

	t.Run("images", func(t *testing.T) {
		b.do("images page", b.open("/ui/images"), chromedp.WaitVisible(chromedp.CSS("main")))
		b.until("the echo image listed", `document.querySelector('main').textContent.includes('berth.test/echo')`, 10*time.Second)
		b.shot("14-images")
	})

	t.Run("at 390 px wide", func(t *testing.T) {
		b.do("narrow", chromedp.EmulateViewport(390, 844), b.open("/ui/env/default/services/web"), chromedp.WaitVisible(chromedp.CSS("#instances")))
		if w := b.eval(`String(document.documentElement.scrollWidth) + ' ' + String(window.innerWidth)`); func() bool {
			var sw, iw int
			fmt.Sscan(w, &sw, &iw)
			return sw > iw
		}() {
			t.Errorf("the page is wider than the screen at 390 px (scrollWidth, innerWidth): %s", w)
		}
		b.shot("15-service-390px")
		b.do("narrow execution", b.open("/ui/env/default/workflows/order"), chromedp.WaitVisible(chromedp.CSS(`[data-state="Charge"]`)))
		b.shot("16-workflow-390px")
		b.do("wide again", chromedp.EmulateViewport(1280, 900))
	})

	t.Run("a viewer is refused an action", func(t *testing.T) {
		tok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "default", "--role", "viewer", "--name", "looker"))
		b.do("log out", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS("#token")))
		b.shot("17-login")
		b.do("log in as the viewer", chromedp.SetValue(chromedp.CSS("#token"), tok), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS("#envs")))
		if role := b.eval(`document.getElementById('role').textContent`); role != "viewer" {
			t.Fatalf("logged in as %q", role)
		}
		b.do("service page", b.open("/ui/env/default/services/web"), chromedp.WaitVisible(chromedp.CSS("#instances")))
		b.expect("403")
		b.do("scale", chromedp.SetValue(chromedp.CSS(`input[name="replicas"]`), "4"), chromedp.Click(chromedp.CSS("#scale-button")), chromedp.WaitVisible(chromedp.CSS("#action-error")))
		msg := b.eval(`document.getElementById('action-error').textContent`)
		if !strings.Contains(msg, "Forbidden") || !strings.Contains(msg, "needs role deployer") {
			t.Fatalf("the viewer's scale showed %q", msg)
		}
		if svc := s.service("default", "web"); *svc.Spec.Replicas != 3 {
			t.Fatalf("the viewer's scale changed replicas to %d", *svc.Spec.Replicas)
		}
		b.shot("18-viewer-refused")
	})
}
