# PriorDepth: `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=
# The fast subset runs everywhere (CI included); `make test-all` adds the checks marked slow.
PYTEST_MARKERS ?= not slow

.PHONY: install ros-interfaces test test-all lint bench demo clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall when the declared dependencies change.
$(VENV)/.installed: setup.py pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev,export,ros]"
	touch $@

install: $(VENV)/.installed

# tf2_msgs/TFMessage (/tf, /tf_static) is not among the ros-jazzy wheels on PyPI: when the venv lacks it, build
# ros_interfaces/tf2_msgs with the wheels' ament_cmake + rosidl and install it into the venv (needs cmake and a C/C++
# compiler: `apt-get install cmake g++`). Installed there, it needs no sourced ROS environment at run time.
ROS_INTERFACES_BUILD := build/ros_interfaces
ros-interfaces: install
	@if ! $(PY) -c "from tf2_msgs.msg import TFMessage" 2>/dev/null; then \
	  set -e; \
	  command -v cmake >/dev/null || { echo "ros-interfaces: cmake not found (apt-get install cmake g++)" >&2; exit 1; }; \
	  venv="$$(cd $(VENV) && pwd)"; \
	  echo "building tf2_msgs into $$venv (build folder $(ROS_INTERFACES_BUILD)/tf2_msgs)"; \
	  rm -rf $(ROS_INTERFACES_BUILD)/tf2_msgs; mkdir -p $(ROS_INTERFACES_BUILD); \
	  log=$(ROS_INTERFACES_BUILD)/tf2_msgs.log; \
	  { AMENT_PREFIX_PATH="$$venv" cmake -S ros_interfaces/tf2_msgs -B $(ROS_INTERFACES_BUILD)/tf2_msgs \
	      -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_PREFIX_PATH="$$venv" \
	      -DCMAKE_INSTALL_PREFIX="$$venv" -DPython3_EXECUTABLE="$$venv/bin/python" \
	    && cmake --build $(ROS_INTERFACES_BUILD)/tf2_msgs --parallel \
	    && cmake --install $(ROS_INTERFACES_BUILD)/tf2_msgs; } >$$log 2>&1 \
	    || { tail -n 40 $$log >&2; echo "ros-interfaces: building tf2_msgs failed; full log: $$log" >&2; exit 1; }; \
	  $(PY) -c "from tf2_msgs.msg import TFMessage"; \
	fi

test: install ros-interfaces
	$(PY) -m pytest -m "$(PYTEST_MARKERS)" $(PYTEST_ARGS)

test-all: install ros-interfaces
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/solvers.py

# `make demo`: the shipped model (priordepth_core/assets/) on a short synthetic street sequence with exact ground
# truth, rendered once into $(DEMO_DATA) (headless OpenGL; reused afterwards), run by the offline runner with ONNX
# Runtime. Prints the summary table (FPS, ATE, abs_rel) and where the pictures are.
DEMO_DIR ?= outputs/demo
DEMO_DATA := $(DEMO_DIR)/street_seed0900
DEMO_RUN := $(DEMO_DIR)/run
demo: install
	@if [ ! -f $(DEMO_DATA)/rgb.txt ]; then \
	  echo "rendering the demo sequence into $(DEMO_DATA) (once)"; \
	  $(PY) -m priordepth_core.data.synthetic --scene street --motion car --frames 60 --size 640x192 --seed 900 \
	    --format tum --out $(DEMO_DATA) --no-progress >/dev/null; \
	fi
	OMP_NUM_THREADS=1 $(PY) -m priordepth_core.infer --input $(DEMO_DATA) --out $(DEMO_RUN) --overwrite \
	  --backend onnxruntime --threads 1 --concurrent-networks

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
