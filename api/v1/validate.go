package v1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/robfig/cron/v3"
)

// Name limits. Service names are shorter than a DNS label allows so that the
// names derived from them (instances, containers, hosts) still fit.
const (
	MaxNameLength            = 63
	MaxServiceNameLength     = 40
	MaxEnvironmentNameLength = 40

	MaxReplicas                      = 1000
	MaxTerminationGracePeriodSeconds = 3600
	// MinMemory is the smallest memory limit a container can start with.
	MinMemory = 4 << 20
)

// Validate returns the first problem with obj as an *Error of kind Invalid
// whose Field is the path to fix, or nil. It accepts an object before or
// after SetDefaults: a field left at zero where a default exists is fine.
func Validate(obj Object) error {
	tm := obj.GetTypeMeta()
	if tm.APIVersion != "" && tm.APIVersion != APIVersion {
		return FieldError("apiVersion", "unsupported apiVersion %q; expected %q", tm.APIVersion, APIVersion)
	}
	kind := kindOf(obj)
	if kind == "" {
		return Invalid("cannot validate a %T", obj)
	}
	if tm.Kind != "" && tm.Kind != kind {
		return FieldError("kind", "kind %q does not match the object, a %s", tm.Kind, kind)
	}
	switch o := obj.(type) {
	case *Environment:
		return validateEnvironment(o)
	case *Service:
		return validateService(o)
	case *Function:
		return validateFunction(o)
	case *Topic:
		return validateTopic(o)
	case *Workflow:
		return validateWorkflow(o)
	case *Revision:
		if err := validateMeta(&o.Metadata, MaxNameLength); err != nil {
			return err
		}
		return validateTemplate(&o.Spec.Template, "spec.template")
	}
	return validateMeta(obj.GetMetadata(), MaxNameLength)
}

// kindOf names the kind of the Go type of obj, whatever its TypeMeta says.
func kindOf(obj Object) string {
	switch obj.(type) {
	case *Environment:
		return KindEnvironment
	case *Service:
		return KindService
	case *Function:
		return KindFunction
	case *Topic:
		return KindTopic
	case *Workflow:
		return KindWorkflow
	case *Revision:
		return KindRevision
	case *Instance:
		return KindInstance
	case *Event:
		return KindEvent
	}
	return ""
}

func validateEnvironment(e *Environment) error {
	m := &e.Metadata
	if msg := nameProblem(m.Name, MaxEnvironmentNameLength); msg != "" {
		return FieldError("metadata.name", "%s", msg)
	}
	if m.Environment != "" {
		return FieldError("metadata.environment", "an Environment is not inside another environment; remove metadata.environment")
	}
	if err := validateLabels(m.Labels); err != nil {
		return err
	}
	for i, from := range e.Spec.AllowFrom {
		if msg := nameProblem(from, MaxEnvironmentNameLength); msg != "" {
			return FieldError(fmt.Sprintf("spec.allowFrom[%d]", i), "environment %s", msg)
		}
	}
	if err := validateQuota(e.Spec.Quota); err != nil {
		return err
	}
	return validateLimitRange(e.Spec.Limits)
}

func validateService(s *Service) error {
	if err := validateMeta(&s.Metadata, MaxServiceNameLength); err != nil {
		return err
	}
	if err := notReserved(s.Metadata.Name); err != nil {
		return err
	}
	spec := &s.Spec
	if r := spec.Replicas; r != nil && (*r < 0 || *r > MaxReplicas) {
		return FieldError("spec.replicas", "%d is out of range: use 0 to %d", *r, MaxReplicas)
	}
	if err := validateTemplate(&spec.Template, "spec"); err != nil {
		return err
	}
	surge, unavailable := int32(DefaultMaxSurge), int32(DefaultMaxUnavailable)
	if p := spec.Strategy.MaxSurge; p != nil {
		surge = *p
	}
	if p := spec.Strategy.MaxUnavailable; p != nil {
		unavailable = *p
	}
	switch {
	case surge < 0:
		return FieldError("spec.strategy.maxSurge", "%d is negative", surge)
	case unavailable < 0:
		return FieldError("spec.strategy.maxUnavailable", "%d is negative", unavailable)
	case surge == 0 && unavailable == 0:
		return FieldError("spec.strategy", "maxSurge and maxUnavailable are both 0, so a rollout could never make progress; set one of them above 0")
	}
	if err := validateTraffic(spec.Traffic, s.Metadata.Name); err != nil {
		return err
	}
	if err := validateCanary(spec.Strategy.Canary, "spec.strategy.canary"); err != nil {
		return err
	}
	return validateRoute(spec.Route)
}

