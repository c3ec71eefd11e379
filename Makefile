# shimmy_py: `make demo` builds, installs and generates with the trained stdlib model;
# `make test` runs the test suite (it builds and installs first).
PYTHON ?= python3
MODELS ?= models
BUILD_FLAGS ?=   # --batch-invariant: logits bit-identical alone or batched (README: "Three builds")

.PHONY: all native install demo test test-fast test-mid test-invariant bench bench-trace screenshots train clean

all: install

native:
	native/build.sh $(BUILD_FLAGS)

install: native
	$(PYTHON) -m pip install --quiet -e '.[test]'

$(MODELS)/tiny.gguf: | install
	$(PYTHON) -m shimmy_py synth $@ --preset tiny

demo: install
	@echo "--- stdlib-moe: 9M parameters, trained here on Python's standard library (training/LOG.md) ---"
	$(PYTHON) -m shimmy_py generate training/stdlib-moe.gguf --ctx 512 -p "def read_lines(path):" -n 96 \
		--temperature 0.6 --seed 3 --repeat-penalty 1.1

test: install
	$(PYTHON) -m pytest -q tests

# the tests that compare sequences decoded alone and batched, on the
# --batch-invariant build, where they must agree bit for bit
INVARIANT_TESTS = (batch_invariance or concurrent_greedy or extending or reuse_check or plain_greedy or greedy_equals_llama_completion) and not test_families
test-invariant: install
	SHIMMY_PY_LIB_DIR="$$(native/build.sh --batch-invariant)/lib" $(PYTHON) -m pytest -q tests -k "$(INVARIANT_TESTS)"
	native/build.sh $(BUILD_FLAGS) >/dev/null

# the pure tests (tests/unit): no native build needed, a few seconds
test-fast:
	$(PYTHON) -m pytest -q -m "not native" tests

# the middle tier: everything but the heavy modules (tests/conftest.py names them)
test-mid: install
	$(PYTHON) -m pytest -q -m "not slow" tests

# the peer is stock llama.cpp (native/build.sh --stock); --batch-invariant is measured beside it
bench: install
	native/build.sh --stock >/dev/null
	native/build.sh --batch-invariant >/dev/null
	native/build.sh $(BUILD_FLAGS) >/dev/null
	$(PYTHON) benchmarks/side_by_side.py
	$(PYTHON) benchmarks/trace_replay.py
	$(PYTHON) benchmarks/spec_trained.py
	$(PYTHON) benchmarks/streaming.py --rounds 5   # as root: a memory cgroup (docs/STREAMING.md)

# many models: a replayed trace against llama-server's router mode (docs/TRACE.md)
bench-trace: install
	native/build.sh --stock >/dev/null
	$(PYTHON) benchmarks/trace_replay.py

# the page's views photographed by its browser tests (tests/test_page.py), on the trained model, into docs/page
screenshots: install
	SHIMMY_PY_SCREENSHOTS=docs/page SHIMMY_PY_PAGE_MODEL=training/stdlib-moe.gguf \
		$(PYTHON) -m pytest -q tests/test_page.py -k "not stop_ends"   # a trained model may end before Stop

# the trained stdlib model, from nothing (about an hour on 2 cores): training/train.py, training/LOG.md
train:
	$(PYTHON) -m pip install --quiet -e '.[train]'
	$(PYTHON) -m training.train

clean:
	rm -rf $(MODELS) build *.egg-info .pytest_cache
