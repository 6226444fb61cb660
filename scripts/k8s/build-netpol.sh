#!/usr/bin/env bash
# Builds kube-network-policies (SIG Network's NetworkPolicy enforcer:
# nftables through netlink plus NFQUEUE, no other tools) from the Go module
# proxy, at the version the wrapper module netpol/ pins. Cached like
# build.sh's binaries. Prints the binary's path on its last line.
# Cold on 2 cores: a few minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local
key=$( (cat "$here"/netpol/go.{mod,sum} "$0"; go version) | sha256sum | cut -c1-16)
bin="${BERTH_K8S_CACHE:-/var/cache/berth/k8s}/netpol-$key/kube-network-policies"
if [ ! -x "$bin" ]; then
	mkdir -p "$(dirname "$bin")"
	echo "k8s: building kube-network-policies" >&2
	(cd "$here/netpol" && go build -trimpath -o "$bin.tmp" sigs.k8s.io/kube-network-policies/cmd)
	mv -f "$bin.tmp" "$bin"
fi
echo "$bin"
