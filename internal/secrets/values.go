package secrets

import (
	"context"
	"fmt"
	"maps"
	"slices"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// sealed is a Secret as stored: its values sealed by the Box. It is the
// only form a secret takes in the store; the API's v1.Secret carries
// values only on the way in.
type sealed struct {
	v1.TypeMeta `json:",inline"`
	Metadata    v1.ObjectMeta `json:"metadata"`
	// Sealed is KEY → nonce ‖ ciphertext ‖ tag (base64 in JSON).
	Sealed map[string][]byte `json:"sealed,omitempty"`
	Status v1.ValuesStatus   `json:"status,omitzero"`
}

func (s *sealed) GetMetadata() *v1.ObjectMeta { return &s.Metadata }

// redacted is the API's view of a stored secret: keys and sizes only.
func (s *sealed) redacted() *v1.Secret {
	return &v1.Secret{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
		Metadata: s.Metadata,
		Status:   s.Status,
	}
}

// Values keeps the Secrets and Configs of every environment in the store.
type Values struct {
	store store.Store
	box   *Box
}

// New builds Values over st, sealing secrets with box.
func New(st store.Store, box *Box) *Values {
	return &Values{store: st, box: box}
}

func keyInfos(sizes map[string]int) []v1.KeyInfo {
	out := make([]v1.KeyInfo, 0, len(sizes))
	for _, k := range slices.Sorted(maps.Keys(sizes)) {
		out = append(out, v1.KeyInfo{Name: k, Size: sizes[k]})
	}
	return out
}

func merged(cur map[string]int, req v1.SetValuesRequest) (map[string]int, error) {
	sizes := map[string]int{}
	if !req.Replace {
		maps.Copy(sizes, cur)
	}
	for k, v := range req.Data {
		sizes[k] = len(v)
	}
	for _, k := range req.Remove {
		if _, ok := sizes[k]; !ok {
			return nil, v1.FieldError("remove", "key %q is not set", k)
		}
		delete(sizes, k)
	}
	return sizes, nil
}

func sizesOf(keys []v1.KeyInfo) map[string]int {
	m := make(map[string]int, len(keys))
	for _, k := range keys {
		m[k.Name] = k.Size
	}
	return m
}

// SetSecret merges req into the secret env/name, creating it if need be,
// and answers it redacted with whether it was created.
func (v *Values) SetSecret(ctx context.Context, env, name string, req v1.SetValuesRequest) (*v1.Secret, bool, error) {
	if err := v1.ValidateValues(name, req.Data); err != nil {
		return nil, false, err
	}
	for {
		var cur sealed
		err := store.Get(ctx, v.store, store.Key{Kind: v1.KindSecret, Environment: env, Name: name}, &cur)
		create := v1.IsNotFound(err)
		if err != nil && !create {
			return nil, false, err
		}
		if create {
			cur = sealed{
				TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
				Metadata: v1.ObjectMeta{Name: name, Environment: env},
			}
		}
		sizes, err := merged(sizesOf(cur.Status.Keys), req)
		if err != nil {
			return nil, false, err
		}
		next := map[string][]byte{}
		for k := range sizes {
			if val, ok := req.Data[k]; ok {
				if next[k], err = v.box.Seal(env, name, k, []byte(val)); err != nil {
					return nil, false, err
				}
			} else {
				next[k] = cur.Sealed[k]
			}
		}
		cur.Sealed, cur.Status.Keys = next, keyInfos(sizes)
		if create {
			err = store.Create(ctx, v.store, &cur)
		} else {
			cur.Metadata.Generation++
			err = store.Update(ctx, v.store, &cur)
		}
		if v1.IsConflict(err) {
			continue // a concurrent set: merge into the newer one
		}
		if err != nil {
			return nil, false, err
		}
		return cur.redacted(), create, nil
	}
}

// GetSecret answers one secret, redacted.
func (v *Values) GetSecret(ctx context.Context, env, name string) (*v1.Secret, error) {
	var cur sealed
	err := store.Get(ctx, v.store, store.Key{Kind: v1.KindSecret, Environment: env, Name: name}, &cur)
	if v1.IsNotFound(err) {
		return nil, v1.NotFound("secret %q not found in environment %q", name, env)
	}
	if err != nil {
		return nil, err
	}
	return cur.redacted(), nil
}

// ListSecrets answers the secrets of env ("" for all), redacted.
func (v *Values) ListSecrets(ctx context.Context, env string) ([]*v1.Secret, error) {
	all, _, err := store.List[sealed](ctx, v.store, v1.KindSecret, env)
	if err != nil {
		return nil, err
	}
	out := make([]*v1.Secret, len(all))
	for i, s := range all {
		out[i] = s.redacted()
	}
	return out, nil
}

// DeleteSecret removes a secret and answers it, redacted.
func (v *Values) DeleteSecret(ctx context.Context, env, name string) (*v1.Secret, error) {
	s, err := v.GetSecret(ctx, env, name)
	if err != nil {
		return nil, err
	}
	// At the version read: a set that lands in between is not deleted
	// unseen (the caller gets a Conflict and can look again).
	if err := v.store.Delete(ctx, store.Key{Kind: v1.KindSecret, Environment: env, Name: name}, s.Metadata.ResourceVersion); err != nil {
		return nil, err
	}
	return s, nil
}

// SetConfig merges req into the config env/name, creating it if need be.
func (v *Values) SetConfig(ctx context.Context, env, name string, req v1.SetValuesRequest) (*v1.Config, bool, error) {
	if err := v1.ValidateValues(name, req.Data); err != nil {
		return nil, false, err
	}
	for {
		var cur v1.Config
		err := store.Get(ctx, v.store, store.Key{Kind: v1.KindConfig, Environment: env, Name: name}, &cur)
		create := v1.IsNotFound(err)
		if err != nil && !create {
			return nil, false, err
		}
		if create {
			cur = v1.Config{
				TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindConfig},
				Metadata: v1.ObjectMeta{Name: name, Environment: env},
			}
		}
		sizes, err := merged(sizesOf(cur.Status.Keys), req)
		if err != nil {
			return nil, false, err
		}
		data := map[string]string{}
		for k := range sizes {
			if val, ok := req.Data[k]; ok {
				data[k] = val
			} else {
				data[k] = cur.Data[k]
			}
		}
		cur.Data, cur.Status.Keys = data, keyInfos(sizes)
		if create {
			err = store.Create(ctx, v.store, &cur)
		} else {
			cur.Metadata.Generation++
			err = store.Update(ctx, v.store, &cur)
		}
		if v1.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		return &cur, create, nil
	}
}

