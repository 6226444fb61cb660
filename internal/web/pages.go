package web

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/client"
)

func decodeAll[T any](items []json.RawMessage) []T {
	out := make([]T, 0, len(items))
	for _, raw := range items {
		var v T
		if json.Unmarshal(raw, &v) == nil {
			out = append(out, v)
		}
	}
	return out
}

func listOf[T any](ctx context.Context, c *client.Client, kind, env string) ([]T, error) {
	items, err := c.List(ctx, kind, env)
	if err != nil {
		return nil, err
	}
	return decodeAll[T](items), nil
}

func superuser(who v1.WhoAmI) bool {
	return who.Role == v1.RoleAdmin && slices.Contains(who.Environments, v1.AllEnvironments)
}

// ---- environments ----

// envSummary is one environment as the environments pages show it.
type envSummary struct {
	Env                                    v1.Environment
	Services, Functions, Workflows, Topics int
	CPUUsed, CPUQuota                      int64 // millicores; quota 0: none
	MemUsed, MemQuota                      int64 // bytes
	Tokens                                 []v1.Token
}

func (e envSummary) CPUPct() int { return pct(e.CPUUsed, e.CPUQuota) }
func (e envSummary) MemPct() int { return pct(e.MemUsed, e.MemQuota) }

func pct(used, quota int64) int {
	if quota <= 0 {
		return 0
	}
	return int(min(100, used*100/quota))
}

func cpuString(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprintf("%d", m/1000)
	}
	if m < 1000 {
		return fmt.Sprintf("%dm", m)
	}
	return trimFloat(float64(m) / 1000)
}

// claim is what a workload holds against its environment's quota: its
// most instances times its limits, as the API counts it at apply.
func claim(t *v1.Template, instances int32) (int64, int64) {
	l, err := t.Resources.Limits()
	if err != nil {
		return 0, 0
	}
	return int64(instances) * l.CPUMillis, int64(instances) * l.MemoryBytes
}

func serviceReplicas(s *v1.Service) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}

func functionMax(f *v1.Function) int32 {
	if f.Spec.Scale.Max == nil {
		return 10
	}
	return *f.Spec.Scale.Max
}

type environmentsData struct {
	Envs       []envSummary
	TokensNote string
	AllTokens  []v1.Token // tokens for every environment ("*")
}

// summarize reads the environments the token sees and what is in them.
func (d *Dashboard) summarize(ctx context.Context, rq *request, only string) (environmentsData, error) {
	var out environmentsData
	var envs []v1.Environment
	if only != "" {
		var e v1.Environment
		if err := rq.c.Get(ctx, v1.KindEnvironment, "", only, &e); err != nil {
			return out, err
		}
		envs = []v1.Environment{e}
	} else {
		var err error
		if envs, err = listOf[v1.Environment](ctx, rq.c, v1.KindEnvironment, ""); err != nil {
			return out, err
		}
	}
	svcs, err := listOf[v1.Service](ctx, rq.c, v1.KindService, only)
	if err != nil {
		return out, err
	}
	fns, err := listOf[v1.Function](ctx, rq.c, v1.KindFunction, only)
	if err != nil {
		return out, err
	}
	wfs, err := listOf[v1.Workflow](ctx, rq.c, v1.KindWorkflow, only)
	if err != nil {
		return out, err
	}
	topics, err := listOf[v1.Topic](ctx, rq.c, v1.KindTopic, only)
	if err != nil {
		return out, err
	}
	var tokens []v1.Token
	if superuser(rq.s.who) {
		if tokens, err = rq.c.Tokens(ctx); err != nil {
			return out, err
		}
	} else {
		out.TokensNote = "Tokens are listed for an admin token of all environments."
	}
	for _, t := range tokens {
		if slices.Contains(t.Spec.Environments, v1.AllEnvironments) {
			out.AllTokens = append(out.AllTokens, t)
		}
	}
	for _, e := range envs {
		s := envSummary{Env: e}
		name := e.Metadata.Name
		for i := range svcs {
			if svcs[i].Metadata.Environment == name {
				s.Services++
				cpu, mem := claim(&svcs[i].Spec.Template, serviceReplicas(&svcs[i]))
				s.CPUUsed, s.MemUsed = s.CPUUsed+cpu, s.MemUsed+mem
			}
		}
		for i := range fns {
			if fns[i].Metadata.Environment == name {
				s.Functions++
				cpu, mem := claim(&fns[i].Spec.Template, functionMax(&fns[i]))
				s.CPUUsed, s.MemUsed = s.CPUUsed+cpu, s.MemUsed+mem
			}
		}
		for _, w := range wfs {
			if w.Metadata.Environment == name {
				s.Workflows++
			}
		}
		for _, t := range topics {
			if t.Metadata.Environment == name {
				s.Topics++
			}
		}
		if q := e.Spec.Quota; q != nil {
			s.CPUQuota, _ = v1.ParseCPU(q.CPU)
			s.MemQuota, _ = v1.ParseMemory(q.Memory)
		}
		for _, t := range tokens {
			if slices.Contains(t.Spec.Environments, name) {
				s.Tokens = append(s.Tokens, t)
			}
		}
		out.Envs = append(out.Envs, s)
	}
	return out, nil
}

