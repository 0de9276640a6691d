# Set-up on a fresh machine: `make demo` (train + evaluate on the built-in data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= data/synthetic
DEMO   ?= runs/demo

.PHONY: venv test test-slow demo data clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q -m "not slow"

test-slow: venv
	$(PY) -m pytest -q -m slow

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

clean:
	rm -rf $(DEMO) .pytest_cache
