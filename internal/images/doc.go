// Package images is where images live for the API server and the
// controllers: the built-in registry (what users push, build and import;
// what revisions pin) and the node's containerd (what runs).
//
// It owns the mapping of image names to the registry's repositories
// (unqualified names are repositories of the built-in registry), the
// ownership of repositories (ENV/... belongs to environment ENV when it
// exists; everything else is shared) and the checks of who may read and
// write them, resolving a reference to the digest a revision pins (one pull
// per reference however many callers wait for it), and imports of OCI
// layout and docker-save archives: their blobs and manifests are written
// into the registry in-process, and the node's containerd imports the same
// archive byte for byte with its own importer, so both hold the same
// digests.
//
// It must not speak HTTP to the registry (it has the registry's Go API),
// hold credentials, or decide roles: the API server says what a caller may
// do (Access), this package says which repositories that covers. It does
// not run containers.
package images
