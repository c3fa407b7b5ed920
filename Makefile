# One way to do each thing. `make test` and `make demo` set up the venv first if needed.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(VPY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(VPY))

.PHONY: setup browser slurm test demo demo-seeds executor-env bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q -r requirements-dev.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned stack and the `idia` command

browser:  ## headless Chromium for the report's browser test (Debian's package; the test skips where none installs)
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "make browser: no Chromium could be installed here; the browser test will skip"

slurm:  ## a single-node Slurm for the attack's --cluster slurm test (Debian's slurm-wlm + munge; the test starts and stops the daemons, and skips where none installs)
	@command -v slurmctld >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1; } || \
		echo "make slurm: Slurm could not be installed here; the Slurm test will skip"

test: $(STAMP) browser slurm  ## set up if needed, then lint, check formatting and run the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VPY) -m pytest -q -ra tests

demo: $(STAMP)  ## set up if needed, then run the embedded end-to-end demo (synthetic world, tiny CLIP)
	$(VENV)/bin/idia run pipelines/demo.yaml

demo-seeds: $(STAMP)  ## the demo over training seeds 0, 1, 2 (three worlds and models, ~20 min: five took 33 min): rates as mean ± std over seeds
	$(VENV)/bin/idia run pipelines/demo.yaml --seeds 0,1,2 --out runs/demo-seeds

executor-env: $(STAMP)  ## pack the Python environment Spark executors need on a cluster (dist/idia-executor-env.tar.gz)
	$(VENV)/bin/idia pack-env --out dist/idia-executor-env.tar.gz

bench: $(STAMP)  ## run the CPU benchmarks recorded in BENCHMARKS.md (tens of minutes; bench/attack_gpu.sh is for a GPU)
	$(VPY) -m bench.mine --rlike-rows 20000
	$(VPY) -m bench.mine_scale  # 40M captions, ~2 GB in bench-out/ (the Polars rows need `pip install polars==2.1.0`)
	$(VPY) -m bench.download --n 3000 --reps 2 --shard-size 500
	$(VPY) -m bench.attack --identities 16 --images-per-identity 12 --num-candidates 100

clean:  ## remove build debris (keeps .venv)
	rm -rf .pytest_cache *.egg-info spark-warehouse
