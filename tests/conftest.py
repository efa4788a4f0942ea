"""Hypothesis settings for the whole suite.

The fuzz tests draw damaged encodings (tests/damage.py) whose generation can take a second on
a loaded CI machine; Hypothesis's ``too_slow`` health check then fails the test though nothing
under test was slow. It is the one check switched off: per-example deadlines stay, so a parser
that hangs or goes quadratic still fails.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("murmur", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("murmur")
