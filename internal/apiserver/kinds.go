package apiserver

import (
	"cmp"
	"slices"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// resource is what the server knows about one kind.
type resource struct {
	kind   string
	plural string
	// scoped kinds live inside an environment; Environment does not.
	scoped bool
	// appliable kinds are written by users (PUT, DELETE); the others only
	// by the platform.
	appliable bool
	new       func() v1.Object
}

var resources = []resource{
	{kind: v1.KindEnvironment, plural: "environments", appliable: true, new: func() v1.Object { return new(v1.Environment) }},
	{kind: v1.KindService, plural: "services", scoped: true, appliable: true, new: func() v1.Object { return new(v1.Service) }},
	{kind: v1.KindFunction, plural: "functions", scoped: true, appliable: true, new: func() v1.Object { return new(v1.Function) }},
	{kind: v1.KindTopic, plural: "topics", scoped: true, appliable: true, new: func() v1.Object { return new(v1.Topic) }},
	{kind: v1.KindWorkflow, plural: "workflows", scoped: true, appliable: true, new: func() v1.Object { return new(v1.Workflow) }},
	{kind: v1.KindRevision, plural: "revisions", scoped: true, new: func() v1.Object { return new(v1.Revision) }},
	{kind: v1.KindInstance, plural: "instances", scoped: true, new: func() v1.Object { return new(v1.Instance) }},
	{kind: v1.KindEvent, plural: "events", scoped: true, new: func() v1.Object { return new(v1.Event) }},
}

func byPlural(plural string) (resource, error) {
	for _, r := range resources {
		if r.plural == plural {
			return r, nil
		}
	}
	return resource{}, v1.NotFound("unknown resource type %q; known: %s", plural, strings.Join(plurals(), ", "))
}

func byKind(kind string) (resource, bool) {
	for _, r := range resources {
		if r.kind == kind {
			return r, true
		}
	}
	return resource{}, false
}

func plurals() []string {
	var out []string
	for _, r := range resources {
		out = append(out, r.plural)
	}
	return out
}

func appliablePlurals() string {
	var out []string
	for _, r := range resources {
		if r.appliable {
			out = append(out, r.plural)
		}
	}
	if len(out) > 1 {
		return strings.Join(out[:len(out)-1], ", ") + " and " + out[len(out)-1]
	}
	return strings.Join(out, "")
}

// sortObjects puts objects in the order a reader expects: revisions by
// owner and number (key order would put web-10 before web-2), events by
// time, everything else by environment and name, as stored.
func sortObjects(objs []v1.Object) {
	slices.SortStableFunc(objs, func(a, b v1.Object) int {
		switch a := a.(type) {
		case *v1.Revision:
			b := b.(*v1.Revision)
			return cmp.Or(
				cmp.Compare(a.Metadata.Environment, b.Metadata.Environment),
				cmp.Compare(a.Spec.Owner, b.Spec.Owner),
				cmp.Compare(a.Spec.Number, b.Spec.Number))
		case *v1.Event:
			b := b.(*v1.Event)
			return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
		}
		return 0
	})
}
