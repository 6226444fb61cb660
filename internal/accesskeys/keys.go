package accesskeys

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
)

// Sealer seals and opens secrets at rest (secrets.Box).
type Sealer interface {
	Seal(env, name, key string, value []byte) ([]byte, error)
	Open(env, name, key string, sealed []byte) ([]byte, error)
}

// Prefixes of the two kinds of access key IDs.
const (
	tokenPrefix    = "BK"
	instancePrefix = "BI"
)

// Keys issues and finds access keys.
type Keys struct {
	store store.Store
	box   Sealer
	// derive is the key instance keys are derived from.
	derive []byte

	mu        sync.Mutex
	instances map[string]instanceKey // by access key ID
}

type instanceKey struct {
	env, uid, secret string
}

// New returns Keys over st, sealing with box; instanceSeed (secret, from the
// data dir) derives the instances' keys.
func New(st store.Store, box Sealer, instanceSeed []byte) *Keys {
	return &Keys{store: st, box: box, derive: instanceSeed, instances: map[string]instanceKey{}}
}

// Found is what an access key ID resolves to: its secret, and either the
// token it acts as or the environment whose instances hold it.
type Found struct {
	Secret string
	// Token is the name of the token of a token key.
	Token string
	// Environment is set for an instance key.
	Environment string
}

func randomString(n int, enc func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b)
	return enc(b)
}

// Create issues a key pair to token; the answer carries the secret, the
// only time it is sent.
func (k *Keys) Create(ctx context.Context, token string) (*v1.AccessKey, error) {
	id := tokenPrefix + randomString(12, func(b []byte) string {
		return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	})[:18]
	secret := randomString(30, base64.RawURLEncoding.EncodeToString)
	sealed, err := k.box.Seal("", id, "secret", []byte(secret))
	if err != nil {
		return nil, err
	}
	ak := &v1.AccessKey{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindAccessKey},
		Metadata: v1.ObjectMeta{Name: strings.ToUpper(id)},
		Spec:     v1.AccessKeySpec{Token: token},
		Sealed:   sealed,
	}
	if err := store.Create(ctx, k.store, ak); err != nil {
		return nil, err
	}
	ak.Sealed, ak.Secret = nil, secret
	return ak, nil
}

// List lists the keys of token ("" for every token's), without secrets.
func (k *Keys) List(ctx context.Context, token string) ([]*v1.AccessKey, error) {
	all, _, err := store.List[v1.AccessKey](ctx, k.store, v1.KindAccessKey, "")
	if err != nil {
		return nil, err
	}
	var out []*v1.AccessKey
	for _, ak := range all {
		if token == "" || ak.Spec.Token == token {
			ak.Sealed = nil
			out = append(out, ak)
		}
	}
	return out, nil
}

// Get returns the key id (without its secret).
func (k *Keys) Get(ctx context.Context, id string) (*v1.AccessKey, error) {
	var ak v1.AccessKey
	if err := store.Get(ctx, k.store, store.Key{Kind: v1.KindAccessKey, Name: id}, &ak); err != nil {
		if v1.IsNotFound(err) {
			return nil, v1.NotFound("no access key %s", id)
		}
		return nil, err
	}
	ak.Sealed = nil
	return &ak, nil
}

// Delete revokes the key id.
func (k *Keys) Delete(ctx context.Context, id string) error {
	var ak v1.AccessKey
	if err := store.Get(ctx, k.store, store.Key{Kind: v1.KindAccessKey, Name: id}, &ak); err != nil {
		if v1.IsNotFound(err) {
			return v1.NotFound("no access key %s", id)
		}
		return err
	}
	return store.Delete(ctx, k.store, &ak)
}

