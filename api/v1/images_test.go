package v1

import (
	"strings"
	"testing"
)

// spec.quota.registry is a size, like memory; nonsense and zero are
// refused with the field named.
func TestRegistryQuotaValidation(t *testing.T) {
	objs, err := Decode("env.yaml", []byte("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: dev}\nspec: {quota: {registry: 20Gi}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(objs[0]); err != nil {
		t.Fatalf("20Gi: %v", err)
	}
	if q := objs[0].(*Environment).Spec.Quota; q == nil || q.Registry != "20Gi" {
		t.Fatalf("quota: %+v", q)
	}
	for _, bad := range []string{"lots", "0", "-1Gi"} {
		env := &Environment{Metadata: ObjectMeta{Name: "dev"}, Spec: EnvironmentSpec{Quota: &Quota{Registry: bad}}}
		if err := Validate(env); !IsInvalid(err) || !strings.Contains(err.Error(), "spec.quota.registry") {
			t.Errorf("registry quota %q: %v", bad, err)
		}
	}
}
