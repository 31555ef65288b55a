# divdet: the two commands of the README, plus helpers.
#   make demo   set up (if needed), generate the embedded dataset, train, evaluate
#   make test   set up (if needed) and run the test suite
PY := .venv/bin/python

.PHONY: setup test demo lint bench

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
