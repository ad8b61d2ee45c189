# Developer entry points. The test suite, benches and demo start their own throwaway
# redis-servers on free ports (src/redis_process.rs), so nothing here starts a Redis or uses
# port 6379. The system service Debian may start when it installs redis-server is harmless:
# nothing connects to it.

.PHONY: redis browser openapi-validator typescript-deps golang test test-dashboard test-openapi test-typescript test-go screenshots faults soak demo serve bench lint

REDIS_PACKAGES := redis-server redis-tools

# Installs Redis only when missing; honours UNSTUCK_REDIS_SERVER / UNSTUCK_REDIS_CLI.
redis:
	@server="$${UNSTUCK_REDIS_SERVER:-redis-server}"; cli="$${UNSTUCK_REDIS_CLI:-redis-cli}"; \
	if command -v "$$server" >/dev/null 2>&1 && command -v "$$cli" >/dev/null 2>&1; then \
		echo "redis: using $$(command -v "$$server") ($$("$$server" --version))"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(REDIS_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(REDIS_PACKAGES); \
	else \
		echo "redis-server / redis-cli not found and no root or passwordless sudo to install them. Run:" >&2; \
		echo "  sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(REDIS_PACKAGES)" >&2; \
		exit 1; \
	fi

# The dashboard's end-to-end test needs Debian's chromium and playwright-core (npm, pinned
# in tests/browser/package-lock.json; it downloads no browser). Installed only when missing.
BROWSER_PACKAGES := chromium

browser:
	@if command -v "$${CHROMIUM:-/usr/bin/chromium}" >/dev/null 2>&1; then \
		echo "browser: using $$(command -v "$${CHROMIUM:-/usr/bin/chromium}")"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(BROWSER_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(BROWSER_PACKAGES); \
	else \
		echo "chromium not found and no root or passwordless sudo to install it. Run:" >&2; \
		echo "  sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(BROWSER_PACKAGES)" >&2; \
		exit 1; \
	fi
	@if [ ! -d tests/browser/node_modules/playwright-core ]; then \
		command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }; \
		cd tests/browser && npm ci --no-audit --no-fund; \
	fi

# The OpenAPI document's independent validator: @readme/openapi-parser (npm, pinned in
# tests/openapi/package-lock.json). Installed only when missing.
openapi-validator:
	@if [ ! -d tests/openapi/node_modules/@readme/openapi-parser ]; then \
		command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }; \
		cd tests/openapi && npm ci --no-audit --no-fund; \
	fi

# The Go client's tests need the go command (Debian's golang-go, Go 1.19 or newer).
# Installed only when missing.
GO_PACKAGES := golang-go

golang:
	@if command -v go >/dev/null 2>&1; then \
		echo "go: using $$(command -v go) ($$(go version))"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(GO_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(GO_PACKAGES); \
	else \
		echo "go not found and no root or passwordless sudo to install it. Run:" >&2; \
		echo "  sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $(GO_PACKAGES)" >&2; \
		exit 1; \
	fi

# The TypeScript client's compiler and Node types (npm, pinned in
# clients/typescript/package-lock.json; the package has no runtime dependency). Installed
# only when missing.
typescript-deps:
	@if [ ! -d clients/typescript/node_modules/typescript ] || [ ! -d clients/typescript/node_modules/@types/node ]; then \
		command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }; \
		cd clients/typescript && npm ci --no-audit --no-fund; \
	fi

# Every test: the Rust tests of all targets, the doctests, the Python, Go and TypeScript
# clients', the dashboard's and the OpenAPI document's, with the fault suite in a lane of
# its own beside the rest (tests/run.sh says why).
test: redis browser openapi-validator golang typescript-deps
	tests/run.sh

# Only the OpenAPI document's check (`unstuck openapi` through the validator).
test-openapi: openapi-validator
	cargo build
	UNSTUCK_BIN=$(CURDIR)/target/debug/unstuck node tests/openapi/validate.mjs

# Only the Go client's tests (clients/go), against a real `unstuck serve`.
test-go: redis golang
	cargo build
	cd clients/go && UNSTUCK_BIN=$(CURDIR)/target/debug/unstuck go test -count=1 ./...
# Only the TypeScript client's tests: tsc, then node:test against a real `unstuck serve`.
test-typescript: redis typescript-deps
	cargo build
	cd clients/typescript && UNSTUCK_BIN=$(CURDIR)/target/debug/unstuck npm test

# Only the dashboard's end-to-end test in headless Chromium.
test-dashboard: redis browser
	cargo build
	UNSTUCK_BIN=$(CURDIR)/target/debug/unstuck node tests/browser/dashboard.mjs

# Refreshes the screenshots in docs/ from a run of the dashboard's end-to-end test.
screenshots: redis browser
	cargo build
	UNSTUCK_BIN=$(CURDIR)/target/debug/unstuck SCREENSHOT_DIR=docs node tests/browser/dashboard.mjs

# The fault suite alone (it also runs in `make test`), one case at a time, then its table.
faults: redis
	rm -f target/tmp/faults.md
	cargo test --test faults -- --nocapture --test-threads 1
	@echo; echo "| fault | load held | executions | lost | double terminal | leaked slots | longest script | notes |"
	@echo "|---|---|--:|--:|--:|--:|--:|---|"
	@cat target/tmp/faults.md

# The soak: 2 million executions with a 1-minute retention, memory sampled (about 7 minutes).
soak: redis
	cargo bench --bench soak

demo: redis
	cargo run --release -- demo

# The HTTP API on http://127.0.0.1:8080 in front of a throwaway Redis, for trying it out.
serve: redis
	cargo run --release -- serve --throwaway-redis

bench: redis
	cargo bench

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --no-default-features -- -D warnings
