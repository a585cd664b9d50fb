"""Shared fixtures: a tiny synthesized multilingual corpus and its prepared data dir."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, run with `make test-slow`")
