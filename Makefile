# understudy — a failover registry on etcd.
# Tools are pinned in tools.mod and built on first use by `go tool`.

GO        ?= go
TOOL      := $(GO) tool -modfile=tools.mod
BIN       := bin
PKGS      := ./...
# Integration tests start real etcd members; -p 2 keeps a 2-core machine calm.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 15m
# The Python follower (deploy/clients/python) runs on Debian's python3 and
# python3-grpcio; its stubs come from Debian's protoc and grpc_python_plugin,
# the same gRPC release (1.51.1), so generated code and runtime always match.
PYTHON      := /usr/bin/python3
PYCLIENT    := deploy/clients/python
PYTHON_DEBS := python3 python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
PROTOC_VERSION := 3.21.12

.PHONY: all build test test-python python-deps lint proto proto-python proto-check demo bench etcdctl images e2e chaos clean

all: build

## build: bin/understudy (static) and bin/etcdctl
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/understudy ./cmd/understudy

## etcdctl: the pinned etcdctl, to read the keyspace by hand
etcdctl:
	$(GO) build -modfile=tools.mod -o $(BIN)/etcdctl go.etcd.io/etcd/etcdctl/v3

## test: unit and integration tests with the race detector, then the Python follower
test: test-python
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-python: the Python follower against understudy dev through a switchover and a failover
test-python: python-deps build
	PYTHONDONTWRITEBYTECODE=1 $(PYTHON) $(PYCLIENT)/test_follow_primary.py

## python-deps: install the Debian packages of the Python follower when missing (needs root)
python-deps:
	@have() { $(PYTHON) -c 'import grpc, google.protobuf' 2>/dev/null && command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null; }; \
	have && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "the Python follower needs Debian packages; install them with:"; \
		echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $(PYTHON_DEBS)"; \
		exit 1; \
	fi; \
	echo "installing $(PYTHON_DEBS)"; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(PYTHON_DEBS); \
	have || { echo "$(PYTHON) still cannot import grpc and google.protobuf, or protoc/grpc_python_plugin are missing"; exit 1; }

## lint: gofmt, go vet, golangci-lint, buf lint
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOL) golangci-lint run $(PKGS)
	$(TOOL) buf lint

## proto: regenerate Go code from proto/, and the Python stubs
proto: proto-python
	$(TOOL) buf lint
	$(TOOL) buf generate

## proto-python: regenerate the Python stubs in deploy/clients/python/gen with Debian's protoc and grpc_python_plugin
proto-python: python-deps
	@v=$$(protoc --version); [ "$$v" = "libprotoc $(PROTOC_VERSION)" ] || { echo "proto-python needs protoc $(PROTOC_VERSION) (Debian bookworm's protobuf-compiler), found: $$v"; exit 1; }
	$(TOOL) buf generate --template $(PYCLIENT)/buf.gen.yaml

## proto-check: fail when the checked-in generated code is not what proto/ generates
proto-check: proto
	@git diff --exit-code -- proto $(PYCLIENT)/gen || { echo "generated code is out of date: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto $(PYCLIENT)/gen)" || { git status --porcelain -- proto $(PYCLIENT)/gen; echo "untracked generated files: run make proto and commit"; exit 1; }

## demo: run everything on loopback (etcd, registry, three demo hosts)
demo: build etcdctl
	$(BIN)/understudy dev

## bench: watch fan-out latency and memory per subscriber
bench: build
	$(GO) run ./cmd/understudy-bench -understudy $(BIN)/understudy

## images: understudy:dev and the e2e host image understudy-e2e:dev, FROM scratch
images:
	mkdir -p $(BIN)/image
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o $(BIN)/image/understudy ./cmd/understudy
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o $(BIN)/image/e2ehost ./e2e/cmd/e2ehost
	docker build -q -t understudy:dev -f deploy/images/understudy.Dockerfile $(BIN)/image
	docker build -q -t understudy-e2e:dev -f e2e/Dockerfile $(BIN)/image

## e2e: five hosts in three zones as containers (deploy/compose): topology checks and every fault kind once (MODE, default noask)
e2e: images
	E2E_MODE=$(MODE) $(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e/

## chaos: ROUNDS faults in the order SEED gives on the same topology; a table per fault kind, JSON in bin/chaos.json
## MODE=noask (default): the demo database takes writes like PostgreSQL; MODE=ask: it asks its agent first
ROUNDS ?= 100
SEED   ?= 0
MODE   ?= noask
KINDS  ?=
chaos: images
	$(GO) run ./e2e/cmd/understudy-chaos -rounds $(ROUNDS) -seed $(SEED) -mode $(MODE) -kinds "$(KINDS)" -json $(BIN)/chaos.json

clean:
	rm -rf $(BIN)
