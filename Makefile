# edgepixel — the two commands are `make run` and `make test`.
#
#   make run     install what is missing, build, run the whole stack locally
#   make sql     clickhouse-client on the running stack (Q="SELECT ..." runs one query)
#   make test    everything CI checks: gofmt, vet, race tests, bounded fuzzing,
#                compute-sdk-go's own tests under the POP (make conformance)
#   make deps    install what the tests need (apt-get as root; the Fastly CLI and wrangler with npm)
#   make bench   benchmarks, each printed beside its baseline from the same run
#   make build   the artifacts into .edgepixel/bin;  make wasm: edge/bin/main.wasm
#   make worker  the Cloudflare Workers module where wrangler.toml expects it
#
# How each artifact is built is said once, in tests/build (run here through
# tests/cmd/edgepixel-build, as edge/fastly.toml runs it too). The edge
# module is built with TinyGo, the module edgepixel ships: the tinygo on
# PATH, or one built once into .edgepixel/tinygo (TINYGO_NET says where its
# net package is when offline); EDGEPIXEL_WASM_TOOLCHAIN=go builds it with
# standard Go instead. Which outside programs are needed, and how to install
# them, is said in tests/deps. Everything a run writes stays under
# .edgepixel/ in this checkout.

GO        ?= go
BIN       := .edgepixel/bin
# EDGEPIXEL_RUN_DIR moves the stack's data, for `make run` and `make sql` alike
# (the launcher reads the same variable when run by itself).
DATA      := $(or $(EDGEPIXEL_RUN_DIR),.edgepixel/data)
TOOLS     := .edgepixel/tools
# How long a first `make run` takes from a clean clone with empty caches on
# a 2-core machine (measured; the README says the same).
FIRST_RUN := about 10 minutes
# Fuzzing is bounded by runs, not seconds: with a duration, Go's fuzz
# coordinator can fail with "context deadline exceeded" at its own deadline
# on a loaded machine, with no crash.
FUZZTIME  ?= 200000x
# When this make began, for the launcher's "ready after" figure.
SINCE     := $(shell date +%s)

.PHONY: run cluster sql test deps deps-bench deps-workers check-deps tools build wasm modules worker bench fmt vet unit fuzz clean

## run: say what to expect, install what is missing (before the long
## builds), build, start the stack (Ctrl-C stops it)
run:
	@if [ -x $(BIN)/edgepixel-run ]; then echo "make run: rebuilding what changed, then starting the stack"; \
	else echo "make run: a first run takes $(FIRST_RUN) (installs, builds, then the POP compiles the edge module); later runs start in seconds."; fi
	@$(build-tools)
	@# A stack running from $(DATA) keeps its binaries: refuse before building.
	@if [ -x $(BIN)/edgepixel-run ]; then $(BIN)/edgepixel-run idle --dir "$(DATA)"; fi
	@$(TOOLS)/edgepixel-deps install -soft run
	@$(TOOLS)/edgepixel-build -dir $(BIN) wasm pop aggregator salt sign run
	@# exec: Ctrl-C goes straight to the launcher, which stops the stack in order.
	@exec $(BIN)/edgepixel-run --bin $(BIN) --dir "$(DATA)" --since $(SINCE) --first-run "$(FIRST_RUN)"

## cluster: a fleet on this machine: ZooKeeper, 2x2 ClickHouse, Redis, two
## aggregators each behind a POP (tests/cmd/edgepixel-cluster); Ctrl-C stops it
cluster:
	@$(build-tools)
	@$(TOOLS)/edgepixel-deps install cluster
	@$(TOOLS)/edgepixel-build -dir $(BIN) wasm pop aggregator cluster
	@exec $(BIN)/edgepixel-cluster --bin $(BIN) --dir .edgepixel/cluster

## sql: clickhouse-client on the stack `make run` started in this checkout
# Q is taken as typed: make would expand a '$' in it (a regex's anchor,
# match(path, '^/blog/.*$')) before the query reached ClickHouse.
ifdef Q
override Q := $(value Q)
export Q
endif
sql:
	@[ -x $(BIN)/edgepixel-run ] || { echo "make sql: no stack has run in this checkout yet: start one with make run"; exit 1; }
	@exec $(BIN)/edgepixel-run sql --dir "$(DATA)" "$$Q"

## test: the full suite, as CI runs it (after make deps)
test: check-deps fmt vet unit fuzz conformance

check-deps: tools
	@$(TOOLS)/edgepixel-deps check test

## deps: install what the tests need: apt-get when root (else the exact
## command to run), the Fastly CLI into .edgepixel/npm. Logs: .edgepixel/logs/deps.log
deps: tools
	@$(TOOLS)/edgepixel-deps install test

deps-bench: tools
	@$(TOOLS)/edgepixel-deps install bench

## deps-workers: only what the Cloudflare worker needs (wrangler and its
## workerd into .edgepixel/npm; TinyGo's LLVM packages)
deps-workers: tools
	@$(TOOLS)/edgepixel-deps install workers

