// Package egress is the one door through which the platform makes an
// outgoing call on behalf of an environment: a workflow's http(s) task, an
// async invocation's callback, an image pulled from a URL a user gave. Each
// environment gets its own http.Client whose dialer checks every address it
// is about to connect to (net.Dialer.Control, after DNS resolution, for
// every redirect and every retry), so a name that resolves differently the
// second time (DNS rebinding) or a redirect to an internal address is
// caught where it matters: at connect.
//
// The rule is the environment's seal, as its containers live it:
//
//   - never another environment's subnet, never an address of the host
//     itself (loopback, every interface's address, the bridges' gateway
//     addresses), never link-local (169.254.0.0/16 with the clouds'
//     metadata services, fe80::/10), multicast, broadcast, unspecified or
//     reserved addresses, nor anything in Config.Deny;
//   - the environment's own instances by address;
//   - the environment's own services by name (NAME, NAME.ENV,
//     NAME.ENV.DOMAIN, over http on port 80) through the gateway's
//     listener on the environment's own bridge, exactly where a container's
//     `http://orders/` lands: routed as the environment, allowFrom applied;
//   - everything else, that is public addresses and private ones outside
//     the platform (the host's LAN), as a container reaches them through
//     masquerade. IPv6 is allowed only for global unicast (2000::/3, minus
//     6to4 and Teredo, which embed IPv4 addresses).
//
// It owns that decision and the clients that enforce it. It does not know
// environments' subnets or where the gateway listens: the composition root
// injects both (Networks, Doors), read at every connection, so an
// environment made or removed later counts at once. It must not be bypassed:
// no other part may send a request to a URL a user chose with a client of
// its own.
package egress
