package cli

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

func newDescribeCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "describe service|function|workflow|environment NAME",
		Short:   "Show a service, function, workflow or environment in detail",
		Example: "  berth describe service web\n  berth describe svc/web -e staging\n  berth describe fn/resize\n  berth describe workflow checkout",
		Args:    rangeArgs(1, 2, "the kind", "the name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := kindAndName(cmd, args)
			if err != nil {
				return err
			}
			if k.Kind != v1.KindService && k.Kind != v1.KindFunction && k.Kind != v1.KindWorkflow && k.Kind != v1.KindEnvironment {
				return usageErrorf(cmd, "describe supports services, functions, workflows and environments only; use `berth get %s NAME -o yaml`", k.Plural)
			}
			if name == "" {
				return usageErrorf(cmd, "missing the name")
			}
			if k.Kind == v1.KindEnvironment {
				return o.describeEnvironment(cmd, name)
			}
			if k.Kind == v1.KindWorkflow {
				return o.describeWorkflow(cmd, name)
			}
			if k.Kind == v1.KindFunction {
				return o.describeFunction(cmd, name)
			}
			return o.describeService(cmd, name)
		},
	}
}

func (o *options) describeService(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	var svc v1.Service
	if err := c.Get(ctx, v1.KindService, o.env, name, &svc); err != nil {
		return err
	}
	events, err := c.Events(ctx, o.env, v1.KindService+"/"+name)
	if err != nil {
		return err
	}
	now := o.now()
	s, st := &svc.Spec, &svc.Status

	var d describer
	d.header(&svc.Metadata, st.ObservedGeneration, &s.Template, st.ImageDigest)
	d.kv("Replicas", fmt.Sprintf("%d desired | %d updated | %d ready | %d total",
		desiredReplicas(&svc), st.UpdatedReplicas, st.ReadyReplicas, st.Replicas))
	d.kv("Revision", revisionString(st.Revision))
	d.kv("Strategy", fmt.Sprintf("RollingUpdate, %s max surge, %s max unavailable",
		int32OrDefault(s.Strategy.MaxSurge, "default"), int32OrDefault(s.Strategy.MaxUnavailable, "default")))
	d.kv("Resources", resources(s.Resources))
	d.kv("Readiness", probe(s.ReadinessProbe, s.Port))
	d.kv("Liveness", probe(s.LivenessProbe, s.Port))
	if s.TerminationGracePeriodSeconds != nil {
		d.kv("Grace Period", fmt.Sprintf("%ds", *s.TerminationGracePeriodSeconds))
	}
	var vols []string
	for _, v := range s.Volumes {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		vols = append(vols, fmt.Sprintf("%s -> %s (%s)", v.Name, v.MountPath, mode))
	}
	d.kv("Volumes", orNoneList(vols)...)
	d.kv("Route", routeString(s.Route))
	d.kv("URL", serviceURL(svc.Metadata.Name, svc.Metadata.Environment, c.Gateway()))
	d.delivery(&svc.Metadata, s.Strategy.Canary, st.Traffic, st.Canary, s.StickySessions, st.Revision)
	if err := d.flush(o.out); err != nil {
		return err
	}
	return o.describeStatus(now, st.Conditions, st.Instances, events)
}

func routeString(r *v1.Route) string {
	if r == nil || r.Path == "" {
		return "<none>"
	}
	if r.StripPrefix {
		return r.Path + " (prefix stripped)"
	}
	return r.Path
}

