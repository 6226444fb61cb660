#!/usr/bin/env bash
# The main job, on a fresh Debian machine with Go: install what is missing,
# build berth, start `berth server` on its defaults, deploy the example app
# and print where to reach it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "up.sh: Go is needed (https://go.dev/doc/install)"; exit 1; }

echo "==> installing what is missing (containerd, runc, CNI plugins, iptables …)"
./scripts/install-deps.sh

echo "==> building berth"
go build -trimpath -o bin/berth ./cmd/berth
install -m 0755 bin/berth /usr/local/bin/berth

DATA_DIR=${BERTH_DATA_DIR:-/var/lib/berth}
LOG=/var/log/berth.log
if curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
	echo "==> berth server already running"
else
	echo "==> starting berth server (data in $DATA_DIR, log in $LOG)"
	nohup /usr/local/bin/berth server --data-dir "$DATA_DIR" >>"$LOG" 2>&1 &
	echo $! >/run/berth.pid
	for _ in $(seq 1 300); do
		curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break
		if ! kill -0 "$(cat /run/berth.pid)" 2>/dev/null; then
			echo "berth server exited; last lines of $LOG:"; tail -20 "$LOG"; exit 1
		fi
		sleep 0.2
	done
fi
export BERTH_CONFIG="$DATA_DIR/client.json"

echo "==> building the example image without Docker"
berth build examples/hello -t berth.dev/examples/hello:v1

echo "==> deploying examples/"
berth apply -f examples/ --wait --timeout 3m

cat <<MSG

Berth is running. The example service answers at:
  curl http://hello.default.berth.localhost:8080/
  curl http://127.0.0.1:8080/hello/
  curl http://hello.staging.berth.localhost:8080/   # the same name in environment staging
The example function is at zero until called (watch: berth get functions):
  curl http://greet.default.berth.localhost:8080/
  berth invoke greet --async -d hi      # then: berth invocation ID
  berth publish greetings -d hello
The example workflow calls both:
  berth workflow start welcome --input '{"name": "Ada"}' --wait
Look around:
  berth get services
  berth describe service hello
  berth logs hello -f
MSG
curl -fsS -H 'Host: hello.default.berth.localhost' http://127.0.0.1:8080/ && echo
curl -fsS -H 'Host: greet.default.berth.localhost' http://127.0.0.1:8080/ && echo
