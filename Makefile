# netrun: build the runtime and the example apps, run the example, run the tests.
#
#   make run    builds everything and runs the simple_connection example (two peers)
#   make test   builds everything and runs every test
#   make fuzz   runs each fuzz target for FUZZ_SECONDS (nightly toolchain; installs cargo-fuzz)
#
# One cargo profile (release) serves the binary, the apps and the tests, so the runtime and
# wasmtime are compiled once.

CARGO       ?= cargo
WASM_TARGET := wasm32-wasip1
APPS        := simple_connection simple_subscription app_v1 app_v2 core_probe events_probe sandbox_probe bench_probe
APP_DIR     := target/apps
NETRUN      := target/release/netrun

.PHONY: setup build runtime apps run test bench fuzz fmt lint clean

## setup: install what the build and the tests need (the wasm32-wasip1 target; iproute2, whose
## `ip` builds the cross-host tests' networks of namespaces; python3 with venv, for the app-net
## tests' virtualenv)
setup:
	@command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@command -v ip >/dev/null || command -v /usr/sbin/ip >/dev/null || { \
		echo "installing iproute2 (the cross-host tests build networks with ip)"; \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq iproute2; }
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "installing python3 with venv (the app-net tests run the real Python app-net in a virtualenv)"; \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq python3 python3-venv; }

## build: target/release/netrun and target/apps/<app>.wasm
build: runtime apps

# The workspace's default members, not `-p netrun` alone: with the guest SDK's proc macro in the
# build, the host-side dependencies get the same features as under `cargo test`, so `make test`
# reuses this build instead of compiling wasmtime a second time.
runtime: setup
	$(CARGO) build --release

apps: setup
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(APPS))
	@mkdir -p $(APP_DIR)
	@for app in $(APPS); do cp target/$(WASM_TARGET)/release/$$app.wasm $(APP_DIR)/$$app.wasm; done
	@echo "apps: $(addprefix $(APP_DIR)/,$(addsuffix .wasm,$(APPS)))"

## run: the original's first example, ported: peer1 serves, peer2 calls it
run: build
	NETRUN=$(NETRUN) APP=$(APP_DIR)/simple_connection.wasm bash apps/simple_connection/run.sh

## test: every test (unit, macro UI, integration with real peers on loopback)
test: build
	$(CARGO) test --release

fmt:
	$(CARGO) fmt --all

## lint: formatting and clippy, host crates and wasm apps
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) $(addprefix -p ,$(APPS)) -- -D warnings

## bench: every scenario of docs/performance.md against its baseline, in one run; prints a table
## and writes target/bench/results.json (BENCH_ROUNDS, BENCH_CALLS to change the run's size;
## BENCH_ONLY=remote,fresh for some of the scenarios)
bench: build
	target/release/netrun-bench

## fuzz: the cargo-fuzz targets (frame decoder, message decoder, handshake), each for
## FUZZ_SECONDS, from seeds written by the fuzz_seeds example; the corpus grows under
## target/fuzz/corpus, a crash lands in target/fuzz/artifacts and fails the run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame_decoder message_decoder handshake
FUZZ_DIR     := target/fuzz
fuzz: setup
	@rustup run nightly rustc --version >/dev/null 2>&1 || { \
		echo "make fuzz needs Rust's nightly toolchain (cargo-fuzz builds with sanitizers); install it with: rustup toolchain install nightly"; exit 1; }
	@command -v cargo-fuzz >/dev/null || { echo "installing cargo-fuzz"; $(CARGO) install cargo-fuzz --locked; }
	$(CARGO) run --release --quiet --example fuzz_seeds -- $(FUZZ_DIR)/seeds
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/artifacts/$$target; \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		$(CARGO) +nightly fuzz run --fuzz-dir runtime/fuzz --target-dir $(FUZZ_DIR)/build $$target \
			$(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_DIR)/artifacts/$$target/ \
			|| { echo "fuzz: $$target failed; the input is in $(FUZZ_DIR)/artifacts/$$target"; exit 1; }; \
	done

clean:
	$(CARGO) clean