func validateRoute(r *Route) error {
	if r != nil {
		if msg := routeProblem(r.Path); msg != "" {
			return FieldError("spec.route.path", "%s", msg)
		}
	}
	return nil
}

func validateMeta(m *ObjectMeta, maxLen int) error {
	if msg := nameProblem(m.Name, maxLen); msg != "" {
		return FieldError("metadata.name", "%s", msg)
	}
	if m.Environment != "" {
		if msg := nameProblem(m.Environment, MaxEnvironmentNameLength); msg != "" {
			return FieldError("metadata.environment", "environment %s", msg)
		}
	}
	return validateLabels(m.Labels)
}

// nameProblem says what is wrong with a name, or "" when it is a valid DNS
// label of at most max characters starting with a letter.
func nameProblem(name string, max int) string {
	const rule = "use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
	if name == "" {
		return "name is required"
	}
	if len(name) > max {
		return fmt.Sprintf("name %q is %d characters long; at most %d are allowed", name, len(name), max)
	}
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			return fmt.Sprintf("name %q must be lowercase: %s", name, rule)
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Sprintf("name %q contains %q: %s", name, c, rule)
		}
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return fmt.Sprintf("name %q must start with a letter: %s", name, rule)
	}
	if name[len(name)-1] == '-' {
		return fmt.Sprintf("name %q must end with a letter or digit: %s", name, rule)
	}
	return ""
}

// validateLabels applies Kubernetes' label rules, so labels carry over to
// the Kubernetes backend unchanged.
func validateLabels(labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field := "metadata.labels." + k
		if msg := labelKeyProblem(k); msg != "" {
			return FieldError(field, "label key %q %s", k, msg)
		}
		if v := labels[k]; v != "" {
			if msg := labelSegmentProblem(v); msg != "" {
				return FieldError(field, "label value %q %s", v, msg)
			}
		}
	}
	return nil
}

func labelKeyProblem(k string) string {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		return labelSegmentProblem(k)
	}
	if prefix == "" || len(prefix) > 253 {
		return "has a prefix that is not a DNS subdomain of at most 253 characters"
	}
	for _, part := range strings.Split(prefix, ".") {
		if !isSubdomainPart(part) {
			return fmt.Sprintf("has an invalid prefix %q: use a lowercase DNS subdomain such as example.com", prefix)
		}
	}
	return labelSegmentProblem(name)
}

// isSubdomainPart reports whether s is one dot-separated part of a DNS
// subdomain: unlike a resource name it may start with a digit.
func isSubdomainPart(s string) bool {
	if s == "" || len(s) > MaxNameLength || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func labelSegmentProblem(s string) string {
	const rule = "must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	if s == "" || len(s) > 63 {
		return rule
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return rule
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return rule
		}
	}
	return ""
}

func validateTemplate(t *Template, p string) error {
	field := func(name string) string { return p + "." + name }
	if err := validateImage(t.Image, field("image")); err != nil {
		return err
	}
	for i, c := range t.Command {
		if strings.IndexByte(c, 0) >= 0 {
			return FieldError(fmt.Sprintf("%s[%d]", field("command"), i), "contains a NUL byte")
		}
	}
	for i, a := range t.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return FieldError(fmt.Sprintf("%s[%d]", field("args"), i), "contains a NUL byte")
		}
	}
	if msg := portProblem(t.Port); msg != "" {
		return FieldError(field("port"), "%s", msg)
	}
	if err := validateEnv(t.Env, field("env")); err != nil {
		return err
	}
	if err := validateValueRefs(t, p); err != nil {
		return err
	}
	if err := validateResources(&t.Resources, field("resources")); err != nil {
		return err
	}
	if err := validateProbe(t.ReadinessProbe, field("readinessProbe"), false); err != nil {
		return err
	}
	if err := validateProbe(t.LivenessProbe, field("livenessProbe"), true); err != nil {
		return err
	}
	if err := validateVolumes(t.Volumes, field("volumes")); err != nil {
		return err
	}
	if g := t.TerminationGracePeriodSeconds; g != nil && (*g < 0 || *g > MaxTerminationGracePeriodSeconds) {
		return FieldError(field("terminationGracePeriodSeconds"), "%d is out of range: use 0 to %d seconds", *g, MaxTerminationGracePeriodSeconds)
	}
	return nil
}

