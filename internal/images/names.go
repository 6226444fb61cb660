package images

import (
	"net"
	"strings"

	"github.com/distribution/reference"

	v1 "berth.dev/berth/api/v1"
)

// names maps image names to repositories of the built-in registry.
//
// An image's repository is its name without a registry host: "hello:v1"
// and "docker.io/library/hello:v1" are repository hello, tag v1;
// "team/api:3" is team/api; a name whose first part is a host other than
// this registry keeps it ("berth.dev/examples/hello:v1" is repository
// berth.dev/examples/hello); "127.0.0.1:7070/team/echo:v1" (this
// registry's own address) is team/echo. Hosts with a port other than this
// registry's have no repository here.
type names struct {
	host string          // HOST:PORT the node's containerd pulls from (loopback)
	own  map[string]bool // hosts that name this registry
}

// newNames knows the registry served on addr (the API's listen address).
func newNames(addr string) names {
	if addr == "" {
		return names{own: map[string]bool{}}
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	n := names{host: net.JoinHostPort(host, port)}
	n.own = map[string]bool{n.host: true, "127.0.0.1:" + port: true, "localhost:" + port: true, addr: true}
	return n
}

// repoRef is an image name mapped to the built-in registry.
type repoRef struct {
	named  reference.Named // normalized, as containerd names it
	repo   string
	tag    string // "latest" when the name has neither tag nor digest
	digest string
	// hub is true for a name without a registry host (Docker Hub style).
	hub bool
}

// ref is what the registry resolves: the digest when there is one.
func (r repoRef) ref() string {
	if r.digest != "" {
		return r.digest
	}
	return r.tag
}

func (r repoRef) String() string {
	if r.digest != "" {
		return r.repo + "@" + r.digest
	}
	return r.repo + ":" + r.tag
}

// mapName maps ref to a repository of the built-in registry; ok is false
// when the name has none (a host with a port other than this registry's).
func (n names) mapName(ref string) (repoRef, bool, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return repoRef{}, false, v1.FieldError("image", "bad image reference %q: %v", ref, err)
	}
	r := repoRef{named: named, tag: "latest"}
	if t, ok := named.(reference.Tagged); ok {
		r.tag = t.Tag()
	}
	if c, ok := named.(reference.Canonical); ok {
		r.digest = c.Digest().String()
		if _, tagged := named.(reference.Tagged); !tagged {
			r.tag = ""
		}
	}
	domain, path := reference.Domain(named), reference.Path(named)
	switch {
	case domain == "docker.io":
		r.repo = reference.FamiliarName(reference.TrimNamed(named))
		r.hub = !strings.HasPrefix(ref, "docker.io/") && !strings.HasPrefix(ref, "index.docker.io/")
	case n.own[domain]:
		r.repo = path
	case strings.Contains(domain, ":"):
		return r, false, nil
	default:
		r.repo = domain + "/" + path
	}
	return r, true, nil
}

// pullRef is the reference the node's containerd pulls repo@digest by:
// this registry on loopback (anonymous pulls from loopback are allowed).
func (n names) pullRef(repo, digest string) string {
	return n.host + "/" + repo + "@" + digest
}
