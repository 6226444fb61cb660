#!/usr/bin/env bash
# Stops the cluster that up.sh started in STATE_DIR and removes what it left
# on the host: only the processes recorded in STATE_DIR/pids (and the
# containerd shims serving that cluster's own socket) are signalled.
#
#   scripts/k8s/down.sh [STATE_DIR]    (default $BERTH_K8S_DIR or /var/lib/berth-k8s)
#
# Order matters: pods are deleted first while the kubelet still runs, so
# their sandboxes are torn down through CNI (network namespaces, addresses)
# rather than killed under it; the controllers go before that so nothing
# recreates them. The PKI and the logs stay; the data goes.
set -uo pipefail
S=${1:-${BERTH_K8S_DIR:-/var/lib/berth-k8s}}
[ -d "$S" ] || exit 0
S=$(cd "$S" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
B=$(cat "$S/bindir" 2>/dev/null || true)
K=("$B/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=10s)
CTR=(ctr -a "$CTD_SOCK" -n k8s.io)

# 1. Pods, while the API and the kubelet run.
stop kube-scheduler
stop kube-controller-manager
if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && [ -x "$B/kubectl" ]; then
	"${K[@]}" delete pods --all --all-namespaces --grace-period=2 --wait=false >/dev/null 2>&1
	end=$(($(date +%s) + 60))
	while [ "$(date +%s)" -lt "$end" ]; do
		[ -z "$("${K[@]}" get pods -A -o name 2>/dev/null)" ] && break
		sleep 0.5
	done
	ts "pods deleted"
fi

# 2. The node's agents and the add-ons.
stop kubelet
stop kube-proxy
stop coredns
# kube-proxy removes every rule it made (KUBE-* chains and the jumps to
# them). Like kube-proxy itself, this assumes no other Kubernetes on the host.
if [ -x "$B/kube-proxy" ]; then
	"$B/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
ts "node agents stopped"

# 3. containerd: what the kubelet did not tear down is killed here. The
# network namespaces of its sandboxes are noted first, to be removed after.
netns=()
if pid_of containerd >/dev/null; then
	for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
		while read -r ns; do netns+=("$ns"); done < <("${CTR[@]}" containers info "$c" 2>/dev/null |
			grep -o '"/var/run/netns/cni-[0-9a-f-]*"' | tr -d '"')
	done
	for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1; done
	for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1; done
	for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
ts "containerd stopped"
# Shims outlive containerd; the ones serving this cluster's socket are ours.
for d in /proc/[0-9]*; do
	if [ "$(readlink "$d/exe" 2>/dev/null)" = "$(readlink -f "$(command -v containerd-shim-runc-v2)")" ] &&
		tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "-address $CTD_SOCK "; then
		kill -KILL "${d#/proc/}" 2>/dev/null
	fi
done

# 4. The control plane.
stop kube-apiserver
stop etcd

# 5. Mounts under the state dir (pod volumes, rootfs, sandbox shm) and the
# sandboxes' network namespaces.
grep -oE " $S/[^ ]+" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for ns in "${netns[@]}"; do
	umount -l "$ns" 2>/dev/null
	rm -f "$ns"
done

# 6. The bridge (its route goes with it) and what kube-proxy's cleanup
# leaves (the kubelet's KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT chains):
# the jumps to KUBE-* chains, then the chains.
ip link del "$BRIDGE" 2>/dev/null
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null || continue
	for t in nat filter mangle; do
		"$ipt-save" -t "$t" 2>/dev/null | grep -E '^-A .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A/-D/' |
			while read -r rule; do eval "$ipt -w -t $t $rule" 2>/dev/null; done
		for c in $("$ipt-save" -t "$t" 2>/dev/null | grep -oE '^:KUBE-[A-Z0-9-]+' | tr -d :); do
			"$ipt" -w -t "$t" -F "$c" 2>/dev/null
		done
		for c in $("$ipt-save" -t "$t" 2>/dev/null | grep -oE '^:KUBE-[A-Z0-9-]+' | tr -d :); do
			"$ipt" -w -t "$t" -X "$c" 2>/dev/null
		done
	done
done

# 7. The kubelet's cgroups (cgroupfs driver: kubepods in each hierarchy),
# deepest first; only empty ones can go, which is all of them by now.
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
	[ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 8. The data: fresh at every start anyway.
rm -rf --one-file-system "$S/etcd" "$S/kubelet" "$S/containerd" "$S/cni" "$S/apiserver-certs"
left=""
for c in "${COMPONENTS[@]}"; do
	f=$(pidfile "$c")
	[ -f "$f" ] && left+=" $c"
done
[ -z "$left" ] || echo "k8s: still recorded:$left" >&2
ts "cluster in $S stopped"
