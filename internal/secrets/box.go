package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"berth.dev/berth/internal/atomicfile"
)

// KeySize is the length of the data key: AES-256.
const KeySize = 32

// Box seals and opens values with AES-256-GCM. Each value gets a fresh
// random nonce, and the additional data binds it to its place
// (environment, secret, key): a sealed value copied to another key or
// environment in the store does not open there.
type Box struct {
	aead cipher.AEAD
}

// NewBox builds a Box over a KeySize-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// LoadOrCreateKey reads the key at path, or makes a random one there (mode
// 0600) on first start. A key file of the wrong size or too open a mode is
// an error, not something to paper over: values sealed under a lost key
// cannot be read again.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != KeySize {
			return nil, fmt.Errorf("secrets key %s is %d bytes, want %d", path, len(key), KeySize)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secrets key %s has mode %v; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Replaced whole and durably before anything is sealed with it: a
	// crash must never leave a short key that a later start would take
	// for the real one, nor keep the secrets and lose the key.
	if err := atomicfile.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return key, nil
}

// aad is the additional data of a value: its environment, secret and key,
// length-prefixed so that ("a/b", "c") and ("a", "b/c") differ.
func aad(env, name, key string) []byte {
	var b []byte
	for _, s := range []string{env, name, key} {
		b = append(b, byte(len(s)>>8), byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// Seal encrypts value for (env, name, key): nonce ‖ ciphertext ‖ tag.
func (b *Box) Seal(env, name, key string, value []byte) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(value)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return b.aead.Seal(nonce, nonce, value, aad(env, name, key)), nil
}

// ErrTampered is returned by Open when a sealed value does not
// authenticate: altered, moved to another key, or sealed under another key.
var ErrTampered = errors.New("sealed value does not authenticate (altered, moved, or sealed under another key)")

// Open decrypts what Seal made for the same (env, name, key).
func (b *Box) Open(env, name, key string, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrTampered
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], aad(env, name, key))
	if err != nil {
		return nil, ErrTampered
	}
	return out, nil
}
