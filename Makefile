# certbus: `make demo` shows the whole pipeline, `make test` runs every tier.
# Both install what they need with apt-get when it is missing (as root).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/certbus

.PHONY: all build test test-short lint vulncheck demo deb system-test bench deps clean

all: build

# certbus-hook goes beside certbus: the hook scripts run it (see README).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/certbus
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)-hook ./cmd/certbus-hook

deps:
	@sh scripts/deps.sh test

# Every tier: lint, unit + integration (private dbus-daemon) + end to end
# (real certbot, pebble and daemons), with the race detector, then the system
# test on a real systemd. With CI set, a tier whose tool is missing fails.
test: deps lint
	$(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) system-test

# The fast tier only.
test-short:
	$(GO) test -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# govulncheck installs from the module proxy but needs its database at
# vuln.go.dev, which this project's machines cannot reach: so it is a target
# of its own, not part of lint (lint must be able to pass here).
vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 ./...

demo: build
	@sh scripts/deps.sh demo
	@sh scripts/demo.sh $(BIN)

deb:
	sh scripts/build-deb.sh $(VERSION) dist

system-test: deb
	bash test/system/run.sh dist

# Benchmarks against their baselines, side by side (root; about 3 minutes):
# prints one table and rewrites bench/RESULTS.md.
bench: build
	@sh scripts/deps.sh bench
	$(GO) run ./bench -bin $(BIN) -results bench/RESULTS.md

clean:
	rm -rf bin dist
