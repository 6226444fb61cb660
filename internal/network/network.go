// Package network gives instances their network: a network namespace per
// instance attached by CNI plugins to a bridge per environment, with the
// host able to reach every instance by IP.
//
// It owns namespaces, bridges, IP allocation, the isolation rules between
// environments and between instances and the host, and each environment's
// DNS (package dns); it does not know about containers or services.
package network

import (
	"context"
	"net"
)

// Attachment is an instance's place on the network.
type Attachment struct {
	// NetNSPath is a bind-mounted network namespace the container joins.
	NetNSPath string
	IP        net.IP
	// Gateway is the bridge's address in the environment's subnet; the
	// platform's gateway and the environment's DNS listen on it.
	Gateway net.IP
	// DNS is what the instance's resolv.conf says.
	DNS DNSConfig
}

// DNSConfig points an instance at its environment's name server, so that
// NAME and NAME.ENV.DOMAIN resolve to the gateway on its own bridge.
type DNSConfig struct {
	Nameservers []string
	Search      []string
}

// Manager attaches instances to their environment's network.
type Manager interface {
	// Attach creates the namespace for id and connects it to environment's
	// bridge. Attaching an id that is already attached returns the existing
	// attachment (idempotent, for re-attach after a restart).
	Attach(ctx context.Context, id, environment string) (Attachment, error)
	// Detach disconnects and removes the namespace; a missing id is not an
	// error.
	Detach(ctx context.Context, id, environment string) error
	// Lookup returns an existing attachment; NotFound if absent.
	Lookup(ctx context.Context, id, environment string) (Attachment, error)
}
