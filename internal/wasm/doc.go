// Package wasm runs Functions whose image is a WebAssembly module
// (runtime: wasm) in the server's own process, on wazero (pure Go, no CGO).
//
// The ABI is CGI over WASI (as WAGI does): one fresh module instance per
// request, the request's metadata in environment variables, its body on
// stdin, the response (CGI headers, a blank line, the body) on stdout, the
// module's stderr into the function's log. A Go program built with
// GOOS=wasip1 that calls net/http/cgi.Serve with an ordinary http.Handler
// is such a module: no library beyond the standard one.
//
// The package owns checking and compiling modules (once per revision,
// bounded in size, structure and time, with wazero's on-disk compilation
// cache so a restart does not compile again), instantiating them per
// request within the function's limits (memory pages, timeout, start slots
// shared by all functions, no file system but the files it is given),
// the host module berth_http through which a module makes outgoing HTTP
// calls, and turning what a module did into an HTTP response, or a 502/504
// that says why. It serves requests as an http.RoundTripper the gateway calls
// in place of a network hop, so routing, concurrency caps, metrics and
// traces stay the gateway's.
//
// It must not decide how many requests a function may serve at once (the
// gateway's per-endpoint cap does), read the store, or fetch modules
// itself: its caller hands it the module's bytes. Nor may it decide where a
// module's calls may go or dial anything itself: every call goes through
// the Egress it is given (package egress, the environment's seal).
package wasm
