# edgepixel — the two commands are `make run` and `make test`.
#
#   make run     build everything and run the whole stack locally
#   make test    everything CI checks: gofmt, vet, race tests, bounded fuzzing
#   make bench   benchmarks, each printed beside its baseline from the same run
#   make deps    install the servers and tools the tests use (apt, as root)

GO        ?= go
BIN       := .edgepixel/bin
DATA      := .edgepixel/data
# Fuzzing is bounded by runs, not seconds: with a duration, Go's fuzz
# coordinator can fail with "context deadline exceeded" at its own deadline
# on a loaded machine, with no crash. -timeout is the hard stop.
FUZZTIME  ?= 200000x
# Debian packages: what each is for is said where it is checked below.
APT_TEST  := redis-server clickhouse-server clickhouse-client chromium
APT_BENCH := wrk

.PHONY: run test bench build wasm deps deps-bench check-deps fmt vet unit fuzz clean

## build: the edge module, the POP and the aggregator into .edgepixel/bin
build:
	@mkdir -p $(BIN)
	@echo "building the edge module (GOOS=wasip1) ..."
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -o $(BIN)/edgepixel.wasm ./edge/cmd/edgepixel
	$(GO) build -trimpath -o $(BIN)/edgepixel-pop ./edge/cmd/edgepixel-pop
	$(GO) build -trimpath -o $(BIN)/edgepixel-aggregator ./aggregator/cmd/edgepixel-aggregator
	$(GO) build -trimpath -o $(BIN)/edgepixel-run ./tests/cmd/edgepixel-run

## wasm: the edge module where Fastly's CLI expects it (edge/bin/main.wasm)
wasm:
	cd edge && GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -o bin/main.wasm ./cmd/edgepixel

## run: install what is missing if we can, build, start the stack (Ctrl-C stops it)
run: build
	@$(MAKE) --no-print-directory deps SOFT=1
	@# exec: Ctrl-C goes straight to the launcher, which stops the stack in order.
	@exec $(BIN)/edgepixel-run --bin $(BIN) --dir $(DATA)

## test: the full suite, as CI runs it
test: deps fmt vet unit fuzz

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.edgepixel/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./edge/cmd/edgepixel

unit:
	$(GO) test -race -timeout 25m -count=1 ./...

## fuzz: every Fuzz target in the repo, each for FUZZTIME runs
fuzz:
	@set -e; grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./.edgepixel' | sort | while read f; do \
		pkg=./$$(dirname $${f#./}); \
		for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -timeout=5m $$pkg >/tmp/edgepixel-fuzz.log 2>&1 || { cat /tmp/edgepixel-fuzz.log; exit 1; }; \
		done; \
	done

## conformance: compute-sdk-go's own integration and end-to-end tests judge
## the POP (tests/conformance); prints passed/failed/skipped per package
.PHONY: conformance
conformance: build
	$(GO) run ./tests/cmd/edgepixel-conformance --pop $(BIN)/edgepixel-pop

## bench: POP vs bare net/http and the other figures, side by side
bench: build
	@$(MAKE) --no-print-directory deps deps-bench
	$(GO) run ./tests/cmd/edgepixel-bench --bin $(BIN)

## deps: install the Debian packages the tests need (as root), or say exactly
## what to run. With SOFT=1 (make run) a missing package is only a warning:
## the stack falls back to embedded storage and dedupe.
deps:
	@missing=""; \
	[ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	[ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ] || missing="$$missing clickhouse-server clickhouse-client"; \
	[ -n "$(SOFT)" ] || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -n "$(SOFT)" ] || command -v npm >/dev/null || missing="$$missing npm"; \
	$(call apt_install,$$missing)

deps-bench:
	@missing=""; command -v wrk >/dev/null || missing="wrk"; $(call apt_install,$$missing)

# apt_install installs the packages named in $(1) when root, else explains.
define apt_install
	if [ -n "$(1)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$(1)"; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) >/tmp/edgepixel-apt.log 2>&1 || \
			 (apt-get update -q >>/tmp/edgepixel-apt.log 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) >>/tmp/edgepixel-apt.log 2>&1)) \
			|| { tail -20 /tmp/edgepixel-apt.log; echo "could not install:$(1)"; [ -n "$(SOFT)" ]; }; \
		elif [ -n "$(SOFT)" ]; then \
			echo "note: missing$(1); install with: sudo apt-get install -y$(1)"; \
		else \
			echo "missing:$(1)"; echo "install with: sudo apt-get install -y$(1)"; exit 1; \
		fi; \
	fi
endef

clean:
	rm -rf $(BIN) edge/bin edge/pkg
