// Package build makes OCI images from source without Docker. This release
// knows Go: a static binary (CGO off, trimmed paths, no build id) in a
// one-layer image with fixed timestamps, assembled with
// go-containerregistry, so the same source gives the same digest.
//
// It writes image tarballs; getting them onto a node (import, push) is the
// caller's business.
package build
