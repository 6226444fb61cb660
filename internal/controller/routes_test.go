package controller

import (
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
)

// TestOnePerNameKeepsTheNewerOnceRouted follows conversions through the
// tables the routes controller pushes: the older workload keeps the name
// until the newer has a ready instance; from then on the newer keeps it,
// also while it reports no ready endpoint (a scale-down drains one of its
// two instances, or a function is at zero and the activator wakes it),
// and the route never goes back to the older one being deleted.
func TestOnePerNameKeepsTheNewerOnceRouted(t *testing.T) {
	eps := func(ids ...string) []gateway.Endpoint {
		var out []gateway.Endpoint
		for _, id := range ids {
			out = append(out, gateway.Endpoint{ID: "default." + id, Address: "10.0.0.1:8080"})
		}
		return out
	}
	svc := func(e []gateway.Endpoint) *gateway.Target {
		return &gateway.Target{Environment: "default", Name: "web", Kind: v1.KindService, Endpoints: e}
	}
	fn := func(e []gateway.Endpoint) *gateway.Target {
		return &gateway.Target{Environment: "default", Name: "web", Kind: v1.KindFunction, Endpoints: e}
	}
	type step struct {
		what    string
		svc, fn *gateway.Target
		want    string
		wantEps int
	}
	olderOnTie, takenOver := map[string]string{}, map[string]string{}
	prev := map[string]gateway.Target{}
	// run pushes each step's table; fnFirst lists the function first, as
	// the choice must not depend on the caches' order.
	run := func(steps []step, svcBorn, fnBorn time.Time, fnFirst bool) {
		t.Helper()
		for _, s := range steps {
			var ts []gateway.Target
			created := map[string]time.Time{}
			if s.fn != nil && fnFirst {
				ts = append(ts, *s.fn)
			}
			if s.svc != nil {
				ts = append(ts, *s.svc)
				created[v1.KindService+"/default/web"] = svcBorn
			}
			if s.fn != nil {
				if !fnFirst {
					ts = append(ts, *s.fn)
				}
				created[v1.KindFunction+"/default/web"] = fnBorn
			}
			out := onePerName(ts, created, prev, olderOnTie, takenOver)
			if len(out) != 1 || out[0].Kind != s.want || len(out[0].Endpoints) != s.wantEps {
				t.Fatalf("%s: routed %+v, want the %s with %d endpoints", s.what, out, s.want, s.wantEps)
			}
			prev = map[string]gateway.Target{"default/web": out[0]}
		}
	}

	svcBorn := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	fnBorn := svcBorn.Add(2 * time.Second)
	run([]step{
		{"the service alone", svc(eps("s1", "s2")), nil, v1.KindService, 2},
		{"the function created, not ready", svc(eps("s1", "s2")), fn(nil), v1.KindService, 2},
		{"the function with one ready instance", svc(eps("s1", "s2")), fn(eps("f1")), v1.KindFunction, 1},
		{"the function with two", svc(eps("s1", "s2")), fn(eps("f1", "f2")), v1.KindFunction, 2},
		{"one of the function's two draining, the other not reported ready for a moment", svc(eps("s1", "s2")), fn(nil), v1.KindFunction, 0},
		{"the service's instances draining", svc(nil), fn(nil), v1.KindFunction, 0},
		{"the function ready again", svc(nil), fn(eps("f2")), v1.KindFunction, 1},
		{"the service gone", nil, fn(eps("f2")), v1.KindFunction, 1},
		{"the function at zero", nil, fn(nil), v1.KindFunction, 0},
	}, svcBorn, fnBorn, false)
	if len(takenOver) != 0 || len(olderOnTie) != 0 {
		t.Errorf("memory kept after the service went: takenOver %v, olderOnTie %v", takenOver, olderOnTie)
	}

	// And back: the function is the older one now, and keeps the name
	// until the new service has a ready instance; what the last
	// conversion remembered does not carry over.
	run([]step{
		{"the service created, not ready", svc(nil), fn(eps("f2")), v1.KindFunction, 1},
		{"the service ready", svc(eps("s3")), fn(eps("f2")), v1.KindService, 1},
		{"the service between two probes", svc(nil), fn(eps("f2")), v1.KindService, 0},
		{"the function gone", svc(eps("s3")), nil, v1.KindService, 1},
	}, fnBorn.Add(time.Minute), fnBorn, true)
}
