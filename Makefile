# Bitville APM. `make help` lists the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/bitville-apm
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bitville/bitville-apm/internal/buildinfo.Version=$(VERSION)
RUN_DIR ?= $(CURDIR)/.run
RUN_ADDR ?= 127.0.0.1:19100

.PHONY: help deps build run demo test test-go test-php lint generate bench bench-pg bench-pushgw bench-php bench-php-floor bench-php-phases bench-php-instructions bench-php-warm fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install missing Debian packages (idempotent)
	@scripts/deps.sh

build: deps ## build bin/bitville-apm
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bitville-apm

run: build ## build, then run the agent on a local socket and port
	@mkdir -p $(RUN_DIR)
	@echo "agent socket:  $(RUN_DIR)/agent.sock   (PHP: BITVILLE_APM_SOCKET=$(RUN_DIR)/agent.sock)"
	@echo "metrics:       http://$(RUN_ADDR)/metrics"
	@echo "in flight:     http://$(RUN_ADDR)/api/v1/inflight"
	@echo "send a test:   scripts/send-golden.sh $(RUN_DIR)/agent.sock"
	@echo "stop with Ctrl-C"
	$(BIN) agent --agent.socket=$(RUN_DIR)/agent.sock --web.listen-address=$(RUN_ADDR)

SCENARIO ?= cpu
demo: build ## the real local stack, a baseline, a spike (SCENARIO=cpu|slow-sql|locks|stuck|session|partner|process|cron), the offenders report; runs until Ctrl-C. PUSH=1: the agent pushes through pushgw
	$(GO) build -o bin/bitville-demo ./cmd/bitville-demo
	bin/bitville-demo --bin=$(BIN) --scenario=$(SCENARIO)$(if $(filter 1,$(PUSH)), --push)

test: deps lint test-php test-go ## run every test (what CI runs)

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

test-php: ## the PHP agent's PHPUnit tests (php/tests)
	cd php && phpunit --colors=never

lint: ## gofmt, go vet, php -l
	@find php -name '*.php' -print0 | xargs -0 -n1 -P2 php -d display_errors=stderr -l >/dev/null
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.run/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate: ## regenerate dashboards/*.json and alerts/*.rules.yml from internal/mixin
	$(GO) run ./internal/mixin/gen

bench: deps ## run the Go benchmarks (figures go to docs/performance.md)
	$(GO) test -run='^$$' -bench=. -skip='PHPOverhead|PHPPhases|PHPFloor|PHPInstructions|PgExporterVsPostgresExporter|PushgwVsPushgateway' -benchmem -count=1 ./...

bench-pg: deps ## pg-exporter against Debian's prometheus-postgres-exporter on one PostgreSQL (BENCH_ROUNDS, BENCH_PAUSE)
	$(GO) test -run='^$$' -bench=PgExporterVsPostgresExporter -benchtime=1x -timeout=20m -v ./cmd/bitville-apm/

bench-pushgw: deps ## pushgw against Debian's prometheus-pushgateway, each on one pinned core (BENCH_DURATION)
	$(GO) test -run='^$$' -bench=PushgwVsPushgateway -benchtime=1x -timeout=20m -v ./cmd/bitville-apm/

bench-php: deps ## the PHP agent's overhead: wrk against pools with and without it (BENCH_ROUNDS, BENCH_DURATION, BENCH_BEFORE)
	$(GO) test -run='^$$' -bench=PHPOverhead -benchtime=1x -timeout=60m -v ./cmd/bitville-apm/

bench-php-floor: deps ## the PHP agent's CPU per request beside a minimal agent's, one worker per pool (BENCH_ROUNDS, BENCH_DURATION, BENCH_PAGE, BENCH_BEFORE, BENCH_VARIANTS, BENCH_PERF_EVENTS, BENCH_FPM_FLAGS)
	$(GO) test -run='^$$' -bench=PHPFloor -benchtime=1x -timeout=20m -v ./cmd/bitville-apm/

bench-php-instructions: deps ## the instructions php-fpm runs per request with and without the agent, under callgrind (BENCH_REQUESTS, BENCH_PAGE, BENCH_BEFORE, BENCH_VARIANTS, BENCH_VS)
	$(GO) test -run='^$$' -bench=PHPInstructions -benchtime=1x -timeout=30m -v ./cmd/bitville-apm/

bench-php-warm: deps ## the instructions each piece of the PHP agent runs warm (called before in the same process), under callgrind (BENCH_BEFORE)
	php php/tests/bench/warm_instructions.php $(BENCH_BEFORE) php

bench-php-phases: deps ## the PHP agent's work per phase inside one php-fpm worker, with and without opcache.preload (BENCH_REQUESTS, BENCH_BEFORE)
	$(GO) test -run='^$$' -bench=PHPPhases -benchtime=1x -timeout=20m -v ./cmd/bitville-apm/

# Minimizing a new input takes up to 60 s by default; with the 6.6 KiB end
# message among the seeds FuzzAgent then spends its whole time minimizing.
FUZZFLAGS = -run='^$$' -fuzztime=$${FUZZTIME:-30s} -fuzzminimizetime=$${FUZZMINIMIZETIME:-1s}

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzDecode ./internal/protocol/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzFingerprint ./internal/sqlfp/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzAgent ./exporters/phpagent/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzParseFPMStatus ./exporters/fpm/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzSlowlog ./exporters/fpm/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzResponse ./internal/fastcgi/
	$(GO) test $(FUZZFLAGS) -fuzz=FuzzParseStat ./exporters/host/

clean: ## remove build output
	rm -rf bin $(RUN_DIR)