// GetConfig answers one config, values included.
func (v *Values) GetConfig(ctx context.Context, env, name string) (*v1.Config, error) {
	var cur v1.Config
	err := store.Get(ctx, v.store, store.Key{Kind: v1.KindConfig, Environment: env, Name: name}, &cur)
	if v1.IsNotFound(err) {
		return nil, v1.NotFound("config %q not found in environment %q", name, env)
	}
	if err != nil {
		return nil, err
	}
	return &cur, nil
}

// ListConfigs answers the configs of env ("" for all).
func (v *Values) ListConfigs(ctx context.Context, env string) ([]*v1.Config, error) {
	all, _, err := store.List[v1.Config](ctx, v.store, v1.KindConfig, env)
	return all, err
}

// DeleteConfig removes a config and answers it.
func (v *Values) DeleteConfig(ctx context.Context, env, name string) (*v1.Config, error) {
	c, err := v.GetConfig(ctx, env, name)
	if err != nil {
		return nil, err
	}
	if err := v.store.Delete(ctx, store.Key{Kind: v1.KindConfig, Environment: env, Name: name}, c.Metadata.ResourceVersion); err != nil {
		return nil, err
	}
	return c, nil
}

// Resolve reads the values refs name in env, decrypting secrets: the node
// agent calls it when it creates a container. The answer has one entry per
// (kind, name, key); a ref with an empty Key (a file mount) expands to an
// entry per key of its secret or config. A missing secret, config or key
// is a NotFound naming it, which the agent shows in the instance's status.
func (v *Values) Resolve(ctx context.Context, env string, refs []v1.ValueRef) (map[v1.ValueRef]string, error) {
	out := map[v1.ValueRef]string{}
	opened := map[v1.ValueRef]map[string]string{} // by kind and name
	for _, ref := range refs {
		src := v1.ValueRef{Kind: ref.Kind, Name: ref.Name}
		vals, ok := opened[src]
		if !ok {
			var err error
			if vals, err = v.open(ctx, env, ref); err != nil {
				return nil, err
			}
			opened[src] = vals
		}
		keys := []string{ref.Key}
		if ref.Key == "" {
			keys = slices.Sorted(maps.Keys(vals))
		}
		for _, k := range keys {
			val, ok := vals[k]
			if !ok {
				return nil, v1.NotFound("%s %q key %q not found in environment %q", kindWord(ref.Kind), ref.Name, k, env)
			}
			out[v1.ValueRef{Kind: ref.Kind, Name: ref.Name, Key: k}] = val
		}
	}
	return out, nil
}

// open returns every value of the secret (decrypted) or config ref names.
func (v *Values) open(ctx context.Context, env string, ref v1.ValueRef) (map[string]string, error) {
	key := store.Key{Kind: ref.Kind, Environment: env, Name: ref.Name}
	switch ref.Kind {
	case v1.KindSecret:
		var s sealed
		if err := store.Get(ctx, v.store, key, &s); err != nil {
			if v1.IsNotFound(err) {
				return nil, missing("secret", ref, env)
			}
			return nil, err
		}
		vals := make(map[string]string, len(s.Sealed))
		for k, box := range s.Sealed {
			val, err := v.box.Open(env, ref.Name, k, box)
			if err != nil {
				return nil, fmt.Errorf("secret %q key %q in environment %q: %w", ref.Name, k, env, err)
			}
			vals[k] = string(val)
		}
		return vals, nil
	case v1.KindConfig:
		var c v1.Config
		if err := store.Get(ctx, v.store, key, &c); err != nil {
			if v1.IsNotFound(err) {
				return nil, missing("config", ref, env)
			}
			return nil, err
		}
		return c.Data, nil
	default:
		return nil, fmt.Errorf("unknown value kind %q", ref.Kind)
	}
}

func kindWord(kind string) string {
	if kind == v1.KindSecret {
		return "secret"
	}
	return "config"
}

// missing names what a workload needs and its environment lacks: the key
// when the reference names one, so the message says what to set.
func missing(what string, ref v1.ValueRef, env string) error {
	if ref.Key != "" {
		return v1.NotFound("%s %q key %q not found in environment %q", what, ref.Name, ref.Key, env)
	}
	return v1.NotFound("%s %q not found in environment %q", what, ref.Name, env)
}
