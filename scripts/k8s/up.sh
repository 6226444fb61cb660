#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine, for the
# tests and benchmarks of Berth's Kubernetes backend: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, a private containerd, CoreDNS,
# kube-proxy (iptables) and a kubelet, all on 127.0.0.1 and the cluster's
# own bridge (bk8s0, pods 10.244.0.0/24, services 10.96.0.0/24).
#
#   scripts/k8s/up.sh [STATE_DIR]    (default $BERTH_K8S_DIR or /var/lib/berth-k8s)
#
# Idempotent: when the cluster in STATE_DIR already runs, it only prints the
# kubeconfig. Every process is recorded in STATE_DIR/pids; down.sh stops
# them. Progress and timings go to stderr; the last line on stdout is the
# admin kubeconfig's path. BERTH_K8S_KEEP_ON_FAIL=1 leaves a failed start
# running to debug it. NetworkPolicies are not enforced (see README.md).
set -euo pipefail
S=${1:-${BERTH_K8S_DIR:-/var/lib/berth-k8s}}
mkdir -p "$S"
S=$(cd "$S" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local

# --- prerequisites -----------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "needs root (containerd, bridges, iptables)"
for c in containerd containerd-shim-runc-v2 runc ctr openssl iptables iptables-save ip setsid; do
	command -v "$c" >/dev/null || die "$c not found; run scripts/install-deps.sh"
done
for p in bridge host-local loopback portmap; do
	[ -x "$CNI_BIN/$p" ] || die "CNI plugin $CNI_BIN/$p not found; run scripts/install-deps.sh"
done
# A unix socket path must fit in 108 bytes.
[ ${#CTD_SOCK} -lt 100 ] || die "state dir $S is too long for containerd's socket path"

node_ready() {
	[ "$("$B/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" get node "$NODE" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
running() {
	local c
	[ -f "$S/bindir" ] || return 1
	B=$(cat "$S/bindir")
	for c in "${COMPONENTS[@]}"; do
		pid_of "$c" >/dev/null || return 1
	done
	node_ready
}
if running; then
	ts "already running in $S"
	echo "$KUBECONFIG_ADMIN"
	exit 0
fi
# Anything half-started before goes first, by its recorded pids.
if compgen -G "$S/pids/*.pid" >/dev/null; then
	ts "stopping what is left of an earlier start"
	"$K8S_SCRIPTS/down.sh" "$S" >&2
fi
# The ports are fixed: one cluster per host.
busy=""
for p in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" 10248 10249 10250 10256 10257 10259 18181; do
	[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || busy+=" $p"
done
[ -z "$busy" ] || die "ports in use:$busy. Another cluster? Stop it (scripts/k8s/down.sh ITS_DIR) or use it (BERTH_KUBECONFIG)"

# From here on, a failed start takes down what it started.
on_exit() {
	local rc=$?
	[ "$rc" -eq 0 ] && return
	echo "k8s: up.sh failed (exit $rc); logs in $S/logs" >&2
	if [ -z "${BERTH_K8S_KEEP_ON_FAIL:-}" ]; then
		"$K8S_SCRIPTS/down.sh" "$S" >&2 || true
	fi
}
trap on_exit EXIT

# --- binaries ------------------------------------------------------------------
B=$("$K8S_SCRIPTS/build.sh" | tail -n 1)
[ -x "$B/kube-apiserver" ] || die "build.sh did not give a bin dir"
echo "$B" >"$S/bindir"
K=("$B/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")
ts "binaries in $B"

# Fresh data every start; the PKI is kept so kubeconfigs stay valid.
rm -rf --one-file-system "$S/etcd" "$S/kubelet" "$S/containerd" "$S/cni" "$S/logs"
mkdir -p "$S/pids" "$S/logs" "$S/pki" "$S/etcd" "$S/kubelet" "$S/containerd" "$S/cni/net.d" "$S/cni/ipam" "$S/images"

# --- PKI -------------------------------------------------------------------------
P=$S/pki
b64() { base64 -w0 "$1"; }
kubeconfig() { # NAME OUT
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth-k8s
  cluster: {server: "$API_URL", certificate-authority-data: $(b64 "$P/ca.crt")}
users:
- name: $1
  user: {client-certificate-data: $(b64 "$P/$1.crt"), client-key-data: $(b64 "$P/$1.key")}
contexts:
- name: berth-k8s
  context: {cluster: berth-k8s, user: $1}
current-context: berth-k8s
EOF
	chmod 0600 "$2"
}
cert() { # NAME SUBJECT EXTENSIONS
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$P/$1.key" \
		-subj "$2" -out "$P/$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$P/$1.ext"
	openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
		-days 3650 -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
	rm -f "$P/$1.csr" "$P/$1.ext"
}
if [ ! -s "$P/done" ]; then
	rm -rf "${P:?}"/*
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj "/CN=berth-k8s-ca" -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
	client="extendedKeyUsage=clientAuth"
	cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SVC_API_IP,IP:$POD_GW,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN"
	cert admin "/O=system:masters/CN=berth-k8s-admin" "$client"
	cert kcm "/CN=system:kube-controller-manager" "$client"
	cert scheduler "/CN=system:kube-scheduler" "$client"
	cert node "/O=system:nodes/CN=system:node:$NODE" "$client"
	cert kube-proxy "/CN=system:kube-proxy" "$client"
	cert coredns "/CN=system:coredns" "$client"
	# The apiserver's client certificate for kubelets (logs, exec, and the
	# node proxy to /metrics/resource): the kubelet authorises it by webhook.
	cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
	openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
	openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
	for u in admin kcm scheduler node kube-proxy coredns; do kubeconfig "$u" "$P/$u.kubeconfig"; done
	date -u +%FT%TZ >"$P/done"
fi
cp "$P/admin.kubeconfig" "$KUBECONFIG_ADMIN"
ts "pki"

# --- images: the pause image, built from a tiny static Go program -------------
if [ ! -s "$S/images/pause.tar" ]; then
	gobuild ./scripts/k8s/images/pause "$S/images/pause.bin"
	mkimage "$S/images" pause 1 "$S/images/pause.bin" "$S/images/pause.tar"
	rm -f "$S/images/pause.bin"
fi
ts "pause image"

# --- host network: the bridge exists before any pod, so CoreDNS can bind its address
modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
	ip link add "$BRIDGE" type bridge
fi
ip addr replace "$POD_GW/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# The host reaches ClusterIPs from the bridge's address, which pods answer
# directly, with or without a default route.
ip route replace "$SVC_CIDR" dev "$BRIDGE" src "$POD_GW"
cat >"$S/cni/net.d/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$S/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
ts "bridge $BRIDGE $POD_GW"

# --- etcd ------------------------------------------------------------------------
# Throwaway data: no fsync, which matters on a shared disk.
start etcd "$B/etcd" --name berth-k8s --data-dir "$S/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "berth-k8s=http://127.0.0.1:$ETCD_PEER_PORT" \
	--unsafe-no-fsync --log-level warn
wait_until 30 etcd "etcd health" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
ts "etcd ready"

# --- kube-apiserver --------------------------------------------------------------
# Advertised on the pods' bridge, so the `kubernetes` Service has an
# endpoint and a pod (Berth installed in the cluster, say) reaches the API
# at kubernetes.default; the host's components and tools use 127.0.0.1.
# It binds every address (client certificates only: no anonymous access).
start kube-apiserver "$B/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$POD_GW" \
	--anonymous-auth=false \
	--tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt" \
	--service-account-issuer "https://kubernetes.default.svc.$DOMAIN" \
	--service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
	--service-cluster-ip-range "$SVC_CIDR" --allow-privileged=true \
	--authorization-mode Node,RBAC \
	--kubelet-client-certificate "$P/apiserver-kubelet.crt" --kubelet-client-key "$P/apiserver-kubelet.key" \
	--kubelet-preferred-address-types InternalIP \
	--cert-dir "$S/apiserver-certs" --profiling=false
wait_until 90 kube-apiserver "kube-apiserver readyz" \
	curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "$API_URL/readyz"
ts "kube-apiserver ready"

# The host-process add-ons' rights. kube-proxy's are built in
# (system:node-proxier is bound to system:kube-proxy).
"${K[@]}" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "berth-k8s:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "berth-k8s:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "berth-k8s:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
EOF

# --- controller manager and scheduler --------------------------------------------
start kube-controller-manager "$B/kube-controller-manager" --kubeconfig "$P/kcm.kubeconfig" \
	--authentication-kubeconfig "$P/kcm.kubeconfig" --authorization-kubeconfig "$P/kcm.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
	--service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
	--use-service-account-credentials=true --service-cluster-ip-range "$SVC_CIDR" \
	--allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size "${POD_CIDR#*/}" \
	--cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" --profiling=false
start kube-scheduler "$B/kube-scheduler" --kubeconfig "$P/scheduler.kubeconfig" \
	--authentication-kubeconfig "$P/scheduler.kubeconfig" --authorization-kubeconfig "$P/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false

# --- containerd (private: own root, state, socket) --------------------------------
# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE; without it every
# sandbox fails with "can't get final child's PID from pipe: EOF".
# Registries: with no config_path, containerd 1.6's CRI pulls from a host
# that is localhost or a loopback address (any port) over plain HTTP, so
# Berth's registry on 127.0.0.1:PORT works without naming its port here.
cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[metrics]
  address = ""
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
EOF
start containerd containerd --config "$S/containerd/config.toml"
CTR=(ctr -a "$CTD_SOCK" -n k8s.io)
wait_until 30 containerd "containerd" ctr -a "$CTD_SOCK" version
"${CTR[@]}" images import --base-name "${PAUSE_IMAGE%:*}" "$S/images/pause.tar" >/dev/null
ts "containerd ready, pause image imported"

# --- CoreDNS, a host process on the bridge's address --------------------------------
# Cluster names only: nothing is forwarded off the machine, other names are
# NXDOMAIN at once.
cat >"$S/Corefile" <<EOF
$DOMAIN:53 in-addr.arpa:53 {
    bind $POD_GW
    errors
    ready 127.0.0.1:18181
    kubernetes $DOMAIN in-addr.arpa {
        kubeconfig $P/coredns.kubeconfig berth-k8s
        pods insecure
    }
}
.:53 {
    bind $POD_GW
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
start coredns "$B/coredns" -conf "$S/Corefile"
wait_until 30 coredns "CoreDNS ready" curl -sf http://127.0.0.1:18181/ready
ts "coredns ready on $POD_GW:53"

# --- kubelet ---------------------------------------------------------------------
# The node's address, and the kubelet's, is the bridge's: a node IP cannot
# be loopback, and the API server's node proxy (/api/v1/nodes/N/proxy/...,
# where Berth reads /metrics/resource) refuses loopback addresses.
: >"$S/resolv.conf" # pods see cluster DNS only; nothing from the host's resolver
cat >"$S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $POD_GW
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CTD_SOCK
failSwapOn: false
failCgroupV1: false
clusterDomain: $DOMAIN
clusterDNS: [$POD_GW]
resolvConf: $S/resolv.conf
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
start kubelet "$B/kubelet" --kubeconfig "$P/node.kubeconfig" --config "$S/kubelet.yaml" \
	--root-dir "$S/kubelet" --cert-dir "$S/kubelet/pki" \
	--hostname-override "$NODE" --node-ip "$POD_GW"
wait_until 60 kubelet "node $NODE registered" "${K[@]}" get node "$NODE"
ts "node registered"

# --- kube-proxy (iptables), after the node exists so it finds its address ---------
# conntrack sysctls and route_localnet are left as they are (0 = do not touch).
cat >"$S/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $P/kube-proxy.kubeconfig}
hostnameOverride: $NODE
bindAddress: 127.0.0.1
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
nodePortAddresses: [primary]
EOF
start kube-proxy "$B/kube-proxy" --config "$S/kube-proxy.yaml"

wait_until 90 kubelet "node $NODE Ready" node_ready
wait_until 30 kube-proxy "kube-proxy healthy" curl -sf http://127.0.0.1:10256/healthz
# Pods can be created in `default` once its service account exists.
wait_until 60 kube-controller-manager "default service account" "${K[@]}" -n default get serviceaccount default
ts "node $NODE Ready: cluster up"
echo "$KUBECONFIG_ADMIN"
