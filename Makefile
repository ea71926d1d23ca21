# understudy — a failover registry on etcd.
# Tools are pinned in tools.mod and built on first use by `go tool`.

GO        ?= go
TOOL      := $(GO) tool -modfile=tools.mod
BIN       := bin
PKGS      := ./...
# Integration tests start real etcd members; -p 2 keeps a 2-core machine calm.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 15m

.PHONY: all build test lint proto proto-check demo bench etcdctl clean

all: build

## build: bin/understudy (static) and bin/etcdctl
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/understudy ./cmd/understudy

## etcdctl: the pinned etcdctl, to read the keyspace by hand
etcdctl:
	$(GO) build -modfile=tools.mod -o $(BIN)/etcdctl go.etcd.io/etcd/etcdctl/v3

## test: unit and integration tests with the race detector
test:
	$(GO) test $(TESTFLAGS) $(PKGS)

## lint: gofmt, go vet, golangci-lint, buf lint
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOL) golangci-lint run $(PKGS)
	$(TOOL) buf lint

## proto: regenerate Go code from proto/
proto:
	$(TOOL) buf lint
	$(TOOL) buf generate

## proto-check: fail when the checked-in generated code is not what proto/ generates
proto-check: proto
	@git diff --exit-code -- proto || { echo "generated code is out of date: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files: run make proto and commit"; exit 1; }

## demo: run everything on loopback (etcd, registry, three demo hosts)
demo: build etcdctl
	$(BIN)/understudy dev

## bench: watch fan-out latency and memory per subscriber
bench: build
	$(GO) run ./cmd/understudy-bench -understudy $(BIN)/understudy

clean:
	rm -rf $(BIN)
