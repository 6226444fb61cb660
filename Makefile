# The two commands of the README: `./up.sh` (set-up and the example app)
# and `make test` (the whole suite). CI runs `.ci/run`, which installs the
# packages and runs `make test`.

GO      ?= go
BIN     ?= bin/berth
PKGS    ?= ./...
# The suite needs root for containerd, runc, network namespaces and the
# test cluster; tests that need root skip with a message when it is
# missing (and fail instead under BERTH_NO_SKIP, as in CI).
TESTFLAGS ?= -count=1 -timeout 40m

.PHONY: build test test-short vet fuzz bench tidy-check up clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/berth

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

# go.mod and go.sum must already be tidy.
tidy-check:
	@cp go.mod /tmp/berth-go.mod.bak; cp go.sum /tmp/berth-go.sum.bak
	@$(GO) mod tidy
	@if ! diff -q go.mod /tmp/berth-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/berth-go.sum.bak >/dev/null; then \
		cp /tmp/berth-go.mod.bak go.mod; cp /tmp/berth-go.sum.bak go.sum; \
		echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; fi

# As root it brings up a single-node Kubernetes cluster for the kubernetes
# backend's tests (scripts/test.sh).
test: build vet tidy-check
	GO="$(GO)" TESTFLAGS="$(TESTFLAGS)" PKGS="$(PKGS)" ./scripts/test.sh

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Short fuzzing runs of the parsers; longer ones by hand with FUZZTIME=10m.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./api/v1 -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)

bench: build
	$(GO) run ./bench/gateway -self -duration 5s

up:
	./up.sh

clean:
	rm -rf bin
