// Package registry is Berth's built-in OCI distribution registry: an
// http.Handler for /v2/ that implements the OCI Distribution Specification
// v1.1 (pull, push, content discovery, content management, referrers) over a
// content-addressed store on disk, plus garbage collection of blobs no
// manifest references.
//
// It owns everything under its Dir and nothing else. It does not decide who
// may pull or push (the Authorizer the composition root passes does), and it
// does not talk to containerd: the node pulls from it like from any other
// registry.
package registry
