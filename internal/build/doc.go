// Package build makes OCI images from source without Docker, for Go,
// Python and Node. Go is a static binary (CGO off, trimmed paths, no build
// id) in a one-layer image. Python and Node run on a base layer made from
// Debian's packages (debootstrap --variant=minbase, then apt-get of the
// interpreter, cleaned), built once per runtime and release and cached;
// the source and its dependencies (pip --target /deps, npm in
// /app/node_modules, installed by the base's own pip or npm in a chroot)
// are one layer on top. Every layer is packed with sorted entries, fixed
// times and owners and the config carries no timestamps, so the same
// source gives the same digest.
//
// It writes image tarballs; getting them into the registry and onto a node
// is the caller's business.
package build
