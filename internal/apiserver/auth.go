package apiserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	v1 "berth.dev/berth/api/v1"
)

// Authorizer decides whether a request under /api/v1/ may proceed. It
// answers nil, or an *v1.Error of kind Unauthorized (no valid credential) or
// Forbidden (a valid credential without the right). Environment-scoped
// tokens with roles are a second implementation of this, reading the path
// and method; nothing else in the server checks credentials.
type Authorizer interface {
	Authorize(r *http.Request) error
}

// TokenAuthorizer admits requests that carry the one admin bearer token.
type TokenAuthorizer struct {
	// sum is the token's SHA-256: comparing digests of equal length keeps
	// the comparison constant-time whatever length the caller sends.
	sum [sha256.Size]byte
	set bool
}

var _ Authorizer = (*TokenAuthorizer)(nil)

// NewTokenAuthorizer admits bearer token. An empty token admits nobody, so
// a server started without one fails closed.
func NewTokenAuthorizer(token string) *TokenAuthorizer {
	return &TokenAuthorizer{sum: sha256.Sum256([]byte(token)), set: token != ""}
}

func (a *TokenAuthorizer) Authorize(r *http.Request) error {
	token, err := bearer(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	if !a.set || subtle.ConstantTimeCompare(sum[:], a.sum[:]) != 1 {
		return v1.Errorf(v1.ErrUnauthorized, "invalid bearer token")
	}
	return nil
}
