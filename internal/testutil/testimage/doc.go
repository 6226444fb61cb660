// Package testimage builds the images Berth's tests run, without Docker: it
// compiles the echo program in ./echo as a static binary and packs it with
// go-containerregistry into a docker-save tarball that containerd (or the
// built-in registry) can import.
//
// It is for tests only; it needs the go toolchain on PATH.
package testimage