func (d *Dashboard) environmentsPage(r *http.Request, rq *request, v *view) (string, error) {
	data, err := d.summarize(r.Context(), rq, "")
	if err != nil {
		return "", err
	}
	v.Title, v.Section, v.Data = "Environments", "environments", data
	v.Watch = "Environment:* Service:* Function:* Workflow:* Topic:*"
	return "environments", nil
}

type environmentData struct {
	Summary   envSummary
	AllTokens []v1.Token
	Note      string
	Services  []v1.Service
	Functions []v1.Function
	Workflows []v1.Workflow
	Topics    []v1.Topic
	Events    []v1.Event
	Gateway   string
}

func (d *Dashboard) environmentPage(r *http.Request, rq *request, v *view) (string, error) {
	ctx := r.Context()
	env := r.PathValue("env")
	sum, err := d.summarize(ctx, rq, env)
	if err != nil {
		return "", err
	}
	data := environmentData{Summary: sum.Envs[0], AllTokens: sum.AllTokens, Note: sum.TokensNote}
	if data.Services, err = listOf[v1.Service](ctx, rq.c, v1.KindService, env); err != nil {
		return "", err
	}
	if data.Functions, err = listOf[v1.Function](ctx, rq.c, v1.KindFunction, env); err != nil {
		return "", err
	}
	if data.Workflows, err = listOf[v1.Workflow](ctx, rq.c, v1.KindWorkflow, env); err != nil {
		return "", err
	}
	if data.Topics, err = listOf[v1.Topic](ctx, rq.c, v1.KindTopic, env); err != nil {
		return "", err
	}
	events, err := rq.c.Events(ctx, env, "")
	if err != nil {
		return "", err
	}
	data.Events = lastEvents(events, 20)
	v.Title, v.Section, v.Env, v.Data = "Environment "+env, "environments", env, data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}}
	v.Watch = "Environment:" + env + " Service:* Function:* Workflow:* Topic:* Event:* Instance:*"
	return "environment", nil
}

// lastEvents answers the newest n events, newest first.
func lastEvents(events []v1.Event, n int) []v1.Event {
	slices.SortStableFunc(events, func(a, b v1.Event) int { return b.Time.Compare(a.Time) })
	if len(events) > n {
		events = events[:n]
	}
	return events
}

// formError turns a form value that does not read into the error the
// page shows, in the API's words.
func formError(field, format string, args ...any) *actionResult {
	return &actionResult{Err: v1.FieldError(field, format, args...)}
}

func failed(err error) *actionResult { return &actionResult{Err: asAPIError(err)} }

func (d *Dashboard) publishAction(r *http.Request, rq *request) *actionResult {
	env, topic := r.PathValue("env"), r.PostFormValue("topic")
	body := r.PostFormValue("body")
	form := map[string]string{"topic": topic, "body": body}
	if topic == "" {
		return &actionResult{Err: v1.FieldError("topic", "choose a topic to publish to"), Form: form}
	}
	id, err := rq.c.Publish(r.Context(), env, topic, []byte(body))
	if err != nil {
		res := failed(err)
		res.Form = form
		return res
	}
	return &actionResult{Message: fmt.Sprintf("Published to %s: message %s.", topic, id), Redirect: r.URL.Path}
}

