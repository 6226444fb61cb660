// Package dns is each environment's name server: one small authoritative
// responder per environment, listening on that environment's bridge address
// (port 53, UDP and TCP), that answers the names of the environment's
// Services and Functions with the bridge address itself, where the gateway
// listens. A container's `http://orders/` therefore goes to the gateway on
// its own bridge, which routes it within the environment.
//
// It answers NAME, NAME.ENV and NAME.ENV.DOMAIN (A records; other types get
// an empty answer) for workloads the asking environment may reach, as the
// Names it is given decide: its own, and those of environments whose
// allowFrom lists it. Names under a platform endpoint
// (BUCKET.s3.ENV.DOMAIN) are answered as the endpoint's when Names says it
// has subdomains (Subdomains). Everything else is NXDOMAIN, and nothing is ever
// forwarded to another server: an instance learns no name outside its
// environment, and no query leaves the host. It must not decide routing or
// policy itself, nor touch the network configuration (package cni does).
package dns
