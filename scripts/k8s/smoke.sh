#!/usr/bin/env bash
# Proves that the cluster up.sh started in STATE_DIR does what Berth's
# Kubernetes backend needs, and prints how long each step took:
#   - a Deployment of a tiny static HTTP server (2 replicas) becomes Available;
#   - its ClusterIP Service answers from the host and, by name through
#     CoreDNS, from a pod of the same namespace; the short name does not
#     resolve from another namespace, NAME.NAMESPACE does;
#   - pod logs through the API; kubectl exec;
#   - the kubelet's resource metrics through the API server's node proxy;
#   - a pod pulls its image from a plain-HTTP registry on 127.0.0.1;
#   - the memory (RSS) of the cluster's processes.
#
#   scripts/k8s/smoke.sh [STATE_DIR]    (default $BERTH_K8S_DIR or /var/lib/berth-k8s)
set -euo pipefail
S=${1:-${BERTH_K8S_DIR:-/var/lib/berth-k8s}}
S=$(cd "$S" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN=local
B=$(cat "$S/bindir")
K=("$B/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")
CTR=(ctr -a "$CTD_SOCK" -n k8s.io)
A=smoke-a
O=smoke-b
IMG=localhost/berth-k8s/httpd:1
fail() {
	echo "smoke: FAIL: $*" >&2
	exit 1
}

reg_pid=""
cleanup() {
	[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null
	"${K[@]}" delete ns "$A" "$O" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
}
trap cleanup EXIT
"${K[@]}" delete ns "$A" "$O" --ignore-not-found --wait=true --timeout=60s >/dev/null

# The workload image, built like the pause image.
if [ ! -s "$S/images/httpd.tar" ]; then
	gobuild ./scripts/k8s/images/httpd "$S/images/httpd.bin"
	mkimage "$S/images" httpd 1 "$S/images/httpd.bin" "$S/images/httpd.tar"
	rm -f "$S/images/httpd.bin"
fi
"${CTR[@]}" images import --base-name "${IMG%:*}" "$S/images/httpd.tar" >/dev/null
ts "image $IMG imported"

"${K[@]}" create ns "$A" >/dev/null
"${K[@]}" create ns "$O" >/dev/null
for ns in "$A" "$O"; do
	wait_until 30 "" "service account in $ns" "${K[@]}" -n "$ns" get sa default
done
"${K[@]}" -n "$A" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: $IMG
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
EOF
"${K[@]}" -n "$A" rollout status deploy/hello --timeout=120s >/dev/null
ts "deployment hello (2 replicas) available"

# From the host, through kube-proxy's rules.
ip=$("${K[@]}" -n "$A" get svc hello -o 'jsonpath={.spec.clusterIP}')
# kube-proxy programs the ready endpoints within a sync period (1 s) of
# the EndpointSlice's update; until then the Service rejects.
wait_until 30 kube-proxy "http://$ip/ answering" curl -sf --max-time 2 "http://$ip/"
ts "host → http://$ip/ (ClusterIP) answers"
# Both replicas, once kube-proxy has the second one too.
seen=""
end=$(($(date +%s) + 30))
until [ "$(printf '%s' "$seen" | sort -u | grep -c 'hello from hello-')" -eq 2 ]; do
	[ "$(date +%s)" -lt "$end" ] ||
		fail "host → ClusterIP $ip reached $(printf '%s' "$seen" | sort -u | tr '\n' ' ')only, not both replicas"
	out=$(curl -sf --max-time 5 "http://$ip/") || fail "host → ClusterIP $ip"
	seen+="$out"$'\n'
done
ts "host → http://$ip/ (ClusterIP) reaches both replicas"

# From pods, by name (CoreDNS and the namespace's search path).
for ns in "$A" "$O"; do
	"${K[@]}" -n "$ns" run client --image="$IMG" --image-pull-policy=Never --restart=Never \
		--overrides='{"spec":{"terminationGracePeriodSeconds":2}}' >/dev/null
done
for ns in "$A" "$O"; do
	"${K[@]}" -n "$ns" wait --for=condition=Ready pod/client --timeout=60s >/dev/null
done
out=$("${K[@]}" -n "$A" exec client -- /httpd -get http://hello/) || fail "pod in $A → http://hello/"
[[ $out == "hello from hello-"* ]] || fail "pod in $A → http://hello/ said: $out"
ts "pod in $A → http://hello/ (CoreDNS + ClusterIP): $out"
if "${K[@]}" -n "$O" exec client -- /httpd -get http://hello/ >/dev/null 2>&1; then
	fail "pod in $O resolved $A's service by its short name"
fi
out=$("${K[@]}" -n "$O" exec client -- /httpd -get "http://hello.$A/") || fail "pod in $O → http://hello.$A/"
ts "pod in $O → http://hello/ does not resolve; http://hello.$A/ does"

# Logs through the API (the API server reaches the kubelet as "localhost").
logs=$("${K[@]}" -n "$A" logs -l app=hello --tail=-1 --prefix)
grep -q 'listening on :8080' <<<"$logs" || fail "no start line in the pods' logs"
grep -q 'GET / from' <<<"$logs" || fail "no request lines in the pods' logs"
ts "pod logs through the API ($(wc -l <<<"$logs") lines)"

# Resource metrics, as `kubectl top` would read them without metrics-server.
m=$("${K[@]}" get --raw "/api/v1/nodes/$NODE/proxy/metrics/resource")
for metric in node_cpu_usage_seconds_total node_memory_working_set_bytes \
	"container_cpu_usage_seconds_total{container=\"httpd\",namespace=\"$A\"" \
	"container_memory_working_set_bytes{container=\"httpd\",namespace=\"$A\"" \
	"pod_memory_working_set_bytes{namespace=\"$A\""; do
	grep -qF "$metric" <<<"$m" || fail "no $metric in /metrics/resource"
done
ts "resource metrics via /api/v1/nodes/$NODE/proxy/metrics/resource: $(grep -c "namespace=\"$A\"" <<<"$m") series for $A"

# A pull from a plain-HTTP registry on the host's loopback, by digest.
gobuild ./scripts/k8s/testregistry "$S/images/testregistry"
coproc REG { exec "$S/images/testregistry"; }
reg_pid=$REG_PID
read -r reg <&"${REG[0]}"
skopeo copy -q --dest-tls-verify=false "oci-archive:$S/images/httpd.tar" "docker://$reg/smoke/hello:1"
digest=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/smoke/hello:1")
"${K[@]}" -n "$A" run pulled --image="$reg/smoke/hello@$digest" --image-pull-policy=Always --restart=Never \
	--overrides='{"spec":{"terminationGracePeriodSeconds":2}}' >/dev/null
"${K[@]}" -n "$A" wait --for=condition=Ready pod/pulled --timeout=60s >/dev/null ||
	fail "pod from $reg: $("${K[@]}" -n "$A" describe pod pulled | tail -5)"
ts "pod pulled $reg/smoke/hello@${digest:0:19}… over plain HTTP"
# The same registry named localhost:PORT (a new name: containerd pulls again).
"${K[@]}" -n "$A" run pulled2 --image="localhost:${reg##*:}/smoke/hello@$digest" --image-pull-policy=Always \
	--restart=Never --overrides='{"spec":{"terminationGracePeriodSeconds":2}}' >/dev/null
"${K[@]}" -n "$A" wait --for=condition=Ready pod/pulled2 --timeout=60s >/dev/null ||
	fail "pod from localhost:${reg##*:}: $("${K[@]}" -n "$A" describe pod pulled2 | tail -5)"
ts "pod pulled localhost:${reg##*:}/smoke/hello@… over plain HTTP"

# Memory of the cluster: its recorded processes, the shims and the pods.
total=0
line=""
for c in "${COMPONENTS[@]}"; do
	pid=$(pid_of "$c") || continue
	kb=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
	total=$((total + kb))
	line+=" $c=$((kb / 1024))M"
done
shims=0
for d in /proc/[0-9]*; do
	if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "-address $CTD_SOCK "; then
		shims=$((shims + $(awk '/^VmRSS/{print $2}' "$d/status")))
	fi
done
ts "RSS:$line; cluster total $((total / 1024)) MiB (+ shims and pods $((shims / 1024)) MiB)"
echo "smoke: ok"
