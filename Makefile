# Everything runs inside a local virtualenv built from pinned versions.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SAMPLE_DIR ?= sample_data
STUDENTS ?= 2000

.PHONY: venv test sample bench clean

$(VENV)/.installed: setup.py requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests

# Generate sample ProblemLogs and train on them with the DirectRunner.
sample: venv
	$(PY) -m pipelines.generate_sample --output $(SAMPLE_DIR)/logs --students $(STUDENTS) --seed 1
	$(PY) -m pipelines.train_knowledge_model --input '$(SAMPLE_DIR)/logs/*.avro' \
		--output $(SAMPLE_DIR)/output --overwrite

bench: venv
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) $(SAMPLE_DIR) *.egg-info
