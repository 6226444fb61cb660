package v1

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidateTraffic(t *testing.T) {
	rev := func(n int64, p int32) TrafficTarget { return TrafficTarget{Revision: n, Percent: p} }
	latest := func(p int32) TrafficTarget { return TrafficTarget{LatestRevision: true, Percent: p} }
	tagged := func(tt TrafficTarget, tag string) TrafficTarget { tt.Tag = tag; return tt }
	tests := []struct {
		name    string
		traffic []TrafficTarget
		field   string
		msg     string
	}{
		{"empty is all to the latest", nil, "", ""},
		{"a split", []TrafficTarget{rev(2, 90), latest(10)}, "", ""},
		{"a tag at 0 percent", []TrafficTarget{rev(2, 100), tagged(latest(0), "next")}, "", ""},
		{"sum under 100", []TrafficTarget{rev(2, 90), latest(5)}, "spec.traffic", "sum to 95"},
		{"sum over 100", []TrafficTarget{rev(2, 90), latest(20)}, "spec.traffic", "sum to 110"},
		{"neither revision nor latest", []TrafficTarget{{Percent: 100}}, "spec.traffic[0].revision", "set a revision number"},
		{"both revision and latest", []TrafficTarget{{Revision: 1, LatestRevision: true, Percent: 100}}, "spec.traffic[0]", "not both"},
		{"negative revision", []TrafficTarget{rev(-1, 100)}, "spec.traffic[0].revision", "not a revision number"},
		{"negative percent", []TrafficTarget{rev(1, 110), latest(-10)}, "spec.traffic[0].percent", "out of range"},
		{"revision twice", []TrafficTarget{rev(1, 50), rev(1, 50)}, "spec.traffic[1].revision", "already listed"},
		{"latest twice", []TrafficTarget{latest(50), latest(50)}, "spec.traffic[1].latestRevision", "already listed"},
		{"bad tag", []TrafficTarget{tagged(latest(100), "Canary")}, "spec.traffic[0].tag", "must be lowercase"},
		{"tag twice", []TrafficTarget{tagged(rev(1, 50), "x"), tagged(latest(50), "x")}, "spec.traffic[1].tag", "already used"},
		{"tag host too long", []TrafficTarget{tagged(latest(100), strings.Repeat("t", 60))}, "spec.traffic[0].tag", "at most 63"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validService()
			s.Spec.Traffic = tc.traffic
			f := &Function{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindFunction},
				Metadata: ObjectMeta{Name: "orders"}, Spec: FunctionSpec{Template: Template{Image: "fn:v1"}, Traffic: tc.traffic}}
			for _, obj := range []Object{s, f} {
				SetDefaults(obj)
				err := Validate(obj)
				if tc.field == "" {
					if err != nil {
						t.Fatalf("%T: %v", obj, err)
					}
					continue
				}
				e, ok := err.(*Error)
				if !ok || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) || e.Kind != ErrInvalid {
					t.Fatalf("%T: err = %#v, want field %q with %q", obj, err, tc.field, tc.msg)
				}
			}
		})
	}
}

func TestResolveTraffic(t *testing.T) {
	got := ResolveTraffic(nil, 3)
	if want := []TrafficTarget{{Revision: 3, Percent: 100}}; !reflect.DeepEqual(got, want) {
		t.Errorf("empty: %v, want %v", got, want)
	}
	got = ResolveTraffic([]TrafficTarget{{Revision: 3, Percent: 60, Tag: "a"}, {Revision: 2, Percent: 30}, {LatestRevision: true, Percent: 10, Tag: "b"}}, 3)
	want := []TrafficTarget{{Revision: 3, Percent: 70, Tag: "a"}, {Revision: 2, Percent: 30}, {Revision: 3, Tag: "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged: %v, want %v", got, want)
	}
}
