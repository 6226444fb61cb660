package secrets

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store/bolt"
)

func newBox(t *testing.T) *Box {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpenRoundTrip(t *testing.T) {
	b := newBox(t)
	for _, val := range []string{"", "hunter2", strings.Repeat("x", 1<<16), "\x00\xff binary"} {
		s, err := b.Seal("dev", "db", "password", []byte(val))
		if err != nil {
			t.Fatal(err)
		}
		if val != "" && bytes.Contains(s, []byte(val)) {
			t.Fatalf("sealed value contains the plain text")
		}
		got, err := b.Open("dev", "db", "password", s)
		if err != nil || string(got) != val {
			t.Fatalf("Open = %q, %v; want %q", got, err, val)
		}
	}
	// A fresh nonce each time: sealing twice gives different boxes.
	s1, _ := b.Seal("dev", "db", "k", []byte("same"))
	s2, _ := b.Seal("dev", "db", "k", []byte("same"))
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	b := newBox(t)
	s, _ := b.Seal("dev", "db", "password", []byte("hunter2"))
	for i := range s {
		bad := bytes.Clone(s)
		bad[i] ^= 0x01
		if _, err := b.Open("dev", "db", "password", bad); !errors.Is(err, ErrTampered) {
			t.Fatalf("flipping byte %d: err = %v, want ErrTampered", i, err)
		}
	}
	if _, err := b.Open("dev", "db", "password", s[:10]); !errors.Is(err, ErrTampered) {
		t.Fatalf("truncated: err = %v", err)
	}
}

func TestOpenBindsPlace(t *testing.T) {
	b := newBox(t)
	s, _ := b.Seal("dev", "db", "password", []byte("hunter2"))
	for _, place := range [][3]string{
		{"prod", "db", "password"}, // moved to another environment
		{"dev", "db2", "password"}, // to another secret
		{"dev", "db", "user"},      // to another key
		{"de", "vdb", "password"},  // same concatenation, other split
	} {
		if _, err := b.Open(place[0], place[1], place[2], s); !errors.Is(err, ErrTampered) {
			t.Errorf("Open at %v: err = %v, want ErrTampered", place, err)
		}
	}
}

func TestOpenWithWrongKey(t *testing.T) {
	s, _ := newBox(t).Seal("dev", "db", "password", []byte("hunter2"))
	if _, err := newBox(t).Open("dev", "db", "password", s); !errors.Is(err, ErrTampered) {
		t.Fatalf("err = %v, want ErrTampered", err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %v; same key %v", err, bytes.Equal(k1, k2))
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a world-readable key was accepted")
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func TestValuesStoreNoPlainText(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "store.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := New(st, newBox(t))
	const secret = "s3cr3t-value-7f1e9a"
	got, created, err := v.SetSecret(ctx, "dev", "db", v1.SetValuesRequest{Data: map[string]string{"password": secret, "user": "app"}})
	if err != nil || !created {
		t.Fatalf("SetSecret: %v, created %v", err, created)
	}
	if got.Data != nil || len(got.Status.Keys) != 2 || got.Status.Keys[0] != (v1.KeyInfo{Name: "password", Size: len(secret)}) {
		t.Fatalf("answer not redacted to keys and sizes: %+v", got)
	}
	// Merge: setting one key keeps the other.
	if _, _, err := v.SetSecret(ctx, "dev", "db", v1.SetValuesRequest{Data: map[string]string{"user": "admin"}}); err != nil {
		t.Fatal(err)
	}
	vals, err := v.Resolve(ctx, "dev", []v1.ValueRef{{Kind: v1.KindSecret, Name: "db", Key: "password"}, {Kind: v1.KindSecret, Name: "db"}})
	if err != nil {
		t.Fatal(err)
	}
	if vals[v1.ValueRef{Kind: v1.KindSecret, Name: "db", Key: "password"}] != secret ||
		vals[v1.ValueRef{Kind: v1.KindSecret, Name: "db", Key: "user"}] != "admin" {
		t.Fatalf("Resolve = %v", vals)
	}
	_, err = v.Resolve(ctx, "dev", []v1.ValueRef{{Kind: v1.KindSecret, Name: "db", Key: "nope"}})
	if !v1.IsNotFound(err) || err.Error() != `secret "db" key "nope" not found in environment "dev"` {
		t.Fatalf("missing key: %v", err)
	}
	_, err = v.Resolve(ctx, "prod", []v1.ValueRef{{Kind: v1.KindSecret, Name: "db", Key: "password"}})
	if !v1.IsNotFound(err) || err.Error() != `secret "db" key "password" not found in environment "prod"` {
		t.Fatalf("other environment: %v", err)
	}
	st.Close()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret in plain text", p)
		}
		return nil
	})
}