// confirmed checks the name typed into a delete form: deleting needs the
// user to say what, not only to click.
func confirmed(r *http.Request, name string) *actionResult {
	if got := strings.TrimSpace(r.PostFormValue("confirm")); got != name {
		return formError("confirm", "type %q to confirm the delete (got %q)", name, got)
	}
	return nil
}

func (d *Dashboard) deleteEnvironmentAction(r *http.Request, rq *request) *actionResult {
	env := r.PathValue("env")
	if res := confirmed(r, env); res != nil {
		return res
	}
	if err := rq.c.DeleteEnvironment(r.Context(), env, r.PostFormValue("cascade") != ""); err != nil {
		return failed(err)
	}
	return &actionResult{Message: fmt.Sprintf("Environment %s deleted.", env), Redirect: "/ui/environments"}
}

// ---- services and functions ----

type instanceRow struct {
	v1.InstanceStatus
	Usage    usage
	HasUsage bool
}

type workloadData struct {
	Kind, Plural, Env, Name string
	Service                 *v1.Service
	Function                *v1.Function
	Template                *v1.Template
	Generation              int64
	Observed                int64
	Revision                int64
	Digest                  string
	Route                   *v1.Route
	Conditions              []v1.Condition
	Instances               []instanceRow
	Revisions               []v1.Revision
	Events                  []v1.Event
	Charts                  []template.HTML
	MetricsError            string
	URL                     string
}

func (d *Dashboard) workloadURL(name, env string, route *v1.Route) string {
	if d.cfg.Gateway == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(d.cfg.Gateway)
	if err != nil {
		return ""
	}
	host := name + "." + env + "." + d.cfg.Domain
	if port != "80" {
		host += ":" + port
	}
	return "http://" + host + "/"
}

func pluralKind(plural string) string {
	if plural == "functions" {
		return v1.KindFunction
	}
	return v1.KindService
}

// pluralOf is the path part of r's workload: services or functions.
func pluralOf(r *http.Request) string {
	if strings.Contains(r.Pattern, "/functions/") {
		return "functions"
	}
	return "services"
}

func (d *Dashboard) workloadPage(r *http.Request, rq *request, v *view) (string, error) {
	ctx := r.Context()
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	data := workloadData{Kind: pluralKind(plural), Plural: plural, Env: env, Name: name}
	var instances []v1.InstanceStatus
	if data.Kind == v1.KindService {
		var s v1.Service
		if err := rq.c.Get(ctx, v1.KindService, env, name, &s); err != nil {
			return "", err
		}
		data.Service, data.Template, data.Route = &s, &s.Spec.Template, s.Spec.Route
		data.Generation, data.Observed, data.Revision, data.Digest = s.Metadata.Generation, s.Status.ObservedGeneration, s.Status.Revision, s.Status.ImageDigest
		data.Conditions, instances = s.Status.Conditions, s.Status.Instances
	} else {
		var f v1.Function
		if err := rq.c.Get(ctx, v1.KindFunction, env, name, &f); err != nil {
			return "", err
		}
		data.Function, data.Template, data.Route = &f, &f.Spec.Template, f.Spec.Route
		data.Generation, data.Observed, data.Revision, data.Digest = f.Metadata.Generation, f.Status.ObservedGeneration, f.Status.Revision, f.Status.ImageDigest
		data.Conditions, instances = f.Status.Conditions, f.Status.Instances
	}
	revs, err := rq.c.RevisionsOf(ctx, data.Kind, env, name)
	if err != nil {
		return "", err
	}
	slices.Reverse(revs)
	data.Revisions = revs
	events, err := rq.c.Events(ctx, env, data.Kind+"/"+name)
	if err != nil {
		return "", err
	}
	data.Events = lastEvents(events, 15)
	rq.s.history.want()
	for _, in := range instances {
		u, ok := rq.s.history.instanceUsage(env, in.Name)
		data.Instances = append(data.Instances, instanceRow{InstanceStatus: in, Usage: u, HasUsage: ok})
	}
	pts, merr := rq.s.history.series(env, name)
	for _, c := range workloadCharts(pts, data.Kind == v1.KindFunction) {
		data.Charts = append(data.Charts, c.SVG())
	}
	data.MetricsError = merr
	data.URL = d.workloadURL(name, env, data.Route)
	v.Title, v.Section, v.Env, v.Data = data.Kind+" "+name, "environments", env, data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}, {env, "/ui/env/" + env}}
	v.Watch = data.Kind + ":" + name + " Instance:* Event:* Revision:*"
	v.Metrics = true
	return "workload", nil
}

