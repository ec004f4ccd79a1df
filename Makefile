# loom — top-level entry points.  CMake does the building underneath.
#   make demo     build and run the tour (examples/demo.c)
#   make test     lint, then build and pass every test: plain, chaos seeds, ThreadSanitizer,
#                 ASan+UBSan, a valgrind subset, and an out-of-tree build against the installed
#                 library
#   make check    the plain test run only (quick)
#   make lint     clang-tidy and cppcheck over src (fails on any finding)
#   make soak     the plain suite and the suite under chaos seeds, N times each (not in test)
#   make bench    loom beside Go on the same workloads (bench/run.py)
#   make install  PREFIX=/usr/local by default

PREFIX  ?= /usr/local
JOBS    ?= $(shell nproc)
CMAKE   ?= cmake
BUILD   ?= build
CC      ?= cc

.PHONY: all build demo test check lint test-chaos test-tsan test-asan test-valgrind test-install soak bench install clean

all: build

build:
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/examples/demo

# CTEST_EXCLUDE='regex' skips matching tests (for local runs; the default skips none).
CTEST_EXCLUDE ?= ^$$

check: build
	cd $(BUILD) && ctest --output-on-failure -j 2 -E '$(CTEST_EXCLUDE)'

# Static analysis of the library's sources, failing on any finding (tools/lint.sh):
# clang-tidy with .clang-tidy's checks over src/*.c (the flags from a clang configuration in
# build-lint), then cppcheck over src.
lint:
	tools/lint.sh build-lint $(JOBS)

# The plain suite again under chaos mode (LOOM_CHAOS=N, src/chaos.c): the runtime's race
# windows stretched at random, with the invariant checks on.  A failure names its seed; rerun
# it with LOOM_CHAOS=N ctest -R name.  The million-goroutine tests are scaled down (chaos is
# about interleavings, and every window it stretches costs time).
CHAOS_SEEDS ?= 1 2 3

test-chaos: build
	@for s in $(CHAOS_SEEDS); do \
	    echo "---- chaos seed $$s"; \
	    (cd $(BUILD) && LOOM_CHAOS=$$s LOOM_TEST_SCALE=5 ctest --output-on-failure -j 2 -E '$(CTEST_EXCLUDE)') || { echo "chaos seed $$s failed"; exit 1; }; \
	done

# Many runs of the plain suite and of the suite under chaos, each failure printed with its seed
# and the tally kept in $(BUILD)/soak-tally.txt (tools/soak.sh).  SOAK_RUNS=N plain runs,
# SOAK_CHAOS_RUNS=M chaos runs (default N), interleaved.
SOAK_RUNS ?= 20
SOAK_CHAOS_RUNS ?= $(SOAK_RUNS)

soak: build
	tools/soak.sh $(BUILD) $(SOAK_RUNS) $(SOAK_CHAOS_RUNS)

# ThreadSanitizer and ASan+UBSan builds run the same tests; clang understands the
# fiber annotations in src/fiber.c.  LOOM_TEST_SCALE shrinks the million-goroutine tests.
test-tsan:
	@$(CMAKE) -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DLOOM_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_BUILD_BENCH=OFF >/dev/null
	@$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" LOOM_TEST_SCALE=20 ctest --output-on-failure -j 2 -E '$(CTEST_EXCLUDE)'

test-asan:
	@$(CMAKE) -S . -B build-asan -DCMAKE_C_COMPILER=clang -DLOOM_SANITIZE=address -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_BUILD_BENCH=OFF >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" LOOM_TEST_SCALE=10 ctest --output-on-failure -j 2 -E '$(CTEST_EXCLUDE)'

test-valgrind: build
	@if [ -x tests/valgrind.sh ]; then tests/valgrind.sh $(BUILD); else echo "test-valgrind: tests/valgrind.sh not present yet, skipped"; fi

test-install: build
	@if [ -x tests/install.sh ]; then tests/install.sh $(BUILD); else echo "test-install: tests/install.sh not present yet, skipped"; fi

test: lint check test-chaos test-tsan test-asan test-valgrind test-install

bench: build
	bench/run.py $(BUILD)

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-tsan build-asan build-lint