func validateImage(image, field string) error {
	if image == "" {
		return FieldError(field, "image is required, e.g. nginx:1.27 or registry.example.com/team/app:v2")
	}
	if strings.ContainsFunc(image, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return FieldError(field, "image %q contains a space or control character", image)
	}
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return FieldError(field, "image %q is not a valid image reference: %v", image, err)
	}
	return nil
}

// portProblem accepts 0, which SetDefaults replaces.
func portProblem(port int32) string {
	if port < 0 || port > 65535 {
		return fmt.Sprintf("port %d is out of range: use 1 to 65535", port)
	}
	return ""
}

func validateEnv(env []EnvVar, p string) error {
	seen := map[string]int{}
	for i, e := range env {
		field := fmt.Sprintf("%s[%d].name", p, i)
		if e.Name == "" {
			return FieldError(field, "name is required")
		}
		if !isCIdentifier(e.Name) {
			return FieldError(field, "%q is not a valid variable name: use letters, digits and '_', not starting with a digit", e.Name)
		}
		if e.Name == "PORT" || strings.HasPrefix(e.Name, "BERTH_") {
			return FieldError(field, "%s is set by the platform (PORT comes from port); choose another name", e.Name)
		}
		if j, ok := seen[e.Name]; ok {
			return FieldError(field, "%s is already set by %s[%d]", e.Name, p, j)
		}
		seen[e.Name] = i
		if strings.IndexByte(e.Value, 0) >= 0 {
			return FieldError(fmt.Sprintf("%s[%d].value", p, i), "contains a NUL byte")
		}
	}
	return nil
}

func isCIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func validateResources(r *Resources, p string) error {
	if r.CPU != "" {
		m, err := ParseCPU(r.CPU)
		if err != nil {
			return FieldError(p+".cpu", "%v", err)
		}
		if m <= 0 {
			return FieldError(p+".cpu", "must be more than 0; leave it out for the environment's default")
		}
	}
	if r.Memory != "" {
		b, err := ParseMemory(r.Memory)
		if err != nil {
			return FieldError(p+".memory", "%v", err)
		}
		if b < MinMemory {
			return FieldError(p+".memory", "%s is below the minimum of %s; leave it out for the environment's default", r.Memory, FormatMemory(MinMemory))
		}
	}
	if r.Pids != 0 && (r.Pids < MinPids || r.Pids > MaxPids) {
		return FieldError(p+".pids", "%d is out of range: use %d to %d (processes and threads per instance), or leave it out for the environment's default", r.Pids, MinPids, MaxPids)
	}
	return nil
}

