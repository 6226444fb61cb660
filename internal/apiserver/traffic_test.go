package apiserver_test

import (
	"net/http"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

func TestTrafficAdmission(t *testing.T) {
	e := newEnv(t, options{})
	path := "/api/v1/environments/default/services/web"
	e.apply(path, service("web", "nginx:1"), http.StatusCreated, "created")
	e.apply("/api/v1/environments/default/services/next-api", service("next-api", "nginx:1"), http.StatusCreated, "created")
	seed(t, e.store, revision("web", 1, "nginx:1"), revision("web", 2, "nginx:2"))

	with := func(traffic ...v1.TrafficTarget) *v1.Service {
		s := service("web", "nginx:2")
		s.Spec.Traffic = traffic
		return s
	}
	stored := func() []v1.TrafficTarget {
		var s v1.Service
		if err := store.Get(t.Context(), e.store, store.Key{Kind: v1.KindService, Environment: "default", Name: "web"}, &s); err != nil {
			t.Fatal(err)
		}
		return s.Spec.Traffic
	}

	// Refused, naming the field, with nothing changed.
	cases := []struct {
		name  string
		svc   *v1.Service
		field string
		msg   string
	}{
		{"sum", with(v1.TrafficTarget{Revision: 1, Percent: 50}, v1.TrafficTarget{LatestRevision: true, Percent: 40}), "spec.traffic", "sum to 90"},
		{"unknown revision", with(v1.TrafficTarget{Revision: 7, Percent: 50}, v1.TrafficTarget{LatestRevision: true, Percent: 50}), "spec.traffic[0].revision", "revision 7 of service \"web\" not found; it has revisions 1, 2"},
		{"tag is a workload", func() *v1.Service {
			s := service("api", "nginx:1")
			s.Spec.Traffic = []v1.TrafficTarget{{LatestRevision: true, Percent: 100, Tag: "next"}}
			return s
		}(), "spec.traffic[0].tag", "which is the name of service \"next-api\""},
	}
	for _, tc := range cases {
		p := path
		if tc.svc.Metadata.Name != "web" {
			p = "/api/v1/environments/default/services/" + tc.svc.Metadata.Name
		}
		r := e.do(http.MethodPut, p, tc.svc)
		e.expect(r, http.StatusBadRequest, v1.ErrInvalid, tc.field)
		if msg := r.errorBody(t).Message; !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: message %q, want %q", tc.name, msg, tc.msg)
		}
		if got := stored(); got != nil {
			t.Fatalf("%s: traffic stored anyway: %v", tc.name, got)
		}
	}

	// Accepted: an existing revision and a tag nobody else has.
	e.apply(path, with(v1.TrafficTarget{Revision: 1, Percent: 90, Tag: "old"}, v1.TrafficTarget{LatestRevision: true, Percent: 10}), http.StatusOK, "configured")
	if got := stored(); len(got) != 2 || got[0].Tag != "old" {
		t.Fatalf("stored traffic %v", got)
	}
	// A new workload may not take a tag's host.
	r := e.do(http.MethodPut, "/api/v1/environments/default/services/old-web", service("old-web", "nginx:1"))
	e.expect(r, http.StatusBadRequest, v1.ErrInvalid, "metadata.name")
}
