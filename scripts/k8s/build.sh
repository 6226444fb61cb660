#!/usr/bin/env bash
# Builds the binaries of a single-node Kubernetes cluster from the Go module
# proxy (no release tarballs): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl and CoreDNS. The versions are
# pinned by the wrapper modules beside this script (kubernetes/, etcd/,
# coredns/). The binaries are cached outside the clone, in a directory keyed
# by those modules and the Go version, so a second run costs nothing.
#
# Prints the bin directory on its last line. Cold on 2 cores: ~25 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local

K8S_VERSION=v1.37.2
key=$( (cat "$here"/{kubernetes,etcd,coredns}/go.{mod,sum} "$0"; go version) | sha256sum | cut -c1-16)
cache=${BERTH_K8S_CACHE:-/var/cache/berth/k8s}
bin="$cache/$key/bin"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns)

have_all() {
	for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done
}
if have_all; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache/$key"
tmp=$(mktemp -d "$cache/$key/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
step() { echo "k8s build [$(($(date +%s) - t0))s] $*" >&2; }

# Without these, kubectl cannot parse the server's version.
V=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	V+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=37"
	V+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [ ! -x "$bin/etcd" ]; then
	step "etcd"
	(cd "$here/etcd" && go build -trimpath -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
fi
if [ ! -x "$bin/coredns" ]; then
	step "coredns"
	(cd "$here/coredns" && go build -trimpath -o "$tmp/coredns" github.com/coredns/coredns)
fi
k8s=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for b in "${k8s[@]}"; do [ -x "$bin/$b" ] || missing+=("k8s.io/kubernetes/cmd/$b"); done
if [ ${#missing[@]} -gt 0 ]; then
	# One build of all of them: they share most of their compile work.
	step "kubernetes ${K8S_VERSION} (${#missing[@]} programs; ~20 min cold on 2 cores)"
	(cd "$here/kubernetes" && go build -trimpath -ldflags "$V" -o "$tmp/" "${missing[@]}")
fi
mkdir -p "$bin"
for f in "$tmp"/*; do
	[ -e "$f" ] && mv -f "$f" "$bin/"
done
have_all || { echo "k8s build: binaries missing in $bin" >&2; exit 1; }
step "done"
echo "$bin"
