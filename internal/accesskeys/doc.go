// Package accesskeys issues and looks up the access key pairs that sign
// requests to Berth's AWS-compatible APIs (SigV4): keys issued to a token
// (stored with their secret sealed by the data dir's key, since SigV4 needs
// the secret itself to verify), and the key pair of each environment's
// instances, derived from a key of the data dir and the environment's UID
// (nothing stored: an environment deleted and made again under the same
// name gets new keys).
//
// It does not decide what a key may do: a token key acts as its token (the
// caller resolves the token's environments and role at each request, so
// revoking or narrowing the token applies at once), an instance key as a
// deployer of its own environment only.
package accesskeys
