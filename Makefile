# sgn_ros developer entry points. `make test` and `make demo` work on a fresh machine:
# they create .venv from nothing (torch pinned to the CPU build through
# requirements/constraints.txt), build the ROS messages with colcon, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# the C extensions (sgn_ros.ros._cdr_fill, sgn_ros.model._pixels), built in place (pip install -e .)
# again when their sources change
NATIVE := $(VENV)/.native
# ROS 2 wheels: Kilted by default; `ROS_REQS=requirements/ros-jazzy.txt` for Jazzy.
ROS_REQS ?= requirements/ros.txt
REQS := requirements/constraints.txt requirements/base.txt requirements/cpu.txt $(ROS_REQS) requirements/dev.txt setup.cfg setup.py
# Environment for everything that touches ROS: the venv is an ament prefix (ROS 2 from PyPI wheels).
ROS_ENV := source scripts/ros_env.sh &&

.PHONY: venv ros-build test test-fast lint demo demo-weights stereo-weights bench device-bundle clean

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements/constraints.txt -r requirements/base.txt -r requirements/cpu.txt -r $(ROS_REQS) -r requirements/dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(NATIVE): $(STAMP) sgn_ros/ros/_cdr_fill.c sgn_ros/model/_pixels.c
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(NATIVE)

ros-build: $(NATIVE)
	bash scripts/build_ros.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check sgn_ros test bench launch

test: $(STAMP) ros-build
	$(VENV)/bin/ruff check sgn_ros test bench launch
	$(ROS_ENV) $(PY) -m pytest -q test

# the messages (sgn_ros.msg) are needed by encoder / wire tests that are neither slow nor ros-marked
test-fast: $(STAMP) ros-build
	$(ROS_ENV) $(PY) -m pytest -q -m "not slow and not ros" test

demo: $(STAMP) ros-build
	$(ROS_ENV) $(PY) -m sgn_ros demo --out demo_out

# Reproduce sgn_ros/weights/sgn-l-synth.pth (synthetic data, stereo pseudo-LiDAR, training, export).
# A GPU is strongly advised: see README "Bundled demo weights" for the run that made the shipped file.
demo-weights: $(STAMP)
	$(PY) -m sgn_ros.training.demo_weights --work-dir work_dirs/demo_weights

# Train MobileStereoNet-3D on the synthetic world (config/msnet3d-synth.yaml, the reference recipe)
# and export it compact (float16, < 10 MB) with its held-out error next to SGBM's. GPU advised:
# see README "Training MobileStereoNet on the synthetic world". Data: the demo weights' sequences
# and seeds (00-07, 09, 10 train; 08 held out), written with true depth; existing ones are kept.
STEREO_DATA ?= work_dirs/stereo_data
STEREO_WORK ?= work_dirs/msnet3d-synth
STEREO_FRAMES ?= 75
STEREO_JOBS ?= $(shell nproc)
stereo-weights: $(STAMP)
	printf '%s\n' 00:1000:$(STEREO_FRAMES) 01:1001:$(STEREO_FRAMES) 02:1002:$(STEREO_FRAMES) \
	  03:1003:$(STEREO_FRAMES) 04:1004:$(STEREO_FRAMES) 05:1005:$(STEREO_FRAMES) 06:1006:$(STEREO_FRAMES) \
	  07:1007:$(STEREO_FRAMES) 09:1009:$(STEREO_FRAMES) 10:1010:$(STEREO_FRAMES) 08:2008:40 | \
	  xargs -P $(STEREO_JOBS) -I{} bash -c 'IFS=: read s seed n <<< "{}"; d=$(STEREO_DATA)/dataset/sequences/$$s; \
	    test -f $$d/.stereo-complete || { $(PY) -m sgn_ros synth --out $(STEREO_DATA) --sequence $$s \
	    --seed $$seed --frames $$n --depth && touch $$d/.stereo-complete; }'
	$(PY) -m sgn_ros train-stereo --config config/msnet3d-synth.yaml --data-root $(STEREO_DATA) \
	  --work-dir $(STEREO_WORK) $(if $(wildcard $(STEREO_WORK)/latest.pth),--resume)

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# what scripts/device_check.sh needs on a lent GPU machine (spconv-cu126 for Python 3.12, ~43 MiB)
device-bundle:
	bash scripts/device_bundle.sh

clean:
	rm -rf build install log demo_out .pytest_cache .ruff_cache