func atoi32(field, s string) (int32, *actionResult) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, formError(field, "%q is not a whole number", s)
	}
	return int32(n), nil
}

// scaleAction sets a service's replicas or a function's scale bounds, by
// applying the object as read (its resourceVersion makes the write a
// compare-and-swap: a change made meanwhile is a Conflict, not lost).
func (d *Dashboard) scaleAction(r *http.Request, rq *request) *actionResult {
	ctx := r.Context()
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	form := map[string]string{"replicas": r.PostFormValue("replicas"), "min": r.PostFormValue("min"), "max": r.PostFormValue("max")}
	var obj v1.Object
	var msg string
	if plural == "services" {
		n, res := atoi32("spec.replicas", form["replicas"])
		if res != nil {
			res.Form = form
			return res
		}
		var s v1.Service
		if err := rq.c.Get(ctx, v1.KindService, env, name, &s); err != nil {
			return failed(err)
		}
		s.Spec.Replicas, obj = &n, &s
		msg = fmt.Sprintf("Service %s scaled to %d replicas.", name, n)
	} else {
		lo, res := atoi32("spec.scale.min", form["min"])
		if res == nil {
			var hi int32
			if hi, res = atoi32("spec.scale.max", form["max"]); res == nil {
				var f v1.Function
				if err := rq.c.Get(ctx, v1.KindFunction, env, name, &f); err != nil {
					return failed(err)
				}
				f.Spec.Scale.Min, f.Spec.Scale.Max, obj = &lo, &hi, &f
				msg = fmt.Sprintf("Function %s scales between %d and %d instances.", name, lo, hi)
			}
		}
		if res != nil {
			res.Form = form
			return res
		}
	}
	result, _, err := rq.c.Apply(ctx, obj, false)
	if err != nil {
		res := failed(err)
		res.Form = form
		return res
	}
	if result == client.ResultUnchanged {
		msg = "Nothing to change: " + strings.ToLower(msg[:1]) + msg[1:]
	}
	return &actionResult{Message: msg, Redirect: r.URL.Path}
}

func (d *Dashboard) undoAction(r *http.Request, rq *request) *actionResult {
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	to := int64(0)
	if s := strings.TrimSpace(r.PostFormValue("revision")); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return formError("toRevision", "%q is not a revision number", s)
		}
		to = n
	}
	if err := rq.c.RollbackOf(r.Context(), pluralKind(plural), env, name, to, nil); err != nil {
		return failed(err)
	}
	what := "the previous revision"
	if to > 0 {
		what = fmt.Sprintf("revision %d", to)
	}
	return &actionResult{Message: fmt.Sprintf("%s rolled back to %s.", name, what), Redirect: r.URL.Path}
}

// maxShownBody bounds what the page shows of an invocation's answer.
const maxShownBody = 64 << 10

func (d *Dashboard) invokeAction(r *http.Request, rq *request) *actionResult {
	env, name := r.PathValue("env"), r.PathValue("name")
	body, ctype := r.PostFormValue("body"), r.PostFormValue("contentType")
	form := map[string]string{"body": body, "contentType": ctype}
	if pluralOf(r) != "functions" {
		return &actionResult{Err: v1.Invalid("only functions are invoked; call a service through its URL"), Form: form}
	}
	if ctype == "application/json" && strings.TrimSpace(body) != "" && !json.Valid([]byte(body)) {
		// Said here, before the function gets it: a function would
		// answer its own, less clear, error.
		var x any
		err := json.Unmarshal([]byte(body), &x)
		return &actionResult{Err: v1.FieldError("body", "the body is not JSON (%v); fix it, or send it as text/plain", err), Form: form}
	}
	status, h, out, err := rq.c.Invoke(r.Context(), env, name, []byte(body), ctype)
	if err != nil {
		res := failed(err)
		res.Form = form
		return res
	}
	if len(out) > maxShownBody {
		out = append(out[:maxShownBody], "\n… (cut)"...)
	}
	return &actionResult{
		Message: fmt.Sprintf("%s answered %d %s (%s).", name, status, http.StatusText(status), h.Get("Content-Type")),
		Output:  string(out), Status: status, Form: form,
	}
}