// describeStatus prints the conditions, instances and events sections that
// services and functions share.
func (o *options) describeStatus(now time.Time, conditions []v1.Condition, instances []v1.InstanceStatus, events []v1.Event) error {
	if len(conditions) == 0 {
		fmt.Fprintln(o.out, "Conditions:  <none>")
	} else {
		fmt.Fprintln(o.out, "Conditions:")
		var rows [][]string
		for _, cond := range conditions {
			rows = append(rows, []string{"  " + cond.Type, titleBool(cond.Status), orNone(cond.Reason), cond.Message})
		}
		if err := printTable(o.out, []string{"  TYPE", "STATUS", "REASON", "MESSAGE"}, rows); err != nil {
			return err
		}
	}

	if len(instances) == 0 {
		fmt.Fprintln(o.out, "Instances:  <none>")
	} else {
		fmt.Fprintln(o.out, "Instances:")
		insts := append([]v1.InstanceStatus(nil), instances...)
		sort.SliceStable(insts, func(i, j int) bool { return insts[i].Name < insts[j].Name })
		var rows [][]string
		for _, in := range insts {
			rows = append(rows, []string{"  " + in.Name, revisionString(in.Revision), orNone(in.Phase),
				readyString(in.Ready), orNone(in.IP), fmt.Sprint(in.Restarts), lastExit(now, in.LastExit)})
		}
		if err := printTable(o.out, []string{"  NAME", "REVISION", "PHASE", "READY", "IP", "RESTARTS", "LAST-EXIT"}, rows); err != nil {
			return err
		}
	}

	if len(events) == 0 {
		fmt.Fprintln(o.out, "Events:  <none>")
		return nil
	}
	fmt.Fprintln(o.out, "Events:")
	var rows [][]string
	for _, e := range events {
		rows = append(rows, []string{"  " + e.Type, e.Reason, age(now, eventTime(&e)), e.Message})
	}
	return printTable(o.out, []string{"  TYPE", "REASON", "AGE", "MESSAGE"}, rows)
}

// describer collects "Key: value" lines and aligns the values, with extra
// lines of a multi-line value under the first.
type describer struct {
	keys   []string
	values [][]string
}

func (d *describer) kv(key string, values ...string) {
	if len(values) == 0 {
		values = []string{"<none>"}
	}
	d.keys = append(d.keys, key)
	d.values = append(d.values, values)
}