func validateProbe(pr *Probe, p string, liveness bool) error {
	if pr == nil {
		return nil
	}
	switch {
	case pr.HTTPGet == nil && pr.TCPSocket == nil:
		return FieldError(p, "set one of httpGet or tcpSocket")
	case pr.HTTPGet != nil && pr.TCPSocket != nil:
		return FieldError(p, "set only one of httpGet or tcpSocket, not both")
	}
	if h := pr.HTTPGet; h != nil {
		if h.Path != "" && (!strings.HasPrefix(h.Path, "/") || strings.ContainsFunc(h.Path, isSpaceOrControl)) {
			return FieldError(p+".httpGet.path", "%q must start with '/' and contain no spaces", h.Path)
		}
		if msg := portProblem(h.Port); msg != "" {
			return FieldError(p+".httpGet.port", "%s", msg)
		}
	}
	if s := pr.TCPSocket; s != nil {
		if msg := portProblem(s.Port); msg != "" {
			return FieldError(p+".tcpSocket.port", "%s", msg)
		}
	}
	for _, n := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds},
		{"periodSeconds", pr.PeriodSeconds},
		{"timeoutSeconds", pr.TimeoutSeconds},
		{"failureThreshold", pr.FailureThreshold},
		{"successThreshold", pr.SuccessThreshold},
	} {
		// Zero is "use the default"; the defaults are all at least 1
		// where 1 is the minimum.
		if n.v < 0 {
			return FieldError(p+"."+n.name, "%d is negative", n.v)
		}
	}
	if liveness && pr.SuccessThreshold > 1 {
		return FieldError(p+".successThreshold", "must be 1 for a liveness probe: one success shows the process is alive")
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// reservedMounts are kernel filesystems the runtime mounts itself; a volume
// over them breaks the container.
var reservedMounts = []string{"/proc", "/sys", "/dev"}

func validateVolumes(vols []VolumeMount, p string) error {
	names := map[string]int{}
	paths := map[string]int{}
	for i, v := range vols {
		at := fmt.Sprintf("%s[%d]", p, i)
		if msg := nameProblem(v.Name, MaxNameLength); msg != "" {
			return FieldError(at+".name", "volume %s", msg)
		}
		if j, ok := names[v.Name]; ok {
			return FieldError(at+".name", "volume %q is already mounted by %s[%d]", v.Name, p, j)
		}
		names[v.Name] = i
		mp := v.MountPath
		switch {
		case mp == "":
			return FieldError(at+".mountPath", "mountPath is required")
		case !path.IsAbs(mp):
			return FieldError(at+".mountPath", "%q must be an absolute path", mp)
		case strings.ContainsFunc(mp, isSpaceOrControl) || strings.Contains(mp, ":"):
			return FieldError(at+".mountPath", "%q must not contain spaces, control characters or ':'", mp)
		case slices.Contains(strings.Split(mp, "/"), ".."):
			return FieldError(at+".mountPath", "%q must not contain '..'", mp)
		}
		clean := path.Clean(mp)
		if clean == "/" {
			return FieldError(at+".mountPath", "cannot mount a volume over the root directory")
		}
		for _, r := range reservedMounts {
			if clean == r || strings.HasPrefix(clean, r+"/") {
				return FieldError(at+".mountPath", "%q is under %s, which the runtime provides", mp, r)
			}
		}
		if j, ok := paths[clean]; ok {
			return FieldError(at+".mountPath", "%q is already used by %s[%d]", mp, p, j)
		}
		paths[clean] = i
	}
	return nil
}

// routeProblem says what is wrong with a route path. /api/ is the gateway's
// own, so a workload cannot claim it.
func routeProblem(p string) string {
	switch {
	case p == "":
		return "path is required, e.g. /orders"
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q must start with '/'", p)
	case strings.ContainsFunc(p, isSpaceOrControl):
		return fmt.Sprintf("%q must not contain spaces or control characters", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Sprintf("%q must be a path only, without '?' or '#'", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("%q must not contain '..'", p)
	case p == "/api" || strings.HasPrefix(p, "/api/"):
		return fmt.Sprintf("%q is reserved: paths under /api/ belong to the platform", p)
	}
	return ""
}

// Function and Topic limits.
const (
	// MaxFunctionNameLength matches services': instance and host names
	// are derived from it the same way.
	MaxFunctionNameLength = 40
	MaxConcurrency        = 1000
	MaxScale              = 1000
	MaxAsyncRetries       = 100

	MinIdleTimeout     = time.Second
	MinFunctionTimeout = time.Second
	MaxFunctionTimeout = 15 * time.Minute
	MinAsyncBackoff    = 10 * time.Millisecond
	MinTopicRetention  = time.Minute
	// MinCronInterval bounds "@every": the scheduler fires at most once a
	// second.
	MinCronInterval = time.Second
)

func validateFunction(f *Function) error {
	if err := validateMeta(&f.Metadata, MaxFunctionNameLength); err != nil {
		return err
	}
	if err := notReserved(f.Metadata.Name); err != nil {
		return err
	}
	spec := &f.Spec
	// Checked before the template so that the message says why, rather
	// than what is wrong with one volume.
	if len(spec.Volumes) > 0 {
		return FieldError("spec.volumes", "functions are stateless; use a Service for state")
	}
	if err := validateTemplate(&spec.Template, "spec"); err != nil {
		return err
	}
	if err := validateRuntime(spec); err != nil {
		return err
	}
	// Zero is "use the default" here; Decode refuses a written 0.
	if c := spec.Concurrency; c < 0 || c > MaxConcurrency {
		return FieldError("spec.concurrency", "%d is out of range: must be at least 1 and at most %d", c, MaxConcurrency)
	}
	if err := validateScale(&spec.Scale); err != nil {
		return err
	}
	if err := checkDuration(spec.Timeout, "spec.timeout", MinFunctionTimeout, MaxFunctionTimeout); err != nil {
		return err
	}
	if err := validateRoute(spec.Route); err != nil {
		return err
	}
	if err := validateTraffic(spec.Traffic, f.Metadata.Name); err != nil {
		return err
	}
	if err := validateCanary(spec.Strategy.Canary, "spec.strategy.canary"); err != nil {
		return err
	}
	topics := map[string]int{}
	for i, tr := range spec.Triggers {
		at := fmt.Sprintf("spec.triggers[%d]", i)
		switch {
		case tr.Cron == "" && tr.Topic == "":
			return FieldError(at, "set one of cron or topic")
		case tr.Cron != "" && tr.Topic != "":
			return FieldError(at, "set only one of cron or topic, not both: make two triggers")
		case tr.Cron != "":
			if msg := cronProblem(tr.Cron); msg != "" {
				return FieldError(at+".cron", "%s", msg)
			}
			if strings.IndexByte(tr.Data, 0) >= 0 {
				return FieldError(at+".data", "contains a NUL byte")
			}
		default:
			if msg := nameProblem(tr.Topic, MaxNameLength); msg != "" {
				return FieldError(at+".topic", "topic %s", msg)
			}
			if tr.Data != "" {
				return FieldError(at+".data", "data is the body of a cron trigger's calls; a topic trigger sends each message as the body")
			}
			if j, ok := topics[tr.Topic]; ok {
				return FieldError(at+".topic", "topic %q is already a trigger (spec.triggers[%d])", tr.Topic, j)
			}
			topics[tr.Topic] = i
		}
	}
	return validateAsync(&spec.Async, topics)
}

// Function runtimes.
const (
	RuntimeContainer = "container"
	RuntimeWasm      = "wasm"
)

// IsWasm reports a function whose image is a WebAssembly module run
// in-process.
func (f *Function) IsWasm() bool { return f.Spec.Runtime == RuntimeWasm }

// validateRuntime checks what a Wasm function cannot have: a module is
// no process, so it has no command, probes or grace period to speak of;
// its port is the gateway's business.
func validateRuntime(spec *FunctionSpec) error {
	switch spec.Runtime {
	case "", RuntimeContainer:
		return nil
	case RuntimeWasm:
	default:
		return FieldError("spec.runtime", "unknown runtime %q: use %q (an OCI image serving HTTP, the default) or %q (a WebAssembly module)", spec.Runtime, RuntimeContainer, RuntimeWasm)
	}
	switch {
	case len(spec.Command) > 0:
		return FieldError("spec.command", "a Wasm function runs its module's _start; use args for its arguments")
	case spec.ReadinessProbe != nil:
		return FieldError("spec.readinessProbe", "a Wasm function has no probes: each request gets a fresh instance")
	case spec.LivenessProbe != nil:
		return FieldError("spec.livenessProbe", "a Wasm function has no probes: each request gets a fresh instance")
	}
	return nil
}

func validateScale(sc *FunctionScale) error {
	lo, hi := int32(DefaultScaleMin), int32(DefaultScaleMax)
	if sc.Min != nil {
		lo = *sc.Min
	}
	if sc.Max != nil {
		hi = *sc.Max
	}
	switch {
	case lo < 0:
		return FieldError("spec.scale.min", "%d is negative; use 0 to scale to zero", lo)
	case hi < 1:
		return FieldError("spec.scale.max", "%d is out of range: must be at least 1", hi)
	case hi > MaxScale:
		return FieldError("spec.scale.max", "%d is out of range: at most %d", hi, MaxScale)
	case lo > hi:
		return FieldError("spec.scale.min", "%d is greater than spec.scale.max %d", lo, hi)
	}
	if u := sc.TargetUtilization; u != nil && !(*u > 0 && *u <= 1) {
		return FieldError("spec.scale.targetUtilization", "%g is out of range: use more than 0 and at most 1 (0.7 aims for 70%% of concurrency)", *u)
	}
	return checkDuration(sc.IdleTimeout, "spec.scale.idleTimeout", MinIdleTimeout, 0)
}

func validateAsync(a *Async, triggerTopics map[string]int) error {
	if r := a.MaxRetries; r != nil && (*r < 0 || *r > MaxAsyncRetries) {
		return FieldError("spec.async.maxRetries", "%d is out of range: use 0 to %d", *r, MaxAsyncRetries)
	}
	if err := checkDuration(a.Backoff, "spec.async.backoff", MinAsyncBackoff, 0); err != nil {
		return err
	}
	if t := a.DeadLetterTopic; t != "" {
		if msg := nameProblem(t, MaxNameLength); msg != "" {
			return FieldError("spec.async.deadLetterTopic", "topic %s", msg)
		}
		if i, ok := triggerTopics[t]; ok {
			return FieldError("spec.async.deadLetterTopic", "%q is also this function's trigger (spec.triggers[%d]): a failed message would be delivered to it again", t, i)
		}
	}
	return nil
}

func validateTopic(t *Topic) error {
	if err := validateMeta(&t.Metadata, MaxNameLength); err != nil {
		return err
	}
	return checkDuration(t.Spec.Retention, "spec.retention", MinTopicRetention, 0)
}

// checkDuration accepts "" (the default) or a Go duration of at least lo
// and, when hi > 0, at most hi.
func checkDuration(s, field string, lo, hi time.Duration) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return FieldError(field, "%q is not a duration: write it like \"30s\", \"5m\" or \"1h30m\"", s)
	}
	switch {
	case d <= 0:
		return FieldError(field, "%s must be positive", s)
	case d < lo:
		return FieldError(field, "%s is too short: at least %s", s, lo)
	case hi > 0 && d > hi:
		return FieldError(field, "%s is too long: at most %s", s, hi)
	}
	return nil
}

// cronProblem says what is wrong with a schedule, or "". Schedules are in
// UTC, so robfig/cron's TZ= prefix (which would also read the host's zone
// files) is refused.
func cronProblem(spec string) string {
	const forms = `use 5 fields (minute hour day-of-month month day-of-week, e.g. "*/5 * * * *") or a descriptor such as "@hourly" or "@every 1m"`
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		return fmt.Sprintf("%q: schedules are in UTC; remove the time zone prefix", spec)
	}
	if rest, ok := strings.CutPrefix(trimmed, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return fmt.Sprintf("%q: %q is not a duration; write it like \"@every 1m\"", spec, strings.TrimSpace(rest))
		}
		if d < MinCronInterval {
			return fmt.Sprintf("%q: the interval must be at least %s", spec, MinCronInterval)
		}
		return ""
	}
	sched, err := cron.ParseStandard(trimmed)
	if err != nil {
		return fmt.Sprintf("%q is not a valid schedule (%v): %s", spec, err, forms)
	}
	// "0 0 30 2 *" parses but never comes: the user meant something else.
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return fmt.Sprintf("%q never fires", spec)
	}
	return ""
}

