// Package registry is Berth's built-in OCI distribution registry: an
// http.Handler for /v2/ that implements the OCI Distribution Specification
// v1.1 (pull, push, content discovery, content management, referrers) over a
// content-addressed store on disk, a Go API with the same checks for
// in-process writers (PutBlob, PutManifest, Copy, Resolve, Tag, Delete),
// garbage collection of blobs no manifest references, and the limits a
// shared registry needs: blob size, upload sessions per credential,
// expiry of abandoned uploads (Run), and bytes per quota group.
//
// It owns everything under its Dir and nothing else. It does not decide who
// may pull or push (the Authorizer the composition root passes does), nor
// which quota a repository counts against (Config.Quota says), and it does
// not talk to containerd: the node pulls from it like from any other
// registry.
package registry
