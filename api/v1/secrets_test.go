package v1

import (
	"strings"
	"testing"
)

func TestValidateValueReferences(t *testing.T) {
	base := func() *Service {
		return &Service{Metadata: ObjectMeta{Name: "web"}, Spec: ServiceSpec{Template: Template{Image: "nginx:1.27"}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Service)
		field string
	}{
		{"ok", func(s *Service) {
			s.Spec.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{Secret: &KeyRef{Name: "db", Key: "password"}}}}
			s.Spec.SecretFiles = []SecretFile{{Secret: "db", MountPath: "/run/secrets/db"}}
			s.Spec.ConfigFiles = []ConfigFile{{Config: "app", MountPath: "/etc/app"}}
		}, ""},
		{"value and valueFrom", func(s *Service) {
			s.Spec.Env = []EnvVar{{Name: "A", Value: "x", ValueFrom: &EnvVarSource{Secret: &KeyRef{Name: "db", Key: "k"}}}}
		}, "spec.env[0].value"},
		{"both sources", func(s *Service) {
			s.Spec.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{Secret: &KeyRef{Name: "db", Key: "k"}, Config: &KeyRef{Name: "c", Key: "k"}}}}
		}, "spec.env[0].valueFrom"},
		{"bad key", func(s *Service) {
			s.Spec.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{Config: &KeyRef{Name: "c", Key: "../x"}}}}
		}, "spec.env[0].valueFrom.config.key"},
		{"relative mount", func(s *Service) {
			s.Spec.SecretFiles = []SecretFile{{Secret: "db", MountPath: "run/db"}}
		}, "spec.secretFiles[0].mountPath"},
		{"mount clash", func(s *Service) {
			s.Spec.SecretFiles = []SecretFile{{Secret: "db", MountPath: "/x"}}
			s.Spec.ConfigFiles = []ConfigFile{{Config: "c", MountPath: "/x"}}
		}, "spec.configFiles[0].mountPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			err := Validate(s)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if e, ok := err.(*Error); !ok || e.Field != tc.field {
				t.Fatalf("err = %v, want field %s", err, tc.field)
			}
		})
	}
}

func TestDecodeSecretReferencesAndQuota(t *testing.T) {
	objs, err := Decode("m.yaml", []byte(`apiVersion: berth.dev/v1
kind: Environment
metadata: {name: dev}
spec: {quota: {cpu: "4", memory: 8Gi}}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: f}
spec:
  image: nginx
  env: [{name: P, valueFrom: {secret: {name: db, key: password}}}]
  secretFiles: [{secret: db, mountPath: /run/secrets/db}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if q := objs[0].(*Environment).Spec.Quota; q == nil || q.Memory != "8Gi" {
		t.Fatalf("quota: %+v", q)
	}
	refs := objs[1].(*Function).Spec.ValueRefs()
	if len(refs) != 2 || refs[0] != (ValueRef{Kind: KindSecret, Name: "db", Key: "password"}) || refs[1] != (ValueRef{Kind: KindSecret, Name: "db"}) {
		t.Fatalf("refs: %+v", refs)
	}
	_, err = Decode("m.yaml", []byte("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: dev}\nspec: {quota: {cpu: lots}}\n"))
	if err != nil {
		t.Fatal(err) // decoding accepts it; Validate refuses
	}
	env := &Environment{Metadata: ObjectMeta{Name: "dev"}, Spec: EnvironmentSpec{Quota: &Quota{CPU: "lots"}}}
	if err := Validate(env); err == nil || !strings.Contains(err.Error(), "spec.quota.cpu") {
		t.Fatalf("bad quota: %v", err)
	}
}