func (d *Dashboard) deleteWorkloadAction(r *http.Request, rq *request) *actionResult {
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	if res := confirmed(r, name); res != nil {
		return res
	}
	if err := rq.c.Delete(r.Context(), pluralKind(plural), env, name); err != nil {
		return failed(err)
	}
	return &actionResult{Message: fmt.Sprintf("%s %s deleted; its instances are stopping.", pluralKind(plural), name), Redirect: "/ui/env/" + env}
}

// ---- logs ----

type logsData struct {
	Kind, Plural, Env, Name string
	Instances               []string
	Instance, Grep, Since   string
	Revision                string
	Tail                    int
	Lines                   []string
	Err                     *v1.Error
	Stream                  string
}

func logOptions(r *http.Request) (client.LogOptions, *v1.Error) {
	q := r.URL.Query()
	o := client.LogOptions{Instance: q.Get("instance"), Grep: q.Get("grep"), Since: q.Get("since"), Tail: 200}
	if t := q.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return o, v1.FieldError("tail", "%q is not a number of lines", t)
		}
		o.Tail = n
	}
	if rev := q.Get("revision"); rev != "" {
		n, err := strconv.ParseInt(rev, 10, 64)
		if err != nil {
			return o, v1.FieldError("revision", "%q is not a revision number", rev)
		}
		o.Revision = n
	}
	return o, nil
}

func (d *Dashboard) logsPage(r *http.Request, rq *request, v *view) (string, error) {
	ctx := r.Context()
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	data := logsData{Kind: pluralKind(plural), Plural: plural, Env: env, Name: name}
	var status struct {
		Status struct {
			Instances []v1.InstanceStatus `json:"instances"`
		} `json:"status"`
	}
	if err := rq.c.Get(ctx, data.Kind, env, name, &status); err != nil && !v1.IsNotFound(err) {
		return "", err
	}
	for _, in := range status.Status.Instances {
		data.Instances = append(data.Instances, in.Name)
	}
	opts, ferr := logOptions(r)
	data.Instance, data.Grep, data.Since, data.Tail = opts.Instance, opts.Grep, opts.Since, opts.Tail
	data.Revision = r.URL.Query().Get("revision")
	data.Err = ferr
	if ferr == nil {
		rc, err := rq.c.WorkloadLogs(ctx, env, data.Kind, name, opts)
		if err != nil {
			data.Err = asAPIError(err)
		} else {
			b, rerr := readLimited(rc, 4<<20)
			rc.Close()
			if rerr != nil {
				data.Err = asAPIError(rerr)
			}
			if s := strings.TrimRight(string(b), "\n"); s != "" {
				data.Lines = strings.Split(s, "\n")
			}
		}
	}
	q := r.URL.Query()
	q.Del("follow")
	data.Stream = "/ui/env/" + env + "/" + plural + "/" + name + "/logs/stream?" + q.Encode()
	v.Title, v.Section, v.Env, v.Data = "Logs of "+name, "environments", env, data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}, {env, "/ui/env/" + env}, {name, "/ui/env/" + env + "/" + plural + "/" + name}}
	return "logs", nil
}

// logStream follows a workload's logs as server-sent events, one line per
// event, the last tail lines first.
func (d *Dashboard) logStream(w http.ResponseWriter, r *http.Request, rq *request) {
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	opts, ferr := logOptions(r)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	fail := func(e *v1.Error) {
		b, _ := json.Marshal(v1.ErrorBody{Kind: e.Kind, Message: e.Message, Field: e.Field})
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "event: apierror\ndata: %s\n\n", b)
	}
	if ferr != nil {
		fail(ferr)
		return
	}
	opts.Follow = true
	body, err := rq.c.WorkloadLogs(r.Context(), env, pluralKind(plural), name, opts)
	if err != nil {
		fail(asAPIError(err))
		return
	}
	defer body.Close()
	w.WriteHeader(http.StatusOK)
	// A line at a time, flushed when no more is waiting: a burst goes out
	// in few writes, a single line at once.
	lines := newLineReader(body)
	for {
		line, more, err := lines.next()
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", strings.ReplaceAll(line, "\r", "")); err != nil {
			return
		}
		if !more && rc.Flush() != nil {
			return
		}
	}
}

