package v1

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode checks that no input makes Decode panic or hang, and that what
// Decode accepts survives Encode and Decode again unchanged, in both output
// formats: `berth get -o yaml > f.yaml; berth apply -f f.yaml` must apply
// what was shown.
func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(svcHead + "spec: {image: nginx, env: [{name: A, value: 1}], replicas: 0x10}\n"))
	f.Add([]byte("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: a, creationTimestamp: 2024-02-29T12:00:00.5+01:00}\n"))
	f.Add([]byte(fnHead + "spec: {image: fn, concurrency: 3, scale: {min: 0, max: 2, targetUtilization: 0.5}, triggers: [{cron: '@every 1m'}, {topic: t}]}\n"))
	f.Add([]byte("apiVersion: berth.dev/v1\nkind: Topic\nmetadata: {name: t}\nspec: {retention: 1h}\n"))
	f.Add([]byte(`{"kind":"List","items":[{"apiVersion":"berth.dev/v1","kind":"Environment","metadata":{"name":"a"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not a *v1.Error", err, err)
			}
			return
		}
		for _, o := range objs {
			for _, format := range []string{"json", "yaml"} {
				b, err := Encode(o, format)
				if err != nil {
					t.Fatalf("Encode %s: %v", format, err)
				}
				again, err := Decode("again", b)
				if err != nil {
					t.Fatalf("%s output does not decode: %v\n%s", format, err, b)
				}
				if len(again) != 1 || !sameJSON(t, o, again[0]) {
					t.Fatalf("%s output decodes to something else:\n%s", format, b)
				}
			}
			// Defaults and validation must not panic on anything decoded.
			SetDefaults(o)
			_ = Validate(o)
			_ = TemplateHash(templateOf(o))
		}
	})
}

func templateOf(o Object) Template {
	switch o := o.(type) {
	case *Service:
		return o.Spec.Template
	case *Function:
		return o.Spec.Template
	}
	return Template{}
}