func (d *describer) flush(w io.Writer) error {
	width := 0
	for _, k := range d.keys {
		width = max(width, len(k)+1)
	}
	var b strings.Builder
	for i, k := range d.keys {
		for j, v := range d.values[i] {
			label := ""
			if j == 0 {
				label = k + ":"
			}
			fmt.Fprintf(&b, "%-*s  %s\n", width, label, v)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func labels(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return orNoneList(out)
}

func orNoneList(l []string) []string {
	if len(l) == 0 {
		return []string{"<none>"}
	}
	return l
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return t.Format(time.RFC1123Z)
}

func titleBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func int32OrDefault(p *int32, def string) string {
	if p == nil {
		return def
	}
	return fmt.Sprint(*p)
}

func resources(r v1.Resources) string {
	var parts []string
	if r.CPU != "" {
		parts = append(parts, "cpu="+r.CPU)
	}
	if r.Memory != "" {
		parts = append(parts, "memory="+r.Memory)
	}
	if r.Pids != 0 {
		parts = append(parts, fmt.Sprintf("pids=%d", r.Pids))
	}
	if len(parts) == 0 {
		// Applied before the server wrote defaults into specs: it runs
		// with the built-in ones.
		return fmt.Sprintf("<none> (built-in defaults: cpu=%s, memory=%s, pids=%d)", v1.DefaultCPU, v1.DefaultMemory, v1.DefaultPids)
	}
	return "limits " + strings.Join(parts, ", ")
}

// probe renders a probe as kubectl describe does.
func probe(p *v1.Probe, templatePort int32) string {
	if p == nil {
		return "<none>"
	}
	var s string
	switch {
	case p.HTTPGet != nil:
		port := p.HTTPGet.Port
		if port == 0 {
			port = templatePort
		}
		path := p.HTTPGet.Path
		if path == "" {
			path = "/"
		}
		s = fmt.Sprintf("http-get :%d%s", port, path)
	case p.TCPSocket != nil:
		port := p.TCPSocket.Port
		if port == 0 {
			port = templatePort
		}
		s = fmt.Sprintf("tcp-socket :%d", port)
	default:
		s = "<unknown action>"
	}
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		s, p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
}

// serviceURL is where the gateway serves a service. Without the gateway's
// address in the client config the port is unknown and left out.
func serviceURL(name, env, gateway string) string {
	host := name + "." + env + ".berth.localhost"
	if u, err := url.Parse(gateway); err == nil && u.Host != "" {
		gateway = u.Host
	}
	if gateway != "" {
		if _, port, err := net.SplitHostPort(gateway); err == nil && port != "" && port != "80" {
			host += ":" + port
		}
	}
	return "http://" + host + "/"
}

func (o *options) describeFunction(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.client()
	if err != nil {
		return err
	}
	var fn v1.Function
	if err := c.Get(ctx, v1.KindFunction, o.env, name, &fn); err != nil {
		return err
	}
	events, err := c.Events(ctx, o.env, v1.KindFunction+"/"+name)
	if err != nil {
		return err
	}
	now := o.now()
	s, st := &fn.Spec, &fn.Status

	var d describer
	d.header(&fn.Metadata, st.ObservedGeneration, &s.Template, st.ImageDigest)
	d.kv("Instances", fmt.Sprintf("%d ready | %d desired | %d requests in flight", st.ReadyInstances, st.Desired, st.InFlight))
	d.kv("Revision", revisionString(st.Revision))
	d.kv("Concurrency", fmt.Sprintf("%d per instance", concurrency(&fn)))
	d.kv("Scale", scaleString(&s.Scale, st.KeepAlive))
	d.kv("Timeout", orDefault(s.Timeout, v1.DefaultFunctionTimeout))
	d.kv("Resources", resources(s.Resources))
	d.kv("Readiness", probe(s.ReadinessProbe, s.Port))
	d.kv("Liveness", probe(s.LivenessProbe, s.Port))
	if s.TerminationGracePeriodSeconds != nil {
		d.kv("Grace Period", fmt.Sprintf("%ds", *s.TerminationGracePeriodSeconds))
	}
	var triggers []string
	for _, tr := range s.Triggers {
		switch {
		case tr.Cron != "" && tr.Data != "":
			triggers = append(triggers, fmt.Sprintf("cron %q (UTC) with data %s", tr.Cron, tr.Data))
		case tr.Cron != "":
			triggers = append(triggers, fmt.Sprintf("cron %q (UTC)", tr.Cron))
		default:
			triggers = append(triggers, "topic "+tr.Topic)
		}
	}
	d.kv("Triggers", orNoneList(triggers)...)
	d.kv("Async", asyncString(&s.Async))
	cold := fmt.Sprint(st.ColdStarts)
	if lc := st.LastColdStart; lc != nil {
		cold += fmt.Sprintf(" (last took %s, %s ago)", coldStartDuration(lc.DurationMS), age(now, lc.At))
	}
	d.kv("Cold Starts", cold)
	if lc := st.LastColdStart; lc != nil && len(lc.Phases) > 0 {
		parts := make([]string, 0, len(lc.Phases))
		for _, p := range lc.Phases {
			parts = append(parts, fmt.Sprintf("%s %.1fms", p.Name, p.MS))
		}
		last := strings.Join(parts, ", ")
		if lc.From != "" {
			last += " (from " + lc.From + ")"
		}
		d.kv("Last Cold Start", last)
	}
	if ka := st.KeepAlive; ka != nil {
		standby := "standby kept " + ka.StandbyIdle + " after the last request"
		if ka.Standbys > 1 {
			standby = fmt.Sprintf("%d standbys (its recent peak) kept %s after the last request", ka.Standbys, ka.StandbyIdle)
		}
		if !ka.Standby {
			standby = "standby given back (idle over " + ka.StandbyIdle + "): the next request starts from nothing"
		}
		d.kv("Keep-Alive", fmt.Sprintf("idle instances kept %s, %s", ka.IdleTimeout, standby), ka.Reason)
	}
	d.kv("Route", routeString(s.Route))
	d.kv("URL", serviceURL(fn.Metadata.Name, fn.Metadata.Environment, c.Gateway()))
	d.delivery(&fn.Metadata, s.Strategy.Canary, st.Traffic, st.Canary, s.StickySessions, st.Revision)
	if err := d.flush(o.out); err != nil {
		return err
	}
	return o.describeStatus(now, st.Conditions, st.Instances, events)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func scaleString(sc *v1.FunctionScale, ka *v1.KeepAliveStatus) string {
	util := v1.DefaultTargetUtilization
	if sc.TargetUtilization != nil {
		util = *sc.TargetUtilization
	}
	idle := "to zero after " + sc.IdleTimeout + " idle"
	switch {
	case sc.IdleTimeout != "":
	case ka != nil:
		// Unset: learned from the function's own gaps (Keep-Alive).
		idle = "to zero after " + ka.IdleTimeout + " idle (see Keep-Alive)"
	default:
		idle = "to zero after " + v1.DefaultIdleTimeout + " idle"
	}
	return fmt.Sprintf("min %s, max %s, %s, target utilization %.4g%%",
		int32OrDefault(sc.Min, fmt.Sprint(v1.DefaultScaleMin)), int32OrDefault(sc.Max, fmt.Sprint(v1.DefaultScaleMax)),
		idle, util*100)
}

func asyncString(a *v1.Async) string {
	s := fmt.Sprintf("%s retries, backoff %s doubling", int32OrDefault(a.MaxRetries, fmt.Sprint(v1.DefaultAsyncMaxRetries)),
		orDefault(a.Backoff, v1.DefaultAsyncBackoff))
	if a.DeadLetterTopic != "" {
		return s + ", dead letters to topic " + a.DeadLetterTopic
	}
	return s + ", no dead-letter topic"
}

// coldStartDuration shows milliseconds as a duration a person reads:
// "850ms", "1.24s".
func coldStartDuration(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	// A cold start from a standby takes milliseconds: its tenths count.
	return d.Round(100 * time.Microsecond).String()
}

// header writes what every workload's description starts with: who it is
// and what it runs.
func (d *describer) header(m *v1.ObjectMeta, observed int64, t *v1.Template, digest string) {
	d.kv("Name", m.Name)
	d.kv("Environment", m.Environment)
	d.kv("Labels", labels(m.Labels)...)
	d.kv("Created", timestamp(m.CreationTimestamp))
	d.kv("Generation", fmt.Sprintf("%d (observed %d)", m.Generation, observed))
	d.kv("Image", t.Image)
	d.kv("Image Digest", orNone(digest))
	if len(t.Command) > 0 {
		d.kv("Command", strings.Join(t.Command, " "))
	}
	if len(t.Args) > 0 {
		d.kv("Args", strings.Join(t.Args, " "))
	}
	d.kv("Port", portString(t.Port))
	var env []string
	for _, e := range t.Env {
		env = append(env, e.Name+"="+envValue(e))
	}
	d.kv("Env", orNoneList(env)...)
}

// envValue shows a literal value, or where a value comes from: a secret's
// value is never printed.
func envValue(e v1.EnvVar) string {
	switch {
	case e.ValueFrom != nil && e.ValueFrom.Secret != nil:
		return fmt.Sprintf("<secret %s/%s>", e.ValueFrom.Secret.Name, e.ValueFrom.Secret.Key)
	case e.ValueFrom != nil && e.ValueFrom.Config != nil:
		return fmt.Sprintf("<config %s/%s>", e.ValueFrom.Config.Name, e.ValueFrom.Config.Key)
	}
	return e.Value
}

// delivery shows a workload's traffic split, tags and canary, when it has
// any (docs/delivery.md).
func (d *describer) delivery(m *v1.ObjectMeta, strategy *v1.Canary, traffic []v1.TrafficTarget, canary *v1.CanaryStatus, sticky bool, latest int64) {
	if len(traffic) > 0 {
		var lines []string
		for _, r := range trafficRows(traffic, latest, m) {
			line := "revision " + r[0] + ": " + r[1]
			if r[2] != "<none>" {
				line += ", tag " + r[2]
			}
			lines = append(lines, line)
		}
		d.kv("Traffic", lines...)
	}
	if sticky {
		d.kv("Sticky", "yes (cookie berth-rev-"+m.Name+")")
	}
	if strategy != nil {
		var steps []string
		for _, st := range strategy.Steps {
			steps = append(steps, fmt.Sprintf("%d%% for %s", st.Percent, orDefault(st.Pause, "0s")))
		}
		d.kv("Canary Steps", strings.Join(steps, ", "))
	}
	if c := canary; c != nil {
		lines := []string{fmt.Sprintf("revision %d against %d: %s, %d%% of requests", c.Revision, c.Stable, c.Phase, c.Percent), c.Message}
		if cm, sm := c.CanaryMeasure, c.StableMeasure; cm != nil && sm != nil {
			lines = append(lines, fmt.Sprintf("this step: canary %d requests, %.1f%% errors, p99 %.0f ms; stable %d requests, %.1f%% errors, p99 %.0f ms",
				cm.Requests, cm.ErrorRate*100, cm.P99MS, sm.Requests, sm.ErrorRate*100, sm.P99MS))
		}
		d.kv("Canary", lines...)
	}
}
