# Everything runs inside a local virtualenv built from pinned versions.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STUDENTS ?= 2000
# One directory per sample size: another STUDENTS never replaces a sample.
SAMPLE_DIR ?= sample_data/students-$(STUDENTS)

.PHONY: venv lint test sample bench clean

$(VENV)/.installed: setup.py requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Lint with ruff (rules in ruff.toml); `make test`, and so CI, runs it first.
lint: venv
	$(PY) -m ruff check .

test: venv lint
	$(PY) -m pytest -q tests

# Generate sample ProblemLogs and train on them with the DirectRunner
# (the same STUDENTS again regenerates the same logs and retrains).
sample: venv
	$(PY) -m pipelines.generate_sample --output $(SAMPLE_DIR)/logs --students $(STUDENTS) --seed 1
	$(PY) -m pipelines.train_knowledge_model --input '$(SAMPLE_DIR)/logs/*.avro' \
		--output $(SAMPLE_DIR)/output --overwrite
	@echo "Sample of $(STUDENTS) students in $(SAMPLE_DIR)/ (logs/, output/); README.md has the tour."

bench: venv
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) sample_data *.egg-info

# ---------------------------------------------------------------------------
# Dataflow (docs/dataflow.md): build the container image, build the Flex
# Templates, launch one. PROJECT and BUCKET are required, e.g.
#   make image template PROJECT=my-proj BUCKET=my-proj-knowledge-model
#   make launch PROJECT=my-proj BUCKET=my-proj-knowledge-model PIPELINE=train_boosted \
#       PARAMETERS='input=bq://my-proj.logs.problem_logs,output=gs://my-proj-knowledge-model/runs/manual'
# One image serves every template (see the Dockerfile's header): it is built
# once and tagged $(IMAGE)-<pipeline> per template, the tags differing only in
# the pipeline the launcher runs; workers of every template run $(IMAGE).
PROJECT ?=
REGION ?= us-central1
BUCKET ?=
REPOSITORY ?= dataflow
TAG ?= $(shell git describe --always --dirty --abbrev=12 2>/dev/null)
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/knowledge-model:$(TAG)
TEMPLATES ?= train_knowledge_model train_boosted monitor
TEMPLATE_DIR ?= templates
TEMPLATE_PATH ?= gs://$(BUCKET)/templates
WORKER_SA ?=
MACHINE_TYPE ?= n2-highmem-4
MAX_WORKERS ?= 20
PIPELINE ?= train_knowledge_model
PARAMETERS ?=
JOB_NAME ?= $(subst _,-,$(PIPELINE))-$(shell date -u +%Y%m%d-%H%M%S)
DATAFLOW_BUILD_DIR ?= build/dataflow
# PRINT_ONLY=1: `make template` prints each template spec instead of writing it.
PRINT_ONLY ?=
GCLOUD ?= gcloud
DOCKER ?= docker

.PHONY: dataflow-check image image-local template launch

dataflow-check:
	@test -n "$(PROJECT)" || { echo "error: set PROJECT=<Google Cloud project id>" >&2; exit 2; }
	@test -n "$(BUCKET)" || { echo "error: set BUCKET=<bucket for templates, staging and temp files, without gs://>" >&2; exit 2; }
	@image='$(IMAGE)'; case "$${image##*/}" in *:?*) ;; \
	  *) echo "error: IMAGE=$$image must end with a :tag (per-template tags are IMAGE-<pipeline>)" >&2; exit 2;; esac

# Cloud Build (no local Docker needed): one build, the layers built once and
# tagged per template (later steps hit the first step's layer cache).
image: dataflow-check
	@mkdir -p $(DATAFLOW_BUILD_DIR)
	@{ printf '{"steps": [\n'; \
	   printf '  {"name": "gcr.io/cloud-builders/docker", "args": ["build", "--build-arg", "SDK_CONTAINER_IMAGE=%s", "-t", "%s", "."]}' '$(IMAGE)' '$(IMAGE)'; \
	   for t in $(TEMPLATES); do \
	     printf ',\n  {"name": "gcr.io/cloud-builders/docker", "args": ["build", "--build-arg", "PIPELINE=%s", "--build-arg", "SDK_CONTAINER_IMAGE=%s", "-t", "%s-%s", "."]}' "$$t" '$(IMAGE)' '$(IMAGE)' "$$t"; \
	   done; \
	   printf '\n],\n"images": ["%s"' '$(IMAGE)'; \
	   for t in $(TEMPLATES); do printf ', "%s-%s"' '$(IMAGE)' "$$t"; done; \
	   printf '],\n"timeout": "3600s"}\n'; } > $(DATAFLOW_BUILD_DIR)/cloudbuild.json
	$(GCLOUD) builds submit . --project=$(PROJECT) --region=$(REGION) \
	    --config=$(DATAFLOW_BUILD_DIR)/cloudbuild.json

# The same with a local Docker engine.
image-local: dataflow-check
	$(DOCKER) build --build-arg SDK_CONTAINER_IMAGE=$(IMAGE) -t $(IMAGE) .
	for t in $(TEMPLATES); do \
	  $(DOCKER) build --build-arg PIPELINE=$$t --build-arg SDK_CONTAINER_IMAGE=$(IMAGE) -t $(IMAGE)-$$t . || exit 1; \
	done
	$(DOCKER) push $(IMAGE)
	for t in $(TEMPLATES); do $(DOCKER) push $(IMAGE)-$$t || exit 1; done

# One Flex Template spec per pipeline, gs://BUCKET/templates/<pipeline>.json,
# each pointing at its image tag, with its metadata (parameters, validation)
# from $(TEMPLATE_DIR)/<pipeline>.json and default worker settings.
template: dataflow-check
	@for t in $(TEMPLATES); do test -f $(TEMPLATE_DIR)/$$t.json || \
	  { echo "error: $(TEMPLATE_DIR)/$$t.json (template metadata) is missing" >&2; exit 2; }; done
	for t in $(TEMPLATES); do \
	  $(GCLOUD) dataflow flex-template build $(TEMPLATE_PATH)/$$t.json \
	      --project=$(PROJECT) --image=$(IMAGE)-$$t --sdk-language=PYTHON \
	      --metadata-file=$(TEMPLATE_DIR)/$$t.json \
	      --temp-location=gs://$(BUCKET)/tmp --staging-location=gs://$(BUCKET)/staging \
	      --worker-machine-type=$(MACHINE_TYPE) --max-workers=$(MAX_WORKERS) \
	      $(if $(WORKER_SA),--service-account-email=$(WORKER_SA)) \
	      $(if $(PRINT_ONLY),--print-only) || exit 1; \
	done

# Runs one template now. PARAMETERS: the pipeline's options as name=value,...
# (a value holding commas needs gcloud's alternate delimiter, see
# `gcloud topic escaping`). Nightly runs are launched by Cloud Scheduler.
launch: dataflow-check
	$(GCLOUD) dataflow flex-template run "$(JOB_NAME)" \
	    --project=$(PROJECT) --region=$(REGION) \
	    --template-file-gcs-location=$(TEMPLATE_PATH)/$(PIPELINE).json \
	    $(if $(PARAMETERS),--parameters=$(PARAMETERS)) \
	    $(if $(WORKER_SA),--service-account-email=$(WORKER_SA))
