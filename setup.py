"""Knowledge-model training pipelines (Apache Beam).

Installed on Dataflow workers too (--setup_file ./setup.py), so runtime
dependencies are pinned here; requirements-lock.txt pins the whole tree for
development and CI.
"""

import setuptools

setuptools.setup(
    name="knowledge-model-pipelines",
    version="0.1.0",
    description="Beam pipelines that train per-exercise student knowledge models",
    packages=setuptools.find_packages(include=["models", "models.*", "dashboard", "dashboard.*",
                                               "transforms", "transforms.*", "pipelines",
                                               "pipelines.*"]),
    # The dashboard's Jinja2 template, stylesheet and script.
    package_data={"dashboard": ["templates/*"]},
    python_requires=">=3.10",
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "numpy==2.4.6",
        "scipy==1.17.1",
        "fastavro==1.13.1",
        "pyarrow==25.0.1",
        # decodes Avro exports to Arrow columns (~25x fastavro's dict per record)
        "polars==2.1.0",
        "google-cloud-datastore==2.27.0",
        "threadpoolctl==3.8.0",
        # the monitoring dashboard (dashboard/): page template, Vega-Lite
        # charts, and the Vega JavaScript it inlines
        "Jinja2==3.1.6",
        "altair==6.3.0",
        "vl-convert-python==1.9.0.post1",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "scikit-learn==1.9.1"],
        # python -m pipelines.launch (the deploy tool; not needed on workers).
        "deploy": ["google-cloud-dataflow-client==0.13.0"],
    },
)
