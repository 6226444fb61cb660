package accesskeys_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/accesskeys"
	"berth.dev/berth/internal/secrets"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

func setup(t *testing.T) (*accesskeys.Keys, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _ := secrets.LoadOrCreateKey(filepath.Join(t.TempDir(), "key"))
	box, _ := secrets.NewBox(key)
	return accesskeys.New(st, box, []byte("seed")), st
}

func TestTokenKeys(t *testing.T) {
	k, st := setup(t)
	ctx := context.Background()
	ak, err := k.Create(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if ak.Secret == "" || len(ak.Metadata.Name) != 20 {
		t.Fatalf("created %+v", ak)
	}
	// The secret is not stored in the clear.
	var stored v1.AccessKey
	store.Get(ctx, st, store.Key{Kind: v1.KindAccessKey, Name: ak.Metadata.Name}, &stored)
	if stored.Secret != "" || len(stored.Sealed) == 0 || string(stored.Sealed) == ak.Secret {
		t.Fatalf("stored %+v", stored)
	}
	f, err := k.Lookup(ctx, ak.Metadata.Name)
	if err != nil || f.Secret != ak.Secret || f.Token != "ci" {
		t.Fatalf("lookup = %+v, %v", f, err)
	}
	if _, err := k.Verify(ctx, ak.Metadata.Name, "wrong"); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("verify with a wrong secret: %v", err)
	}
	if err := k.DeleteForToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Lookup(ctx, ak.Metadata.Name); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("lookup after revoking the token's keys: %v", err)
	}
}

// An environment's instance keys are derived, found again by their ID, and
// die with the environment: one made again under the same name has others.
func TestInstanceKeys(t *testing.T) {
	k, st := setup(t)
	ctx := context.Background()
	env := &v1.Environment{TypeMeta: v1.TypeMeta{Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: "dev"}}
	if err := store.Create(ctx, st, env); err != nil {
		t.Fatal(err)
	}
	id, secret, err := k.ForInstance(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	id2, secret2, _ := k.ForInstance(ctx, "dev")
	if id != id2 || secret != secret2 {
		t.Fatal("instance keys are not stable")
	}
	// A fresh Keys (a restarted server) finds the key by its ID.
	fresh := accesskeys.New(st, nil, []byte("seed"))
	f, err := fresh.Lookup(ctx, id)
	if err != nil || f.Environment != "dev" || f.Secret != secret {
		t.Fatalf("lookup = %+v, %v", f, err)
	}
	store.Delete(ctx, st, env)
	if _, err := k.Lookup(ctx, id); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("a deleted environment's key: %v", err)
	}
	again := &v1.Environment{TypeMeta: v1.TypeMeta{Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: "dev"}}
	store.Create(ctx, st, again)
	if _, err := k.Lookup(ctx, id); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("the old key works for the new environment of the same name: %v", err)
	}
	if id3, _, _ := k.ForInstance(ctx, "dev"); id3 == id {
		t.Fatal("the new environment has the old environment's key")
	}
}
