package gateway

import (
	"fmt"
	"net/http"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// PlatformHandler serves one of the platform's own endpoints that every
// environment has on the gateway (s3, kv): the request's environment, and
// sub, the host's labels before the name (a virtual-host-style bucket).
type PlatformHandler interface {
	ServePlatform(w http.ResponseWriter, r *http.Request, env, sub string)
}

// SetPlatform serves name.ENV.DOMAIN and SUB.name.ENV.DOMAIN of every
// environment with h (and, from inside an environment, the bare name and
// name.ENV). Call it before serving. An environment's own instances reach
// only their own environment's endpoint: allowFrom opens workloads, not
// an environment's state.
func (g *Gateway) SetPlatform(name string, h PlatformHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.platform == nil {
		g.platform = map[string]PlatformHandler{}
	}
	g.platform[strings.ToLower(name)] = h
}

// platformTarget finds the platform endpoint a host names: its handler,
// environment and sub-host.
func (g *Gateway) platformTarget(host, caller string) (h PlatformHandler, env, sub string) {
	if len(g.platform) == 0 {
		return nil, "", ""
	}
	// On every request: stripPort rather than net.SplitHostPort, whose
	// error for a host without a port is an allocation.
	host = strings.ToLower(strings.TrimSuffix(stripPort(host), "."))
	rest, ok := strings.CutSuffix(host, g.suffix)
	if !ok {
		if caller == "" {
			return nil, "", ""
		}
		// From inside: NAME (this environment's) or NAME.ENV.
		name, e, dotted := strings.Cut(host, ".")
		if !dotted {
			e = caller
		}
		if h := g.platform[name]; h != nil && !strings.Contains(e, ".") && (e == caller || g.knownEnvironment(e)) {
			return h, e, ""
		}
		return nil, "", ""
	}
	// SUB.NAME.ENV: the last two labels, without splitting the rest.
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return nil, "", ""
	}
	env, rest = rest[i+1:], rest[:i]
	name := rest
	if j := strings.LastIndexByte(rest, '.'); j >= 0 {
		name, sub = rest[j+1:], rest[:j]
	}
	if h = g.platform[name]; h == nil {
		return nil, "", ""
	}
	return h, env, sub
}

// servePlatform answers r, from inside environment caller ("": the
// user's listener), when its host names a platform endpoint; it reports
// whether it did.
func (g *Gateway) servePlatform(w http.ResponseWriter, r *http.Request, caller string) bool {
	h, env, sub := g.platformTarget(r.Host, caller)
	if h == nil {
		return false
	}
	switch {
	case caller != "" && caller != env:
		writeError(w, v1.ErrForbidden, fmt.Sprintf("environment %s may not use the object or key-value store of environment %s", caller, env))
	case !g.knownEnvironment(env):
		writeError(w, v1.ErrNotFound, fmt.Sprintf("no environment %s", env))
	default:
		h.ServePlatform(w, r, env, sub)
	}
	return true
}

// HasSubdomains says whether names under name.ENV (BUCKET.s3.ENV) are the
// platform's, for the environments' DNS.
func (g *Gateway) HasSubdomains(name string) bool {
	return g.platform[strings.ToLower(name)] != nil
}