// ---- traces ----

type tracesData struct {
	Traces                             []v1.TraceSummary
	Err                                *v1.Error
	Workload, Environment, MinDuration string
	Errors                             bool
	Limit                              int
}

func (d *Dashboard) tracesPage(r *http.Request, rq *request, v *view) (string, error) {
	q := r.URL.Query()
	data := tracesData{Workload: q.Get("workload"), Environment: q.Get("environment"), MinDuration: q.Get("minDuration"),
		Errors: q.Get("errors") != "", Limit: 50}
	tq := client.TraceQuery{Workload: data.Workload, Environment: data.Environment, ErrorsOnly: data.Errors, Limit: data.Limit}
	if data.MinDuration != "" {
		dur, err := time.ParseDuration(data.MinDuration)
		if err != nil {
			data.Err = v1.FieldError("minDuration", "%q is not a duration like 100ms", data.MinDuration)
		}
		tq.MinDuration = dur
	}
	if data.Err == nil {
		traces, err := rq.c.Traces(r.Context(), tq)
		if err != nil {
			data.Err = asAPIError(err)
		}
		data.Traces = traces
	}
	v.Title, v.Section, v.Data = "Traces", "traces", data
	return "traces", nil
}

type traceData struct {
	ID    string
	Rows  []waterfallRow
	Total time.Duration
	Start time.Time
}

func (d *Dashboard) tracePage(r *http.Request, rq *request, v *view) (string, error) {
	t, err := rq.c.Trace(r.Context(), r.PathValue("id"))
	if err != nil {
		return "", err
	}
	rows, total := waterfall(t.Spans)
	data := traceData{ID: t.TraceID, Rows: rows, Total: total}
	for i, s := range t.Spans {
		if i == 0 || s.Start.Before(data.Start) {
			data.Start = s.Start
		}
	}
	v.Title, v.Section, v.Data = "Trace "+clip(t.TraceID, 12), "traces", data
	v.Crumbs = []crumb{{"Traces", "/ui/traces"}}
	return "trace", nil
}

// ---- workflows ----

type workflowData struct {
	Env, Name  string
	Workflow   v1.Workflow
	Graph      template.HTML
	GraphErr   string
	Executions []v1.Execution
}

func (d *Dashboard) workflowPage(r *http.Request, rq *request, v *view) (string, error) {
	ctx := r.Context()
	env, name := r.PathValue("env"), r.PathValue("name")
	data := workflowData{Env: env, Name: name}
	if err := rq.c.Get(ctx, v1.KindWorkflow, env, name, &data.Workflow); err != nil {
		return "", err
	}
	g, err := workflowGraph(data.Workflow.Spec.Definition, nil, nil)
	if err != nil {
		data.GraphErr = err.Error()
	}
	data.Graph = g
	execs, err := rq.c.Executions(ctx, env, name)
	if err != nil {
		return "", err
	}
	if len(execs) > 50 {
		execs = execs[:50]
	}
	data.Executions = execs
	v.Title, v.Section, v.Env, v.Data = "Workflow "+name, "environments", env, data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}, {env, "/ui/env/" + env}}
	v.Watch = "Workflow:" + name + " Execution:*"
	return "workflow", nil
}

func (d *Dashboard) startAction(r *http.Request, rq *request) *actionResult {
	env, name := r.PathValue("env"), r.PathValue("name")
	input := r.PostFormValue("input")
	exec, err := rq.c.StartExecution(r.Context(), env, name, []byte(input))
	if err != nil {
		res := failed(err)
		res.Form = map[string]string{"input": input}
		return res
	}
	return &actionResult{Message: fmt.Sprintf("Execution %s started.", exec.ID), Redirect: "/ui/env/" + env + "/executions/" + exec.ID}
}

func (d *Dashboard) deleteWorkflowAction(r *http.Request, rq *request) *actionResult {
	env, name := r.PathValue("env"), r.PathValue("name")
	if res := confirmed(r, name); res != nil {
		return res
	}
	if err := rq.c.Delete(r.Context(), v1.KindWorkflow, env, name); err != nil {
		return failed(err)
	}
	return &actionResult{Message: fmt.Sprintf("Workflow %s deleted.", name), Redirect: "/ui/env/" + env}
}