// MaxDefinitionBytes bounds a workflow's definition as stored JSON.
const MaxDefinitionBytes = 256 << 10

// validateWorkflow checks the envelope of the definition only: that it is
// a States Language object with StartAt and States. The full check (state
// types, transitions, paths) needs the interpreter, which the API server
// runs on apply; api/v1 imports nothing internal.
func validateWorkflow(w *Workflow) error {
	if err := validateMeta(&w.Metadata, MaxNameLength); err != nil {
		return err
	}
	const field = "spec.definition"
	def := bytes.TrimSpace(w.Spec.Definition)
	if len(def) == 0 || string(def) == "null" {
		return FieldError(field, "a workflow needs a definition: a States Language object with StartAt and States")
	}
	if len(def) > MaxDefinitionBytes {
		return FieldError(field, "the definition is %d bytes; at most %d", len(def), MaxDefinitionBytes)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(def, &top); err != nil {
		return FieldError(field, "expected an object with StartAt and States: %v", err)
	}
	var start string
	if raw, ok := top["StartAt"]; !ok {
		return FieldError(field+".StartAt", "missing: name the first state")
	} else if err := json.Unmarshal(raw, &start); err != nil || start == "" {
		return FieldError(field+".StartAt", "expected the name of a state")
	}
	var states map[string]json.RawMessage
	if raw, ok := top["States"]; !ok {
		return FieldError(field+".States", "missing: the states, an object of state name to state")
	} else if err := json.Unmarshal(raw, &states); err != nil || states == nil {
		return FieldError(field+".States", "expected an object of state name to state")
	}
	if len(states) == 0 {
		return FieldError(field+".States", "a workflow needs at least one state")
	}
	return nil
}
