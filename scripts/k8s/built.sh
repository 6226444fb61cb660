#!/usr/bin/env bash
# Prints the directory of the cluster's binaries when build.sh has already
# built them, and fails (exit 1) without building anything otherwise: for
# callers that must decide quickly whether a cluster can start here (the
# Go test helper skips or fails on it rather than wait ~25 minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local
command -v go >/dev/null || exit 1
# The same key as build.sh computes; keep the two in step.
key=$( (cat "$here"/{kubernetes,etcd,coredns}/go.{mod,sum} "$here/build.sh"; go version) | sha256sum | cut -c1-16)
bin="${BERTH_K8S_CACHE:-/var/cache/berth/k8s}/$key/bin"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns; do
	[ -x "$bin/$b" ] || exit 1
done
echo "$bin"
