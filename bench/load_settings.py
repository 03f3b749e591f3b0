"""Settings of the load test's server (bench/load.py): the production settings as the
environment gives them, with the collected static files in the run's scratch folder and one
URL more, the floor page (bench/load_urls.py). Never used outside the load test."""

import os

from trialsite.settings import *  # noqa: F403 - the production settings, unchanged

ROOT_URLCONF = "bench.load_urls"
# The manifest of hashed static files, made by collectstatic for this run only.
STATIC_ROOT = os.environ["LOAD_STATIC_ROOT"]
