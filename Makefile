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

demo: venv data
	$(PY) scripts/train_yolo3.py --demo --data-root $(DATA) --save-prefix $(DEMO)/yolo3_mobilenet0.25
	$(PY) scripts/eval_yolo3.py --demo --data-root $(DATA) --checkpoint $(DEMO)/yolo3_mobilenet0.25_best.pth \
	    --save-dir $(DEMO)
	$(PY) scripts/demo.py --checkpoint $(DEMO)/yolo3_mobilenet0.25_best.pth --data-root $(DATA) \
	    --out $(DEMO)/detections.png

clean:
	rm -rf $(DEMO) .pytest_cache
