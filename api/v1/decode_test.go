package v1

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *v1.Error", err, err)
	}
	return e
}

func TestDecodeExampleService(t *testing.T) {
	objs, err := Decode("orders-service.yaml", mustRead(t, "orders-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	s, ok := objs[0].(*Service)
	if !ok {
		t.Fatalf("got %T, want *Service", objs[0])
	}
	SetDefaults(s)
	if err := Validate(s); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	if s.Kind != KindService || s.APIVersion != APIVersion {
		t.Errorf("TypeMeta = %+v", s.TypeMeta)
	}
	if s.Metadata.Labels["tier"] != "1" || s.Metadata.Labels["app.kubernetes.io/component"] != "backend" {
		t.Errorf("labels = %v", s.Metadata.Labels)
	}
	// An unquoted number in an env value is the text that was written.
	if got := s.Spec.Env[1]; got.Name != "MAX_CONNECTIONS" || got.Value != "64" {
		t.Errorf("env[1] = %+v", got)
	}
	if *s.Spec.Replicas != 3 || s.Spec.Port != 9000 || *s.Spec.TerminationGracePeriodSeconds != 45 {
		t.Errorf("replicas/port/grace = %d/%d/%d", *s.Spec.Replicas, s.Spec.Port, *s.Spec.TerminationGracePeriodSeconds)
	}
	rp := s.Spec.ReadinessProbe
	if rp.HTTPGet.Path != "/healthz" || rp.HTTPGet.Port != 9000 || rp.PeriodSeconds != 5 || rp.TimeoutSeconds != 1 ||
		rp.FailureThreshold != 2 || rp.SuccessThreshold != 1 {
		t.Errorf("readiness probe after defaults = %+v %+v", rp, rp.HTTPGet)
	}
	if lp := s.Spec.LivenessProbe; lp.TCPSocket == nil || lp.TCPSocket.Port != 9000 || lp.InitialDelaySeconds != 10 {
		t.Errorf("liveness probe after defaults = %+v", lp)
	}
	if len(s.Spec.Volumes) != 2 || s.Spec.Volumes[1].MountPath != "/var/cache/orders" {
		t.Errorf("volumes = %+v", s.Spec.Volumes)
	}
	if *s.Spec.Strategy.MaxSurge != 1 || *s.Spec.Strategy.MaxUnavailable != 1 {
		t.Errorf("strategy = %d/%d", *s.Spec.Strategy.MaxSurge, *s.Spec.Strategy.MaxUnavailable)
	}
	if s.Spec.Route == nil || s.Spec.Route.Path != "/orders" || !s.Spec.Route.StripPrefix {
		t.Errorf("route = %+v", s.Spec.Route)
	}
}

func TestDecodeMultiDocument(t *testing.T) {
	objs, err := Decode("shop.yaml", mustRead(t, "shop.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		SetDefaults(o)
		if err := Validate(o); err != nil {
			t.Errorf("%s %s: %v", o.GetTypeMeta().Kind, o.GetMetadata().Name, err)
		}
		kinds = append(kinds, o.GetTypeMeta().Kind+"/"+o.GetMetadata().Name)
	}
	if got, want := strings.Join(kinds, " "), "Environment/staging Environment/dev Service/web Service/cart"; got != want {
		t.Fatalf("decoded %s, want %s", got, want)
	}
	web := objs[2].(*Service)
	if *web.Spec.Replicas != 1 || web.Spec.Port != 8080 || *web.Spec.TerminationGracePeriodSeconds != 30 ||
		*web.Spec.Strategy.MaxSurge != 1 || *web.Spec.Strategy.MaxUnavailable != 0 {
		t.Errorf("defaults not applied: %+v", web.Spec)
	}
	if env := objs[0].(*Environment); env.Metadata.Environment != "" || len(env.Spec.AllowFrom) != 1 {
		t.Errorf("environment = %+v", env)
	}
	cart := objs[3].(*Service)
	if cart.Spec.ReadinessProbe.HTTPGet.Port != 8081 {
		t.Errorf("an explicit probe port was overwritten: %d", cart.Spec.ReadinessProbe.HTTPGet.Port)
	}
}

func TestDecodeJSONList(t *testing.T) {
	objs, err := Decode("list.json", mustRead(t, "list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	s := objs[1].(*Service)
	// JSON escapes YAML does not know (\/ and surrogate pairs) still decode.
	if got, want := s.Spec.Env[0].Value, "héllo 😀 a/b"; got != want {
		t.Errorf("env value = %q, want %q", got, want)
	}
	if s.Spec.Resources.Memory != "1Gi" {
		t.Errorf("resources = %+v", s.Spec.Resources)
	}
}

func TestDecodeDocumentsSaysWhere(t *testing.T) {
	in := "---\n---\n" + svcHead + "spec: {image: a}\n---\n" +
		`{"kind": "List", "items": [{"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "a"}},
 {"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "b"}}]}`
	docs, err := DecodeDocuments("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, fmt.Sprintf("%s@%d%s", d.Object.GetMetadata().Name, d.Index, d.Path))
	}
	if strings.Join(got, " ") != "web@2 a@3items[0] b@3items[1]" {
		t.Errorf("documents = %v", got)
	}
}

func TestDecodeSkipsEmptyDocumentsAndIgnoresStatus(t *testing.T) {
	in := "---\n# nothing here\n---\n" + `apiVersion: berth.dev/v1
kind: Service
metadata: {name: web}
spec: {image: nginx}
status:
  readyReplicas: 3
  whatever: [1, 2]
---
`
	objs, err := Decode("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	if s := objs[0].(*Service); s.Status.ReadyReplicas != 0 {
		t.Errorf("status from a manifest was kept: %+v", s.Status)
	}
	objs, err = Decode("empty.yaml", []byte("# just a comment\n"))
	if err != nil || len(objs) != 0 {
		t.Errorf("comment-only file: %v, %v", objs, err)
	}
}

func TestDecodeMergeKeysAndAnchors(t *testing.T) {
	in := `apiVersion: berth.dev/v1
kind: Service
metadata: {name: a}
spec:
  image: nginx
  readinessProbe: &probe
    httpGet: {path: /ready}
  livenessProbe:
    <<: *probe
    periodSeconds: 20
`
	objs, err := Decode("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	lp := objs[0].(*Service).Spec.LivenessProbe
	if lp.HTTPGet == nil || lp.HTTPGet.Path != "/ready" || lp.PeriodSeconds != 20 {
		t.Errorf("liveness probe = %+v", lp)
	}
}

const svcHead = "apiVersion: berth.dev/v1\nkind: Service\nmetadata:\n  name: web\n"

const fnHead = "apiVersion: berth.dev/v1\nkind: Function\nmetadata:\n  name: fn\n"

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		doc   int
		field string
		msg   string
	}{
		{"unknown nested field with suggestion", svcHead + `spec:
  image: nginx
  readinessProbe:
    httpGet:
      pth: /healthz
`, 1, "spec.readinessProbe.httpGet.pth", `line 9: unknown field "pth"; did you mean "path"?`},
		{"unknown top-level field", svcHead + "sepc: {}\n", 1, "sepc", `line 5: unknown field "sepc"; did you mean "spec"?`},
		{"wrong case field", svcHead + "spec:\n  Image: nginx\n", 1, "spec.Image", `did you mean "image"?`},
		{"string for an integer", svcHead + "spec:\n  image: nginx\n  replicas: three\n", 1, "spec.replicas",
			`line 7: expected an integer, got "three"`},
		{"quoted integer", svcHead + "spec:\n  port: \"80\"\n", 1, "spec.port", `expected an integer, got "80"`},
		{"float for an integer", svcHead + "spec:\n  port: 80.5\n", 1, "spec.port", `expected an integer, got "80.5"`},
		{"int32 overflow", svcHead + "spec:\n  replicas: 4294967296\n", 1, "spec.replicas", "out of range"},
		{"string for a bool", svcHead + "spec:\n  route: {path: /x, stripPrefix: sure}\n", 1, "spec.route.stripPrefix",
			`expected true or false, got "sure"`},
		{"object for a string", svcHead + "spec:\n  image: {name: nginx}\n", 1, "spec.image", "expected a string, got an object"},
		{"scalar for a list", svcHead + "spec:\n  command: /bin/app\n", 1, "spec.command", `expected a list, got "/bin/app"`},
		{"null list item", svcHead + "spec:\n  args: [a, ~]\n", 1, "spec.args[1]", "expected a string, got null"},
		{"deep list index", svcHead + "spec:\n  env:\n    - name: A\n      value: b\n    - name: B\n      valu: c\n", 1,
			"spec.env[1].valu", `line 10: unknown field "valu"; did you mean "value"?`},
		{"duplicate key", svcHead + "spec:\n  image: nginx\n  port: 80\n  image: redis\n", 1, "spec.image",
			`line 8: duplicate key "image" (first at line 6)`},
		{"duplicate label", svcHead + "  labels:\n    a: x\n    a: y\n", 1, "metadata.labels.a", "duplicate key"},
		{"unclosed flow list", svcHead + "spec:\n  image: [nginx\n", 1, "", "line 6: did not find expected ',' or ']'"},
		{"bad indentation", svcHead + "spec:\n  image: nginx\n port: 80\n", 1, "", "line 7: did not find expected key"},
		{"tab indentation", svcHead + "spec:\n\timage: nginx\n", 1, "", "line 6: found character that cannot start any token"},
		{"mapping in a scalar", svcHead + "spec:\n  image: a: b\n", 1, "", "line 6: mapping values are not allowed"},
		{"missing apiVersion", "kind: Service\nmetadata: {name: a}\n", 1, "apiVersion", "missing apiVersion"},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Deployment\n", 1, "apiVersion", `unsupported apiVersion "apps/v1"`},
		{"unknown kind", "apiVersion: berth.dev/v1\nkind: Deployment\n", 1, "kind",
			`line 2: unknown kind "Deployment"; known kinds: Environment, Function, Service, Topic`},
		{"lowercase kind", "apiVersion: berth.dev/v1\nkind: service\n", 1, "kind", `did you mean "Service"?`},
		{"missing kind", "apiVersion: berth.dev/v1\nmetadata: {name: a}\n", 1, "kind", "missing kind; known kinds: Environment, Function, Service, Topic"},
		{"platform kind in a manifest", "apiVersion: berth.dev/v1\nkind: Instance\n", 1, "kind", `unknown kind "Instance"`},
		{"scalar document", "hello\n", 1, "", `expected an object with apiVersion and kind, got "hello"`},
		{"error in document 3", svcHead + "spec: {image: a}\n---\n" + svcHead + "spec: {image: b}\n---\n" + svcHead +
			"spec: {image: c, replicas: x}\n", 3, "spec.replicas", "line 17: expected an integer"},
		{"malformed yaml in document 2", svcHead + "spec: {image: a}\n---\n" + svcHead + "spec:\n  image: a\n    port: 80\n", 2, "",
			"line 13: mapping values are not allowed"},
		{"empty documents count", "---\n---\n" + svcHead + "spec: {imag: a}\n", 2, "spec.imag", `did you mean "image"?`},
		{"JSON unknown field", "{\n  \"apiVersion\": \"berth.dev/v1\",\n  \"kind\": \"Service\",\n  \"metadata\": {\"name\": \"a\"},\n" +
			"  \"spec\": {\n    \"image\": \"nginx\",\n    \"replica\": 2\n  }\n}\n", 1, "spec.replica", `line 7: unknown field "replica"; did you mean "replicas"?`},
		{"JSON duplicate key", `{"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "a", "name": "b"}}`,
			1, "metadata.name", "duplicate key"},
		{"List item error", `{"kind": "List", "items": [{"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "a"}},
 {"apiVersion": "berth.dev/v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"imagee": "x"}}]}`,
			1, "items[1].spec.imagee", `line 2: unknown field "imagee"`},
		{"List unknown field", `{"kind": "List", "itemz": []}`, 1, "itemz", `unknown field "itemz"; did you mean "items"?`},
		{"bad time", "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: a, creationTimestamp: yesterday}\n", 1,
			"metadata.creationTimestamp", "expected an RFC 3339 time"},
		{"negative resourceVersion", "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: a, resourceVersion: -1}\n", 1,
			"metadata.resourceVersion", "expected a non-negative integer"},
		{"non-string key", svcHead + "spec:\n  ? [a]\n  : b\n", 1, "spec", "expected a string key"},
		{"merge of a scalar", svcHead + "spec:\n  <<: 3\n", 1, "spec", "merge key"},
		{"function concurrency 0", fnHead + "spec:\n  image: a\n  concurrency: 0\n", 1, "spec.concurrency",
			"line 7: 0 is out of range: must be at least 1"},
		{"service pids 0", svcHead + "spec:\n  image: a\n  resources: {pids: 0}\n", 1, "spec.resources.pids",
			"line 7: 0 is out of range: every instance has a pids limit"},
		{"environment max pids 0", "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: a}\nspec:\n  limits:\n    max: {pids: 0}\n", 1,
			"spec.limits.max.pids", "every instance has a pids limit"},
		{"function unknown field", fnHead + "spec:\n  image: a\n  scale: {maxx: 3}\n", 1, "spec.scale.maxx", `did you mean "max"?`},
		{"trigger with a typo", fnHead + "spec:\n  image: a\n  triggers: [{crom: '@hourly'}]\n", 1, "spec.triggers[0].crom", `did you mean "cron"?`},
		{"utilization as a string", fnHead + "spec:\n  image: a\n  scale: {targetUtilization: high}\n", 1,
			"spec.scale.targetUtilization", `expected a number, got "high"`},
		{"topic unknown field", "apiVersion: berth.dev/v1\nkind: Topic\nmetadata: {name: t}\nspec: {retension: 1h}\n", 1,
			"spec.retension", `did you mean "retention"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("in.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("decoded %d objects, want an error", len(objs))
			}
			e := asError(t, err)
			if e.Kind != ErrInvalid || e.File != "in.yaml" || e.Document != tt.doc || e.Field != tt.field ||
				!strings.Contains(e.Message, tt.msg) {
				t.Errorf("got %#v\nwant kind Invalid, document %d, field %q, message containing %q", e, tt.doc, tt.field, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "in.yaml (document ") {
				t.Errorf("Error() = %q does not say where", err)
			}
		})
	}
}

// Merge keys over anchors expand exponentially; such an input must fail
// fast with an error, not exhaust memory.
func TestDecodeAliasBomb(t *testing.T) {
	in := svcHead + "spec:\n  image: nginx\n  env:\n    - &a0 {name: A, value: b}\n"
	for i := 1; i < 10; i++ {
		in += fmt.Sprintf("    - &a%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	_, err := Decode("bomb.yaml", []byte(in))
	if e := asError(t, err); e.Kind != ErrInvalid || !strings.Contains(e.Message, "too large") {
		t.Fatalf("got %v", err)
	}
	// An alias inside its own anchor.
	_, err = Decode("loop.yaml", []byte(svcHead+"spec:\n  command: &a [*a]\n"))
	if e := asError(t, err); e.Kind != ErrInvalid || e.Field != "spec.command[0]" {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeObject(t *testing.T) {
	in := `{"apiVersion": "berth.dev/v1", "kind": "Instance",
  "metadata": {"name": "web-1-abcde", "environment": "default", "resourceVersion": 7, "creationTimestamp": "2025-01-02T03:04:05Z"},
  "spec": {"owner": "web", "ownerKind": "Service", "revision": 1},
  "status": {"name": "web-1-abcde", "revision": 1, "phase": "Running", "ready": true, "restarts": 0, "ip": "10.88.0.5"}}`
	obj, err := DecodeObject([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	inst := obj.(*Instance)
	if !inst.Status.Ready || inst.Status.IP != "10.88.0.5" || inst.Metadata.ResourceVersion != 7 ||
		inst.Metadata.CreationTimestamp.Year() != 2025 {
		t.Errorf("instance = %+v", inst)
	}

	for _, tt := range []struct{ in, field, msg string }{
		{`{"apiVersion": "berth.dev/v1", "kind": "Instance", "metadata": {"name": "a"}, "status": {"redy": true}}`,
			"status.redy", `did you mean "ready"?`},
		{`{"apiVersion": "berth.dev/v1", "kind": "Widget"}`, "kind", "Environment, Event, Function, Instance, Revision, Service, Topic"},
		{`[]`, "", "expected an object"},
		{``, "", "empty body"},
		{"{\"kind\": \"Service\"}\n---\n{}", "", "more than one"},
	} {
		_, err := DecodeObject([]byte(tt.in))
		if err == nil {
			t.Errorf("DecodeObject(%s) succeeded", tt.in)
			continue
		}
		e := asError(t, err)
		if e.Kind != ErrInvalid || e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("DecodeObject(%s) = %#v, want field %q and %q", tt.in, e, tt.field, tt.msg)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, file := range []string{"orders-service.yaml", "shop.yaml", "list.json", "functions.yaml"} {
		objs, err := Decode(file, mustRead(t, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			SetDefaults(o)
			for _, format := range []string{"json", "yaml"} {
				b, err := Encode(o, format)
				if err != nil {
					t.Fatal(err)
				}
				again, err := Decode("encoded", b)
				if err != nil {
					t.Fatalf("%s as %s does not decode: %v\n%s", file, format, err, b)
				}
				if len(again) != 1 || !sameJSON(t, o, again[0]) {
					t.Errorf("%s as %s does not round-trip:\n%s", file, format, b)
				}
			}
		}
	}
	if _, err := Encode(&Environment{}, "xml"); !IsInvalid(err) {
		t.Errorf("Encode as xml: %v, want Invalid", err)
	}
	// -o yaml shows status, with the field names of the JSON API.
	s := &Service{Metadata: ObjectMeta{Name: "web"}, Spec: ServiceSpec{Template: Template{Image: "nginx"}},
		Status: ServiceStatus{ReadyReplicas: 2}}
	SetDefaults(s)
	b, err := Encode(s, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: berth.dev/v1\n", "kind: Service\n", "  readyReplicas: 2\n", "  terminationGracePeriodSeconds: 30\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("yaml output lacks %q:\n%s", want, b)
		}
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(ja) != string(jb) {
		t.Logf("first:  %s\nsecond: %s", ja, jb)
		return false
	}
	return true
}

// Strings that YAML reads specially must survive -o yaml and -o json and
// apply again unchanged, as env values, command words and label keys.
func TestEncodeRoundTripAwkwardStrings(t *testing.T) {
	vals := []string{"", "null", "~", "0x10", "1e3", "yes", "on", "2024-01-01", " lead", "trail ", "a\nb", "a\r\nb",
		"\n", "a  \n  b", "\t", "ab\tc", "#c", "- x", "a: b", "<<", "!tag", "&a", "*a", "%x", "@x", "`x", "|", ">", "---",
		"...", "?", "{", "[", "\\", `"`, "'", "\u0085", "\u2028", "\ufeff", "\x00", "\x7f", "\x1b[0m", "\u00a0", "é", "😀"}
	for _, v := range vals {
		for _, asKey := range []bool{false, true} {
			s := &Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: ObjectMeta{Name: "a"}}
			if asKey {
				s.Metadata.Labels = map[string]string{v: v}
			} else {
				s.Spec.Env = []EnvVar{{Name: "A", Value: v}}
				s.Spec.Command = []string{v}
			}
			for _, format := range []string{"json", "yaml"} {
				b, err := Encode(s, format)
				if err != nil {
					t.Fatal(err)
				}
				again, err := Decode("x", b)
				if err != nil {
					t.Errorf("%q (label key %v) as %s: %v\n%s", v, asKey, format, err, b)
					continue
				}
				if len(again) != 1 || !sameJSON(t, s, again[0]) {
					t.Errorf("%q (label key %v) as %s does not round-trip:\n%s", v, asKey, format, b)
				}
			}
		}
	}
}

func TestDecodeFunctionsExample(t *testing.T) {
	objs, err := Decode("functions.yaml", mustRead(t, "functions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		SetDefaults(o)
		if err := Validate(o); err != nil {
			t.Errorf("%s %s: %v", o.GetTypeMeta().Kind, o.GetMetadata().Name, err)
		}
		kinds = append(kinds, o.GetTypeMeta().Kind+"/"+o.GetMetadata().Name)
	}
	if got, want := strings.Join(kinds, " "), "Topic/orders Topic/orders-failed Function/checkout Function/fulfil Function/report"; got != want {
		t.Fatalf("decoded %s, want %s", got, want)
	}
	if r := objs[0].(*Topic).Spec.Retention; r != "72h" {
		t.Errorf("orders retention %q", r)
	}
	if r := objs[1].(*Topic).Spec.Retention; r != DefaultTopicRetention {
		t.Errorf("default retention %q, want %q", r, DefaultTopicRetention)
	}

	checkout := objs[2].(*Function).Spec
	if checkout.Concurrency != 20 || *checkout.Scale.Min != 0 || *checkout.Scale.Max != 50 || checkout.Scale.IdleTimeout != "5m" ||
		*checkout.Scale.TargetUtilization != 0.8 || checkout.Timeout != "10s" || checkout.Route.Path != "/checkout" ||
		!checkout.Route.StripPrefix {
		t.Errorf("checkout spec = %+v scale %+v", checkout, checkout.Scale)
	}

	fulfil := objs[3].(*Function).Spec
	if len(fulfil.Triggers) != 2 || fulfil.Triggers[0].Topic != "orders" || fulfil.Triggers[1].Cron != "*/15 * * * *" ||
		fulfil.Triggers[1].Data != `{"sweep": true}` {
		t.Errorf("fulfil triggers = %+v", fulfil.Triggers)
	}
	if *fulfil.Async.MaxRetries != 5 || fulfil.Async.Backoff != "500ms" || fulfil.Async.DeadLetterTopic != "orders-failed" {
		t.Errorf("fulfil async = %+v", fulfil.Async)
	}
	if fulfil.ReadinessProbe.HTTPGet.Port != 9000 || *fulfil.Scale.Min != 1 {
		t.Errorf("fulfil probe port %d, min %d", fulfil.ReadinessProbe.HTTPGet.Port, *fulfil.Scale.Min)
	}

	// Everything left out gets a function's defaults.
	report := objs[4].(*Function).Spec
	if report.Port != DefaultPort || *report.TerminationGracePeriodSeconds != 60 || report.Concurrency != 1 ||
		*report.Scale.Min != 0 || *report.Scale.Max != 10 || report.Scale.IdleTimeout != "" ||
		*report.Scale.TargetUtilization != 0.7 || report.Timeout != "30s" || *report.Async.MaxRetries != 2 ||
		report.Async.Backoff != "1s" || report.Async.DeadLetterTopic != "" || report.Route != nil {
		t.Errorf("report defaults = %+v scale %+v async %+v", report, report.Scale, report.Async)
	}
}
