package v1

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// TemplateHash is a short, stable fingerprint of what a template runs: the
// first 10 hex digits of the SHA-256 of its defaulted JSON form. Templates
// that differ only in spelled-out defaults hash the same, so writing
// `port: 8080` where it was implied makes no new revision. A field added to
// Template later with omitempty leaves existing hashes alone.
func TemplateHash(t Template) string {
	// DefaultTemplate replaces pointers rather than writing through them,
	// so defaulting this copy leaves the caller's template as it was.
	DefaultTemplate(&t)
	// encoding/json writes struct fields in declaration order and map keys
	// sorted, so equal templates give equal bytes. A Template holds only
	// strings, numbers and bools: it always marshals.
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}
