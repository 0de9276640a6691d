# Set-up on a fresh machine: `make demo` (train + evaluate on the built-in data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= data/synthetic
DEMO   ?= runs/demo

.PHONY: venv test test-slow test-docs demo data clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q -rs -m "not slow"

test-slow: venv
	$(PY) -m pytest -q -m slow

# every command shown in README.md, docs/*.md and model_zoo/README.md: parsed (fast) and run small (slow)
test-docs: venv
	$(PY) -m pytest -q tests/test_docs_commands.py tests/test_docs_commands_slow.py

data: venv
	@[ -f $(DATA)/classes.txt ] || $(PY) -m gluon_bof.data.synthetic --out $(DATA)

# The demo: a small YOLOv3 (MobileNet 0.25, narrow head) trained from scratch with every freebie
# (mixup, label smoothing, random shapes, cosine LR + warmup, no bias decay, data augmentation),
# sized to finish on 2 CPU cores in under 10 minutes; see README "What make demo does".
DEMO_TRAIN = --network mobilenet0.25 --head-channels 64,32,32 --obj-prior 0.01 \
	--epochs 32 --batch-size 8 -j 1 --random-shape-min 128 --random-shape-max 224 --data-shape 192 \
	--mixup --no-mixup-epochs 16 --label-smooth --no-wd --lr 0.005 --lr-mode cosine --warmup-epochs 1 \
	--val-interval 4 --save-interval 0 --log-interval 50
DEMO_CKPT = $(DEMO)/yolo3_mobilenet0.25_voc_best.pth

demo: venv data
	OMP_NUM_THREADS=1 $(PY) scripts/train_yolo3.py $(DEMO_TRAIN) --data-root $(DATA) --save-prefix $(DEMO)/
	$(PY) scripts/eval_yolo3.py --checkpoint $(DEMO_CKPT) --data-root $(DATA) --data-shape 192 224 256 \
	    --save-dir $(DEMO)
	$(PY) scripts/demo.py --checkpoint $(DEMO_CKPT) --data-root $(DATA) --data-shape 224 --thresh 0.3 \
	    --out $(DEMO)/detections.png

# Speed: training and inference images/s per precision / channels_last / torch.compile, FLOPs and the
# fraction of the measured matmul peak, host syncs; JSON + Markdown under runs/bench (docs/benchmarks.md).
# BENCH_ARGS adds flags, e.g. make bench BENCH_ARGS="--models yolo3_darknet53@416 --gluoncv-python PY".
BENCH_ARGS ?=
bench: venv
	$(PY) scripts/benchmark_speed.py --out runs/bench $(BENCH_ARGS)

# The GPU check (docs/benchmarks.md, "GPU check"): on a fresh CUDA machine with torch (no venv, no
# network: it runs with the machine's python3 and the wheels in .whl/), or DEVICE=cpu, the rehearsal
# with tiny sizes. Writes summary.json, summary.md and logs.txt to $OUT, else runs/gpu_check.
DEVICE ?= cuda
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) scripts/gpu_check.py --device $(DEVICE)

# Wheels the GPU machine lacks (Python 3.12, manylinux x86_64; their one dependency, numpy, is there).
GPU_WHEELS = pycocotools==2.0.11 faster-coco-eval==1.8.0
gpu-wheels: venv
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

clean:
	rm -rf $(DEMO) .pytest_cache
