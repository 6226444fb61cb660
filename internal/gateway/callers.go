package gateway

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	v1 "berth.dev/berth/api/v1"
)

// Requests from inside an environment arrive on that environment's bridge
// listener and are routed as that environment's: only to its own targets,
// by a bare NAME, by NAME.ENV(.DOMAIN) or by route path, and to another
// environment's NAME.ENV.DOMAIN only if that environment lets the caller in
// (spec.allowFrom). Requests on the user's listener (loopback) carry no
// caller and may reach everything, as before.

// ForEnvironment is the gateway as seen from inside environment env: the
// handler of env's bridge listener.
func (g *Gateway) ForEnvironment(env string) http.Handler {
	env = strings.ToLower(env)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.serve(w, r, env, true)
	})
}

// ForCallers is the gateway as seen from a network whose callers are
// told apart by their address (the pods of a Kubernetes cluster): envOf
// names the environment of the caller at an IP, and a caller it does not
// know is refused, never treated as the user's loopback.
func (g *Gateway) ForCallers(envOf func(net.IP) (string, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		env, ok := "", false
		if err == nil && ip != nil {
			env, ok = envOf(ip)
		}
		if !ok {
			writeError(w, v1.ErrForbidden, fmt.Sprintf("caller %s is not an instance of any environment", host))
			return
		}
		g.serve(w, r, strings.ToLower(env), true)
	})
}

// environments is what the gateway knows of environments: which exist and
// whom each lets in.
type environments struct {
	mu        sync.RWMutex
	allowFrom map[string][]string // by environment; nil slice: exists, allows none
}

// SetAllowFrom records that env exists and which environments may call
// into it. Until it is called for env, calls into env from elsewhere are
// refused.
func (g *Gateway) SetAllowFrom(env string, from []string) {
	g.envs.mu.Lock()
	defer g.envs.mu.Unlock()
	if g.envs.allowFrom == nil {
		g.envs.allowFrom = map[string][]string{}
	}
	lower := make([]string, 0, len(from))
	for _, f := range from {
		lower = append(lower, strings.ToLower(f))
	}
	g.envs.allowFrom[strings.ToLower(env)] = lower
}

// ForgetEnvironment drops env's policy: nothing may call into it from
// another environment any more.
func (g *Gateway) ForgetEnvironment(env string) {
	g.envs.mu.Lock()
	delete(g.envs.allowFrom, strings.ToLower(env))
	g.envs.mu.Unlock()
}

// allowed reports whether workloads of from may call into to.
func (g *Gateway) allowed(from, to string) bool {
	if from == to {
		return true
	}
	g.envs.mu.RLock()
	defer g.envs.mu.RUnlock()
	return slices.Contains(g.envs.allowFrom[to], from)
}

func (g *Gateway) knownEnvironment(env string) bool {
	g.envs.mu.RLock()
	defer g.envs.mu.RUnlock()
	_, ok := g.envs.allowFrom[env]
	return ok
}

// Reachable reports whether a workload of environment from may call the
// target name of environment env: the target exists and env is from's own
// or lets from in. The environments' DNS answers exactly these names.
func (g *Gateway) Reachable(from, env, name string) bool {
	from, env, name = strings.ToLower(from), strings.ToLower(env), strings.ToLower(name)
	if g.platform[name] != nil {
		return from == env && g.knownEnvironment(env)
	}
	return g.table.Load().byHost[name+"."+env] != nil && g.allowed(from, env)
}

// miss says why a request has no target: an error of kind.
type miss struct {
	kind string
	msg  string
}

func notFound(msg string) miss { return miss{v1.ErrNotFound, msg} }

// routeFrom routes a request made from inside environment caller.
func (g *Gateway) routeFrom(t *table, r *http.Request, caller string) (*route, miss) {
	host := strings.ToLower(strings.TrimSuffix(stripPort(r.Host), "."))
	var name, env string
	if sub, ok := strings.CutSuffix(host, g.suffix); ok {
		if n, e, ok := strings.Cut(sub, "."); ok && !strings.Contains(e, ".") {
			name, env = n, e
		}
	} else if host != "" && !strings.Contains(host, ".") && net.ParseIP(host) == nil {
		name, env = host, caller
	} else if n, e, ok := strings.Cut(host, "."); ok && !strings.Contains(e, ".") && (e == caller || g.knownEnvironment(e)) {
		name, env = n, e
	}
	if name != "" && env != "" {
		if !g.allowed(caller, env) {
			return nil, miss{v1.ErrForbidden, fmt.Sprintf(
				"environment %s may not call environment %s (%s.%s%s): %s does not list %s in spec.allowFrom",
				caller, env, name, env, g.suffix, env, caller)}
		}
		if rt := t.byHost[name+"."+env]; rt != nil {
			return rt, miss{}
		}
		return nil, notFound(fmt.Sprintf("no service %s in environment %s", name, env))
	}
	// Route paths are global on the user's listener; from inside an
	// environment only its own targets' paths count.
	for _, rt := range t.byPath {
		if rt.env == caller && matchPath(rt.path, r.URL.Path) {
			return rt, miss{}
		}
	}
	return nil, notFound(fmt.Sprintf("no route for host %s and path %s in environment %s", r.Host, r.URL.Path, caller))
}