type executionData struct {
	Env       string
	Exec      v1.Execution
	History   []v1.HistoryEvent
	Graph     template.HTML
	GraphErr  string
	Changed   bool // the workflow changed since the execution started
	Path      []string
	Finished  bool
	WfMissing bool
}

func (d *Dashboard) executionPage(r *http.Request, rq *request, v *view) (string, error) {
	ctx := r.Context()
	env, id := r.PathValue("env"), r.PathValue("id")
	data := executionData{Env: env}
	var err error
	if data.Exec, err = rq.c.Execution(ctx, env, id); err != nil {
		return "", err
	}
	if data.History, err = rq.c.ExecutionHistory(ctx, env, id); err != nil {
		return "", err
	}
	data.Finished = data.Exec.Status != v1.ExecutionRunning
	var wf v1.Workflow
	if err := rq.c.Get(ctx, v1.KindWorkflow, env, data.Exec.Workflow, &wf); err != nil {
		if !v1.IsNotFound(err) {
			return "", err
		}
		data.WfMissing = true
	} else {
		_, states, perr := parseDefinition(wf.Spec.Definition)
		if perr != nil {
			data.GraphErr = perr.Error()
		} else {
			status, taken := executionPath(states, &data.Exec, data.History)
			data.Graph, _ = workflowGraph(wf.Spec.Definition, status, taken)
			for _, ev := range data.History {
				if strings.HasSuffix(ev.Type, "StateEntered") && ev.StateName != "" {
					data.Path = append(data.Path, ev.StateName)
				}
			}
		}
		data.Changed = wf.Metadata.Generation != data.Exec.Generation
	}
	v.Title, v.Section, v.Env, v.Data = "Execution "+clip(id, 16), "environments", env, data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}, {env, "/ui/env/" + env}, {data.Exec.Workflow, "/ui/env/" + env + "/workflows/" + data.Exec.Workflow}}
	v.Watch = "Execution:" + id
	return "execution", nil
}

func (d *Dashboard) stopAction(r *http.Request, rq *request) *actionResult {
	env, id := r.PathValue("env"), r.PathValue("id")
	exec, err := rq.c.StopExecution(r.Context(), env, id, r.PostFormValue("error"), r.PostFormValue("cause"))
	if err != nil {
		return failed(err)
	}
	return &actionResult{Message: fmt.Sprintf("Execution %s stopped (%s).", exec.ID, exec.Status), Redirect: r.URL.Path}
}

// ---- images ----

type imagesData struct {
	Err   *v1.Error
	Repos []imageRepo
	Node  []v1.ImageEntry
}

type imageRepo struct {
	Name string
	Tags []v1.ImageEntry
	Size int64
}

func (d *Dashboard) imagesPage(r *http.Request, rq *request, v *view) (string, error) {
	var data imagesData
	entries, err := rq.c.Images(r.Context())
	if err != nil {
		// The page stays: the error is the API's, in its words.
		data.Err = asAPIError(err)
	}
	repos := map[string]*imageRepo{}
	for _, e := range entries {
		if !e.Registry {
			data.Node = append(data.Node, e)
			continue
		}
		rp := repos[e.Repository]
		if rp == nil {
			rp = &imageRepo{Name: e.Repository}
			repos[e.Repository] = rp
		}
		rp.Tags = append(rp.Tags, e)
		rp.Size += e.Size
	}
	for _, rp := range repos {
		slices.SortFunc(rp.Tags, func(a, b v1.ImageEntry) int { return cmp.Compare(a.Tag, b.Tag) })
		data.Repos = append(data.Repos, *rp)
	}
	slices.SortFunc(data.Repos, func(a, b imageRepo) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(data.Node, func(a, b v1.ImageEntry) int { return cmp.Compare(a.Name, b.Name) })
	v.Title, v.Section, v.Data = "Images", "images", data
	return "images", nil
}

func (d *Dashboard) removeImageAction(r *http.Request, rq *request) *actionResult {
	ref := r.PostFormValue("ref")
	if res := confirmed(r, ref); res != nil {
		return res
	}
	if err := rq.c.RemoveImage(r.Context(), ref); err != nil {
		return failed(err)
	}
	return &actionResult{Message: fmt.Sprintf("Image %s removed.", ref), Redirect: r.URL.Path}
}
