# Sluice's build, test and benchmark entry points. `make test` is what CI runs.

GO        ?= go
# Every fuzz target, as package:target:executions. Budgets are counts, 10 to
# 50 s each here (the targets in packages with a large binary run at 500 to
# 800 executions a second), for the fuzz phase to take about 8 minutes of
# CI's 40, not durations: a duration's deadline can fail a run with
# "context deadline exceeded" and no crasher (Go issue 75804, open in 1.26).
FUZZ_TARGETS := ./internal/event:FuzzParse:150000 ./internal/event:FuzzSplitBatch:150000 \
                ./internal/event:FuzzValid:200000 ./internal/event:FuzzObjectMembers:150000 \
                ./internal/event:FuzzReplaceNonFinite:100000 ./internal/event:FuzzAppendString:100000 \
                ./internal/source:FuzzRows:40000 ./internal/enrich:FuzzFormModel:50000 \
                ./internal/aggregator:FuzzParse:12000 ./internal/aggregator:FuzzDigitLayout:15000 \
                ./internal/pipeline:FuzzConfig:10000 \
                ./internal/lake:FuzzReadDataFile:10000 ./internal/row:FuzzParseFloat:200000 \
                ./internal/row:FuzzParseTime:200000 \
                ./internal/search:FuzzBulkLines:10000 ./internal/search:FuzzReadItems:10000 \
                ./internal/jobs:FuzzModels:15000 ./internal/aggregator:FuzzReadParsed:8000 \
                ./internal/window:FuzzStateBinary:150000 ./internal/schema:FuzzDecode:60000 \
                ./internal/schema:FuzzFastAgrees:80000

.PHONY: all build test test-deps vet unit fuzz bench bench-deps swagger-ui console clean

all: build

build:
	$(GO) build -o bin/sluice ./cmd/sluice

# test installs what the tests need, then vets, runs every test under the
# race detector, and gives each fuzz target a short run.
test: test-deps vet unit fuzz

# The Python clients of the interoperability tests (testenv/python), in a
# virtualenv remade when their list changes; Apache Iceberg's REST catalog
# (testenv/iceberg-rest) holds the tables in the REST catalog tests.
PYTHON_ENV ?= $(HOME)/.cache/sluice/python

test-deps:
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/dl/"; exit 1; }
	@command -v kcat >/dev/null || { \
		echo "installing kcat (Debian package) for the Kafka interoperability test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq kcat >/dev/null; }
	@cmp -s testenv/python/requirements.txt $(PYTHON_ENV)/requirements.txt || { \
		echo "installing the Python clients of the tests (PyPI: PyIceberg, pandas, requests, confluent-kafka, pyspark) into $(PYTHON_ENV)"; \
		rm -rf $(PYTHON_ENV) && python3 -m venv $(PYTHON_ENV) && \
		$(PYTHON_ENV)/bin/pip install -q -r testenv/python/requirements.txt && \
		cp testenv/python/requirements.txt $(PYTHON_ENV)/requirements.txt; }
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
		echo "installing Java and Maven (Debian packages) for the Iceberg REST catalog test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless maven >/dev/null; }
	@command -v chromium >/dev/null || { \
		echo "installing Chromium (Debian package) for the console's browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@cmp -s web/package-lock.json web/node_modules/.sluice-package-lock.json || { \
		echo "installing the console's npm packages (web/package-lock.json: Vite, Preact, uPlot, playwright-core)"; \
		cd web && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.sluice-package-lock.json; }
	testenv/fetch iceberg-rest
	testenv/fetch kafka-java
	testenv/fetch spark-kafka
	testenv/fetch kafka
	testenv/fetch opensearch
	testenv/nginx
	$(GO) mod download
	cd deploy && $(GO) mod download

# deploy is a module of its own (the Helm chart's tests and their Helm and
# Kubernetes libraries): ./... does not reach it.
vet:
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...

unit:
	SLUICE_REQUIRE_TOOLS=1 SLUICE_PYTHON=$(PYTHON_ENV)/bin/python $(GO) test -race -count=1 -timeout 25m ./...
	cd deploy && $(GO) test -race -count=1 ./...
	@echo "the exactly-once end-to-end tests again, and the multi-instance run, against a real 3-node Apache Kafka cluster (testenv/kafka)"
	SLUICE_REQUIRE_TOOLS=1 SLUICE_TEST_KAFKA=cluster $(GO) test -race -count=1 -p 1 -timeout 30m \
		-run 'TestConformance|Kill9|TestDistributed|Compacted|BackToBack' ./internal/bus ./internal/sink ./internal/loader ./internal/search ./cmd/sluice

# Short runs minimize new inputs briefly, or minimizing takes the whole run.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest##*:}; \
		echo "fuzz $$name in $$pkg for $$n executions"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $${n}x -fuzzminimizetime 200x $$pkg; \
	done

# bench measures the collector against a no-op handler, two collectors behind
# nginx against one (make test-deps fetches nginx), the enricher's API
# calls against the bound its concurrency and the API's latency allow, the lake loader
# against DuckDB's COPY, replay into the collector against replay into a
# no-op handler, the search sink against a minimal _bulk client on the
# same OpenSearch node (make test-deps fetches it), and a batch model
# against DuckDB running its SQL alone, each baseline in the same run.
# bench-deps adds to test-deps what only the benchmarks run: the Kafka
# Streams peer of sluicebench peers (testenv/kafka-streams).
bench-deps: test-deps
	testenv/fetch kafka-streams

bench: bench-deps
	$(GO) run ./cmd/sluicebench aggregator
	$(GO) run ./cmd/sluicebench peers
	$(GO) run ./cmd/sluicebench balance
	$(GO) run ./cmd/sluicebench collector
	$(GO) run ./cmd/sluicebench enricher
	$(GO) run ./cmd/sluicebench loader
	$(GO) run ./cmd/sluicebench replay
	$(GO) run ./cmd/sluicebench search
	$(GO) run ./cmd/sluicebench jobs
	$(GO) run ./cmd/sluicebench up

# console rebuilds the web console (web/) into internal/console/dist, which
# the binary embeds; commit both. TestEmbeddedBuildIsFresh fails when the
# build is older than its sources.
console:
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build

# swagger-ui refreshes the embedded API-docs assets from the npm registry.
swagger-ui:
	rm -rf /tmp/sluice-swagger && mkdir -p /tmp/sluice-swagger
	cd /tmp/sluice-swagger && npm pack swagger-ui-dist@latest --silent && tar xzf swagger-ui-dist-*.tgz
	cp /tmp/sluice-swagger/package/swagger-ui-bundle.js /tmp/sluice-swagger/package/swagger-ui.css \
	   /tmp/sluice-swagger/package/LICENSE /tmp/sluice-swagger/package/NOTICE \
	   /tmp/sluice-swagger/package/favicon-32x32.png internal/apidocs/assets/
	node -p 'require("/tmp/sluice-swagger/package/package.json").version' > internal/apidocs/assets/VERSION

clean:
	rm -rf bin sluice-data
