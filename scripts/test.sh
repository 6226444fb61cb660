#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it. As root it also brings up
# a real single-node Kubernetes cluster (scripts/k8s: built once from the
# Go module proxy and cached outside the clone) for the kubernetes
# backend's tests, shares it with every package through BERTH_KUBECONFIG,
# and tears it down by its recorded pids at the end.
#
#   GO, TESTFLAGS, PKGS   as in the Makefile
#   BERTH_KUBECONFIG      use this running cluster instead of starting one
#   BERTH_K8S=0           start none (the kubernetes tests then skip, or
#                         fail under BERTH_NO_SKIP)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
TESTFLAGS=${TESTFLAGS:--count=1 -timeout 40m}
PKGS=${PKGS:-./...}

if [ "$(id -u)" -eq 0 ] && [ -z "${BERTH_KUBECONFIG:-}" ] && [ "${BERTH_K8S:-1}" != 0 ]; then
	echo "==> Kubernetes binaries (cached after the first build; ~25 min cold on 2 cores)" >&2
	scripts/k8s/build.sh >/dev/null
	dir=${BERTH_K8S_DIR:-/tmp/berth-k8s-ci}
	trap 'echo "==> stopping the test cluster" >&2; scripts/k8s/down.sh "$dir" >/dev/null 2>&1 || true' EXIT
	echo "==> starting a single-node cluster in $dir" >&2
	BERTH_KUBECONFIG=$(scripts/k8s/up.sh "$dir" | tail -n1)
	export BERTH_KUBECONFIG
fi
# shellcheck disable=SC2086
$GO test $TESTFLAGS $PKGS
