"""Hypothesis profiles, registered and selected on import (tests/conftest.py imports it).

"ci" (the default, and always under CI) is derandomised: the same examples on
every run, so a red run is reproducible and a green run is not luck.
"random" draws fresh examples each run, for long local hunts:
``HYPOTHESIS_PROFILE=random python -m pytest tests/test_decision.py``.
Tests set their own max_examples and deadline, never derandomize, so the
profile alone decides whether a run is reproducible.

It is a module of its own so that benchmarks/mutation.py can load it as a
pytest plugin (``-p tests.hypothesis_profiles --noconftest``) without the
conftest's torch import, which would dominate each mutant's test run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("random", derandomize=False, deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))
