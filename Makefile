# divdet: the two commands of the README, plus helpers.
#   make demo   set up (if needed), generate the embedded dataset, train, evaluate
#   make test   set up (if needed) and run the test suite
PY := .venv/bin/python

.PHONY: setup test demo lint bench gpu-prepare gpu-check

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) tools/demo/run_demo.py

lint: setup
	$(PY) -m ruff check divdet tools tests configs

bench: setup
	$(PY) tools/analysis_tools/benchmark.py configs/ssd_divided_resnet50_coco.py

# The GPU kit (docs/speed.md): prepare here, run on a GPU machine without network.
gpu-prepare: setup
	bash tools/gpu/prepare.sh

gpu-check:
	bash tools/gpu/check.sh