## tools: the build, dependency and test-report commands the targets here run
tools:
	@$(build-tools)

# build-tools compiles the tools (quick once the Go cache has them; on an
# empty cache it is the first long step, so it says so and how long it took).
define build-tools
t=$$(date +%s); [ -x $(TOOLS)/edgepixel-gotest ] || echo "compiling edgepixel's build tools (first time only) ..."; \
$(GO) build -trimpath -o $(TOOLS)/ ./tests/cmd/edgepixel-build ./tests/cmd/edgepixel-deps ./tests/cmd/edgepixel-gotest || exit 1; \
d=$$(( $$(date +%s) - t )); [ $$d -lt 3 ] || echo "compiled the build tools in $${d}s"
endef

## build: the edge module, the POP, the aggregator and the launcher into .edgepixel/bin
build: tools
	@$(TOOLS)/edgepixel-build -dir $(BIN) wasm pop aggregator salt sign run

## wasm: the edge module where Fastly's CLI expects it (edge/bin/main.wasm)
wasm: tools
	@$(TOOLS)/edgepixel-build -o edge/bin/main.wasm wasm

## modules: the edge module built with both toolchains, TinyGo and Go, into
## .edgepixel/bin (edgepixel.wasm, edgepixel-go.wasm) and the wasm cache the
## tests take them from: built here, each build's progress shows
modules: tools
	@$(TOOLS)/edgepixel-build -toolchain tinygo -o $(BIN)/edgepixel.wasm wasm
	@$(TOOLS)/edgepixel-build -toolchain go -o $(BIN)/edgepixel-go.wasm wasm

## worker: the Cloudflare Workers module (wrangler/build/edgepixel.wasm);
## `cd wrangler && wrangler deploy` builds it the same way
worker: tools
	@$(TOOLS)/edgepixel-build -o wrangler/build/edgepixel.wasm worker

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.edgepixel/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./edge/cmd/edgepixel ./wrangler/...

## unit: every package's tests with the race detector; the log ends with
## each package's time and the slowest tests. tests/edgetinygo (the edge
## packages' own tests built by TinyGo, minutes of compiling) runs after
## the others rather than holding one of `go test`'s parallel slots, where
## the other packages' load made its builds several times slower. The
## timeout is a hang guard, not a speed check: on a loaded machine
## aggregator/clickhouse's race tests took 17.5 minutes.
unit: tools modules
	@$(TOOLS)/edgepixel-gotest test -race -timeout 45m -count=1 $$($(GO) list ./... | grep -v '/tests/edgetinygo$$' | awk -v m=$(MODULE) -v slow="$(SLOW_PKGS)" \
	'{ all[$$0] = 1; order[NR] = $$0 } END { n = split(slow, s, " "); for (i = 1; i <= n; i++) if ((m "/" s[i]) in all) { print m "/" s[i]; first[m "/" s[i]] = 1 } for (i = 1; i <= NR; i++) if (!(order[i] in first)) print order[i] }')
	@$(TOOLS)/edgepixel-gotest test -timeout 25m -count=1 ./tests/edgetinygo

# The packages whose race tests take longest (over a minute in CI), longest
# first: go test starts packages in the order given, and one of these
# started last held the run for minutes after every other package ended
# (in ci55 the slowest, tests, started about 11 minutes in).
SLOW_PKGS := tests aggregator/clickhouse tests/cluster edge/pop aggregator/query \
	edge/cmd/edgepixel-pop aggregator/dedupe aggregator/loader \
	aggregator/cmd/edgepixel-aggregator tests/localsrv tests/cmd/edgepixel-cluster
MODULE := github.com/edgepixel/edgepixel

## fuzz: every Fuzz target in the repo, each for FUZZTIME runs
fuzz: tools
	@$(TOOLS)/edgepixel-gotest fuzz -fuzztime $(FUZZTIME)

## conformance: compute-sdk-go's own integration tests (built with Go and
## with TinyGo) and end-to-end tests judge the POP (tests/conformance);
## prints passed/failed/skipped per package
.PHONY: conformance
conformance: build
	$(GO) run ./tests/cmd/edgepixel-conformance --pop $(BIN)/edgepixel-pop

## bench: POP vs bare net/http and the other figures, side by side
bench: tools
	@$(TOOLS)/edgepixel-deps install bench
	@$(MAKE) --no-print-directory modules
	@$(TOOLS)/edgepixel-build -dir $(BIN) pop aggregator worker bench
	@$(TOOLS)/edgepixel-build -toolchain go -o $(BIN)/edgepixel-worker-go.wasm worker
	@$(BIN)/edgepixel-bench --bin $(BIN)

# The TinyGo edgepixel built (.edgepixel/tinygo) and the wasm cache stay:
# remove .edgepixel to start from nothing.
clean:
	rm -rf $(BIN) $(TOOLS) edge/bin edge/pkg wrangler/build wrangler/dist
