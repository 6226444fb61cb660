#!/usr/bin/env bash
# Installs, from Debian's packages, what Berth needs on the machine and only
# what is missing: containerd, runc, the CNI plugins, iptables, and the tools
# the tests and benchmarks use (nginx, wrk, skopeo, make, chromium).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; }
have containerd || need+=(containerd)
have runc || need+=(runc)
have /usr/lib/cni/bridge || need+=(containernetworking-plugins)
have iptables || need+=(iptables)
have ip || need+=(iproute2)
have make || need+=(make)
have nginx || need+=(nginx-light)
have wrk || need+=(wrk)
have skopeo || need+=(skopeo)
have debootstrap || need+=(debootstrap)
have git || need+=(git)
have curl || need+=(curl ca-certificates)
# The Kubernetes test cluster (scripts/k8s) makes its PKI with openssl.
have openssl || need+=(openssl)
# The dashboard's end-to-end test drives Debian's Chromium headless
# (e2e/dashboard_test.go); fonts-dejavu-core gives its pages a font.
have chromium || need+=(chromium)
have /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian containerd package may start a system containerd; Berth runs
# its own under its data dir and does not need it, but it does no harm.
modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
