"""The 0.1-style plugins' own test is run by tests/test_compat_01.py, with them installed."""

collect_ignore = ["sdk-npnpu", "sdk-myaccel"]
