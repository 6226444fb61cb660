package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fieldManager is Berth's name in server-side apply: the fields it sets
// are its own, and a user's `kubectl scale` or annotation on the same
// object is overwritten only where Berth manages the field.
const fieldManager = "berth"

// applied remembers the hash of what was last applied to each object, so
// that a level-triggered controller calling Apply on every change does not
// make an API call when nothing changed. It is memory only: after a
// restart, the first apply of each object goes to the cluster (and is a
// no-op there).
type applied struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *applied) same(key, hash string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[key] == hash
}

func (a *applied) set(key, hash string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]string{}
	}
	a.m[key] = hash
}

func (a *applied) forget(prefix string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(a.m, k)
		}
	}
}

// patcher is the Patch method every typed client has.
type patcher func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) error

// apply server-side-applies obj (a typed object with its TypeMeta set)
// unless the same was applied last time.
func (b *Backend) apply(ctx context.Context, kind, ns, name string, obj any, patch patcher) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:8])
	key := kind + "/" + ns + "/" + name
	if b.applied.same(key, hash) {
		return nil
	}
	force := true
	if err := patch(ctx, name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
		return b.wrap(err, "apply", kind+" "+name, ns)
	}
	b.applied.set(key, hash)
	return nil
}

// drop adapts a typed client's Patch (which returns the object) to a
// patcher.
func drop[T any](f func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)) patcher {
	return func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) error {
		_, err := f(ctx, name, pt, data, opts, subresources...)
		return err
	}
}

func meta(name, ns string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
}
