// Package gateway is Berth's HTTP data plane: it routes each request to a
// Service or Function by host (NAME.ENV.berth.localhost) or by route path,
// balances across the target's ready endpoints by least outstanding
// requests, retries connection failures on another endpoint, drains
// endpoints for zero-downtime rollouts and counts what it served (Collector:
// the Prometheus metrics of its requests, which the composition root
// registers). Besides the
// user's listener it serves each environment on its bridge address
// (Listeners, ForEnvironment), where a request is routed only within that
// environment, or into another one whose allowFrom lists it (403 otherwise).
// The platform's own endpoints of each environment (s3.ENV, kv.ENV and
// their subdomains: SetPlatform) are served by their handlers, reached from
// inside an environment only for that environment.
//
// On the user's listener, on Linux, the plain HTTP/1.1 request to a ready
// endpoint reached over the network is served by event loops
// (loop_linux.go), one per core, as nginx serves it: each loop owns its
// client and endpoint connections, waits for all of them in one
// epoll_wait, reads a socket only when it has bytes, relays answers of
// every framing with backpressure and keeps its own idle connections per
// endpoint. Routing, balancing, retries, health, tracing and metrics are
// the same functions as on the other path. A connection whose request the
// loops do not take (anything listed below, a large or chunked body, a
// platform host, a target at zero or at its cap, a miss) goes with the
// bytes read to Server's goroutines for the rest of its life.
// BERTH_GATEWAY_LOOPS=0 turns the loops off.
//
// It speaks HTTP/1.1 and h2c to clients (Protocols) through its own
// server (Server, server.go): a plain HTTP/1.1 request (package h1) is
// read and answered on the connection's goroutine with the request, its
// headers and the response writer reused, and everything else (h2c,
// protocol switches, 100-continue, chunked bodies, bad input) is handed
// with the bytes already read to net/http's server on the same
// connection. Plain requests go to
// instances over its own HTTP/1.1 client with a keep-alive pool per
// endpoint (h1.go, h1resp.go, proxy.go): the handler's goroutine writes
// the request and reads the answer itself, which is most of why it is
// fast. Protocol
// switches (WebSockets) and gRPC, which goes to instances over h2c, take
// httputil.ReverseProxy. An endpoint whose connections keep failing rests
// for a while (passive health checks).
//
// It owns the routing table, per-endpoint in-flight counts, connection
// pools and health marks. It does not
// watch the store or decide which endpoints are ready: the platform pushes
// the whole table with SetTargets whenever anything changes. Scale from zero
// is not done here either; a Function with no endpoints is handed to an
// optional Activator.
package gateway
