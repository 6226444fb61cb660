package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

func TestRenderErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"parse", "kind: Service\nmetadata:\n  name: {{ .Values.name \n", "web.yaml: line 4: unclosed action started at web.yaml:3"},
		{"unknown function", "a: 1\nb: {{ frobnicate .Values.x }}\n", "web.yaml: line 2: function \"frobnicate\" not defined"},
		{"required", "a: 1\n\nb: {{ required \"image.tag is required\" .Values.image.tag }}\n", "web.yaml: line 3: at <required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(map[string]string{"web.yaml": tc.src}, map[string]any{"image": map[string]any{}}, Meta{})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant prefix %q", err, tc.want)
			}
			if e, ok := err.(*v1.Error); !ok || e.File != "web.yaml" || e.Kind != v1.ErrInvalid {
				t.Fatalf("err is %#v, want an Invalid *v1.Error with File", err)
			}
		})
	}
	_, err := Render(map[string]string{"web.yaml": "x: {{ required \"image.tag is required\" .Values.tag }}"}, map[string]any{}, Meta{})
	if err == nil || !strings.Contains(err.Error(), "image.tag is required") {
		t.Fatalf("required message lost: %v", err)
	}
}

func TestLoadValuesRender(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("values.yaml", "replicas: 1\nimage: {repo: web, tag: v1}\nenv: {MODE: slow}\n")
	write("values-prod.yaml", "replicas: 3\nimage: {tag: v2}\n")
	write("_helpers.tpl", `{{ define "labels" }}app: {{ .Stack.Name }}{{ end }}`)
	write("templates/web.yaml", `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
  labels: {{ include "labels" . | nindent 4 }}
spec:
  image: {{ .Values.image.repo }}:{{ .Values.image.tag }}
  replicas: {{ .Values.replicas }}
  env:
{{- range $k, $v := .Values.env }}
    - {name: {{ $k }}, value: {{ $v | quote }}}
{{- end }}
  port: {{ .Values.port | default 8080 }}
`)
	write("templates/off.yaml", "{{ if .Values.enabled }}kind: Topic{{ end }}\n")
	src, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src["values-prod.yaml"]; ok {
		t.Fatal("an environment's values file was taken for a template")
	}
	vals, err := Values(src, map[string][]byte{"values-prod.yaml": []byte("replicas: 3\nimage: {tag: v2}\n")}, []string{"values-prod.yaml"}, []string{"env.MODE=fast"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(src, vals, Meta{Name: "shop", Environment: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].File != "templates/web.yaml" {
		t.Fatalf("rendered %+v", out)
	}
	objs, err := v1.Decode(out[0].File, []byte(out[0].Content))
	if err != nil {
		t.Fatalf("%v\n%s", err, out[0].Content)
	}
	svc := objs[0].(*v1.Service)
	if svc.Spec.Image != "web:v2" || *svc.Spec.Replicas != 3 || svc.Spec.Env[0].Value != "fast" ||
		svc.Spec.Port != 8080 || svc.Metadata.Labels["app"] != "shop" {
		t.Fatalf("rendered service: %+v", svc)
	}
}

func TestRenderSelfIncludeFails(t *testing.T) {
	src := `{{ define "loop" }}{{ include "loop" . }}{{ end }}x: {{ include "loop" . }}`
	_, err := Render(map[string]string{"web.yaml": src}, map[string]any{}, Meta{})
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("err = %v, want the include depth error", err)
	}
}
