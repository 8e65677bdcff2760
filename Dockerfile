# One image for every Dataflow role of this project (the pattern of Google's
# python flex-template samples):
#
#  * the worker SDK container: the Apache Beam SDK image (ENTRYPOINT
#    /opt/apache/beam/boot) with the project and its pinned runtime
#    dependencies installed at build time, so workers install nothing at
#    start-up (launch with sdk_container_image=<this image>);
#  * the Flex Template launcher: Google's Python template launcher binary plus
#    FLEX_TEMPLATE_PYTHON_PY_FILE, run by Dataflow on the launcher VM to build
#    and submit the job graph.
#
# Several templates, one image. A Flex Template runs one py file, and
# `gcloud dataflow flex-template build --image` cannot set environment
# variables (its --env flag only works when gcloud builds the image itself, and
# is rejected together with --image). So every template runs the same small
# launcher (container/launcher.py), which runs pipelines.<KM_PIPELINE>; the
# build argument PIPELINE sets KM_PIPELINE in the very last layers. `make image`
# builds the image once and tags it once per template (<IMAGE>-<pipeline>):
# all tags share every filesystem layer (stored and pulled once) and differ only
# in that variable. `make template` points each template at its tag; workers of
# every template use <IMAGE> itself. Build by hand:
#
#   docker build --build-arg SDK_CONTAINER_IMAGE=$IMAGE -t $IMAGE .
#   docker build --build-arg SDK_CONTAINER_IMAGE=$IMAGE \
#       --build-arg PIPELINE=train_boosted -t $IMAGE-train_boosted .
#
# The Beam version must equal the apache-beam pin in setup.py (the launcher
# builds the job graph with the same SDK the workers run; a test checks it).

# Only the launcher binary is taken from this image. Any release works (it does
# not depend on the Beam version); pin one so builds are reproducible.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00 AS template_launcher

FROM apache/beam_python3.11_sdk:2.77.0

# Dataflow runs one SDK worker process per vCPU: BLAS/OpenMP thread pools
# larger than one thread per process only fight the other processes for cores
# (the per-exercise fits are small dense problems).
ENV OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    VECLIB_MAXIMUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /opt/knowledge-model

# 1. Runtime dependencies: setup.py's install_requires, with every transitive
#    version taken from requirements-lock.txt (used as constraints, so the
#    lock's test-only tools, e.g. the emulators and hadolint, are not
#    installed). Only setup.py is copied yet, so this layer is rebuilt when the
#    dependencies change, not when the code does; the package it installs
#    still has no modules and is removed again.
COPY setup.py requirements-lock.txt ./
RUN pip install --no-cache-dir --constraint requirements-lock.txt . \
    && pip uninstall --yes knowledge-model-pipelines \
    && rm -rf build ./*.egg-info

# 2. The project itself, installed into site-packages (not editable), exactly
#    what an sdist of setup.py contains.
COPY models/ models/
COPY dashboard/ dashboard/
COPY transforms/ transforms/
COPY pipelines/ pipelines/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

# 3. Flex Template launcher settings. FLEX_TEMPLATE_PYTHON_SETUP_FILE and
#    FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE are deliberately not set: the
#    launcher would pip-install them at every launch and stage them for the
#    workers to install again at start-up, while this image already holds
#    both.
COPY container/launcher.py /template/launcher.py
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/launcher.py
WORKDIR /template

# 4. The per-template layers (see the top): which pipeline the launcher runs,
#    and the worker image it asks for when a launch names none.
ARG PIPELINE=train_knowledge_model
ARG SDK_CONTAINER_IMAGE=""
ENV KM_PIPELINE=${PIPELINE} \
    KM_SDK_CONTAINER_IMAGE=${SDK_CONTAINER_IMAGE}
# Fails the build if the pipeline (its command line and its Beam job) or any
# of its dependencies does not import.
RUN python -c "import pipelines.${PIPELINE}, pipelines.jobs.${PIPELINE}"

# The Beam SDK harness entrypoint, so the image also works as the workers'
# SDK container (the Flex Template launcher ignores ENTRYPOINT).
ENTRYPOINT ["/opt/apache/beam/boot"]