// DeleteForToken revokes every key of token (the token is being revoked).
func (k *Keys) DeleteForToken(ctx context.Context, token string) error {
	keys, err := k.List(ctx, token)
	if err != nil {
		return err
	}
	var errs []error
	for _, ak := range keys {
		if err := store.Delete(ctx, k.store, ak); err != nil && !v1.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Lookup resolves an access key ID; an unknown one is sigv4.ErrUnknownKey.
func (k *Keys) Lookup(ctx context.Context, id string) (Found, error) {
	if strings.HasPrefix(id, instancePrefix) {
		return k.lookupInstance(ctx, id)
	}
	var ak v1.AccessKey
	if err := store.Get(ctx, k.store, store.Key{Kind: v1.KindAccessKey, Name: id}, &ak); err != nil {
		if v1.IsNotFound(err) {
			return Found{}, sigv4.ErrUnknownKey
		}
		return Found{}, err
	}
	secret, err := k.box.Open("", ak.Metadata.Name, "secret", ak.Sealed)
	if err != nil {
		return Found{}, fmt.Errorf("access key %s: %w", id, err)
	}
	return Found{Secret: string(secret), Token: ak.Spec.Token}, nil
}

// Verify checks a key pair given whole (HTTP Basic on the KV endpoint).
func (k *Keys) Verify(ctx context.Context, id, secret string) (Found, error) {
	f, err := k.Lookup(ctx, id)
	if err != nil {
		return Found{}, err
	}
	a, b := sha256.Sum256([]byte(f.Secret)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return Found{}, sigv4.ErrUnknownKey
	}
	return f, nil
}

func (k *Keys) mac(parts ...string) []byte {
	h := hmac.New(sha256.New, k.derive)
	h.Write([]byte(strings.Join(parts, "\x00")))
	return h.Sum(nil)
}

func (k *Keys) instanceKeyOf(env, uid string) (id, secret string) {
	id = instancePrefix + strings.ToUpper(hex.EncodeToString(k.mac("id", env, uid)[:9]))
	secret = base64.RawURLEncoding.EncodeToString(k.mac("secret", env, uid)[:30])
	return id, secret
}

// ForInstance is the key pair env's instances get.
func (k *Keys) ForInstance(ctx context.Context, env string) (id, secret string, err error) {
	var e v1.Environment
	if err := store.Get(ctx, k.store, store.Key{Kind: v1.KindEnvironment, Name: env}, &e); err != nil {
		return "", "", err
	}
	id, secret = k.instanceKeyOf(env, e.Metadata.UID)
	k.mu.Lock()
	k.instances[id] = instanceKey{env: env, uid: e.Metadata.UID, secret: secret}
	k.mu.Unlock()
	return id, secret, nil
}

func (k *Keys) lookupInstance(ctx context.Context, id string) (Found, error) {
	k.mu.Lock()
	ik, ok := k.instances[id]
	k.mu.Unlock()
	if !ok {
		envs, _, err := store.List[v1.Environment](ctx, k.store, v1.KindEnvironment, "")
		if err != nil {
			return Found{}, err
		}
		fresh := map[string]instanceKey{}
		for _, e := range envs {
			eid, secret := k.instanceKeyOf(e.Metadata.Name, e.Metadata.UID)
			fresh[eid] = instanceKey{env: e.Metadata.Name, uid: e.Metadata.UID, secret: secret}
		}
		k.mu.Lock()
		k.instances = fresh
		k.mu.Unlock()
		if ik, ok = fresh[id]; !ok {
			return Found{}, sigv4.ErrUnknownKey
		}
		return Found{Secret: ik.secret, Environment: ik.env}, nil
	}
	// The environment must still be the one the key was made for.
	var e v1.Environment
	if err := store.Get(ctx, k.store, store.Key{Kind: v1.KindEnvironment, Name: ik.env}, &e); err != nil || e.Metadata.UID != ik.uid {
		k.mu.Lock()
		delete(k.instances, id)
		k.mu.Unlock()
		if err != nil && !v1.IsNotFound(err) {
			return Found{}, err
		}
		return Found{}, sigv4.ErrUnknownKey
	}
	return Found{Secret: ik.secret, Environment: ik.env}, nil
}
