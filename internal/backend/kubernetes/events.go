package kubernetes

import (
	"context"
	"fmt"
	"strings"

	"berth.dev/berth/internal/backend"
	corev1 "k8s.io/api/core/v1"
)

// mirrorEvent copies a Warning event the cluster records about one of
// Berth's pods or deployments (a failed pull, a pod that cannot be
// scheduled, a quota that refuses it, a probe failing) into Berth's events
// of the workload, once, so `berth describe` says what went wrong.
func (b *Backend) mirrorEvent(obj any) {
	ev, ok := obj.(*corev1.Event)
	if !ok || ev.Type != corev1.EventTypeWarning || !strings.HasPrefix(ev.Namespace, b.cfg.NamespacePrefix) {
		return
	}
	key := fmt.Sprintf("%s/%d", ev.UID, ev.Count)
	b.mu.Lock()
	if b.seen[key] {
		b.mu.Unlock()
		return
	}
	b.seen[key] = true
	if len(b.seen) > 10000 {
		b.seen = map[string]bool{key: true}
	}
	b.mu.Unlock()
	ref, ok := b.ownerOf(ev)
	if !ok || b.cfg.Events == nil {
		return
	}
	msg := fmt.Sprintf("%s %s: %s", strings.ToLower(ev.InvolvedObject.Kind), ev.InvolvedObject.Name, ev.Message)
	b.cfg.Events.Record(context.Background(), ref.Environment, ref.Kind+"/"+ref.Name, corev1.EventTypeWarning, ev.Reason, msg)
}

// ownerOf finds the workload an event is about, from the pod or
// deployment (or replica set, named after its deployment) it names.
func (b *Backend) ownerOf(ev *corev1.Event) (r backend.Ref, ok bool) {
	o := ev.InvolvedObject
	switch o.Kind {
	case "Pod":
		if obj, exists, _ := b.pods.GetIndexer().GetByKey(ev.Namespace + "/" + o.Name); exists {
			return refOf(obj)
		}
	case "Deployment":
		if obj, exists, _ := b.deploys.GetIndexer().GetByKey(ev.Namespace + "/" + o.Name); exists {
			return refOf(obj)
		}
	case "ReplicaSet":
		if i := strings.LastIndexByte(o.Name, '-'); i > 0 {
			if obj, exists, _ := b.deploys.GetIndexer().GetByKey(ev.Namespace + "/" + o.Name[:i]); exists {
				return refOf(obj)
			}
		}
	}
	return backend.Ref{}, false
}
