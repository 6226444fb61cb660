# Shared by up.sh, down.sh and smoke.sh: where the cluster lives, its
# addresses, and the helpers that start and stop its processes. Sourced,
# not run. Set S (the state directory) before sourcing.

# Addresses. Berth's own networks use 10.89.0.0/16 and its tests 10.230-250.x;
# these stay clear of both. The bridge name must not start with "berth":
# Berth's isolation rules match "berth+".
POD_CIDR=10.244.0.0/24
POD_GW=10.244.0.1 # the bridge's address: pods' gateway and cluster DNS
SVC_CIDR=10.96.0.0/24
SVC_API_IP=10.96.0.1
BRIDGE=bk8s0
CNI_NET=berth-k8s
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=6443
API_URL=https://127.0.0.1:$API_PORT
NODE=localhost
DOMAIN=cluster.local
PAUSE_IMAGE=localhost/berth-k8s/pause:1
CNI_BIN=${BERTH_K8S_CNI_BIN:-/usr/lib/cni}

# The components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd coredns kubelet kube-proxy)

K8S_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CTD_SOCK=$S/containerd/containerd.sock
KUBECONFIG_ADMIN=$S/admin.kubeconfig

T0=${T0:-$(date +%s.%N)}
# ts prints a line with the seconds since T0, on stderr.
ts() { printf '[%6.1fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }
die() {
	echo "k8s: $*" >&2
	exit 1
}

pidfile() { echo "$S/pids/$1.pid"; }

# alive PID: the process runs (a zombie, which our exited parent left for
# init to reap, has no exe any more).
alive() { readlink "/proc/$1/exe" >/dev/null 2>&1; }

# pid_of NAME prints the recorded pid of component NAME if that process is
# still the one recorded (same executable), so a recycled pid is never
# taken for ours. Prints nothing and fails otherwise.
pid_of() {
	local f pid exe
	f=$(pidfile "$1")
	[ -f "$f" ] || return 1
	read -r pid exe <"$f" || true
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	if [ -n "$exe" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$exe" ]; then
		return 1
	fi
	echo "$pid"
}

# start NAME CMD ARGS... starts a component in its own session (so a ^C
# or the end of the caller does not take it down; down.sh does), logs to
# logs/NAME.log and records "PID EXE" in pids/NAME.pid.
start() {
	local name=$1 exe
	shift
	exe=$(readlink -f "$(command -v "$1")")
	# Not a process group leader (no job control here), so setsid does not
	# fork and $! is the component itself. Descriptors above 2 are closed
	# first: a component must not hold a lock (flock) or pipe of whoever
	# ran this script for its whole life.
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
		done
		exec setsid "$@"
	) >"$S/logs/$name.log" 2>&1 </dev/null &
	local pid=$! i
	echo "$pid $exe" >"$(pidfile "$name")"
	# Until the exec, /proc/PID/exe is this shell: wait for it, so pid_of
	# does not take a starting component for a dead one.
	for ((i = 0; i < 100; i++)); do
		[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] && return 0
		[ -d "/proc/$pid" ] || return 0
		sleep 0.05
	done
}

# stop NAME [SECONDS] sends SIGTERM to the recorded process, waits for it to
# exit, then SIGKILLs it. Only the recorded pid is ever signalled.
stop() {
	local name=$1 grace=${2:-10} pid i
	pid=$(pid_of "$name") || {
		rm -f "$(pidfile "$name")"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < grace * 20; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	if alive "$pid"; then
		echo "k8s: $name ($pid) did not stop in ${grace}s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.05
		done
	fi
	rm -f "$(pidfile "$name")"
}

# wait_until SECONDS NAME DESC CMD... polls CMD until it succeeds; fails
# early with NAME's log when NAME's process is gone, or at the deadline.
wait_until() {
	local secs=$1 name=$2 desc=$3 end
	shift 3
	end=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ -n "$name" ] && ! pid_of "$name" >/dev/null; then
			echo "k8s: $name exited while waiting for $desc; its log:" >&2
			tail -n 30 "$S/logs/$name.log" >&2 || true
			return 1
		fi
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "k8s: no $desc after ${secs}s" >&2
			[ -n "$name" ] && tail -n 30 "$S/logs/$name.log" >&2
			return 1
		fi
		sleep 0.2
	done
}

# mkimage DIR NAME TAG BINARY OUT writes an OCI image layout tarball OUT
# holding one static BINARY as /NAME, run as its entrypoint. No Docker, no
# registry: a layer tar, a config, a manifest and an index, by hand.
mkimage() {
	local dir=$1 name=$2 tag=$3 bin=$4 out=$5 w layer cfg man ld cd md ls cs ms
	w=$(mktemp -d "$dir/.img-XXXXXX")
	mkdir -p "$w/root" "$w/oci/blobs/sha256"
	install -m 0755 "$bin" "$w/root/$name"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$w/root" -cf "$w/layer.tar" "$name"
	ld=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
	ls=$(stat -c %s "$w/layer.tar")
	mv "$w/layer.tar" "$w/oci/blobs/sha256/$ld"
	printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/%s"],"Env":["PATH=/"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$name" "$ld" >"$w/config.json"
	cd=$(sha256sum "$w/config.json" | cut -d' ' -f1)
	cs=$(stat -c %s "$w/config.json")
	mv "$w/config.json" "$w/oci/blobs/sha256/$cd"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
		"$cd" "$cs" "$ld" "$ls" >"$w/manifest.json"
	md=$(sha256sum "$w/manifest.json" | cut -d' ' -f1)
	ms=$(stat -c %s "$w/manifest.json")
	mv "$w/manifest.json" "$w/oci/blobs/sha256/$md"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$md" "$ms" "$tag" >"$w/oci/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$w/oci/oci-layout"
	tar -C "$w/oci" -cf "$out" oci-layout index.json blobs
	rm -rf "$w"
}

# gobuild PKG OUT builds one of the small static programs beside these
# scripts (they are part of Berth's module).
gobuild() {
	(cd "$K8S_SCRIPTS/../.." && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags=-s -o "$2" "$1")
}
