"""Settings: environment (ZOOSERVE_*) and the command line, the command line winning."""

from __future__ import annotations

import pytest

from service.__main__ import build_parser, parse_settings
from service.settings import Settings


def test_environment(monkeypatch):
    monkeypatch.setenv("ZOOSERVE_PORT", "9001")
    monkeypatch.setenv("ZOOSERVE_MODELS", "lenet5_digits, resnet18")
    monkeypatch.setenv("ZOOSERVE_PROVIDERS", "cuda,cpu")
    monkeypatch.setenv("ZOOSERVE_REQUIRE_GPU", "1")
    monkeypatch.setenv("ZOOSERVE_LOG_LEVEL", "WARNING")
    s = Settings()
    assert s.port == 9001 and s.log_level == "warning"
    assert s.models == ["lenet5_digits", "resnet18"]
    assert s.providers == ["cuda", "cpu"]
    assert s.require_gpu is True


def test_defaults_and_special_model_lists(monkeypatch):
    for key in ("ZOOSERVE_MODELS", "ZOOSERVE_PORT", "ZOOSERVE_PROVIDERS"):
        monkeypatch.delenv(key, raising=False)
    assert Settings().models is None  # the whole store
    assert Settings(models="none").models == []
    assert Settings(models="all").models is None
    with pytest.raises(ValueError):
        Settings(providers="")


def test_command_line_wins(monkeypatch):
    monkeypatch.setenv("ZOOSERVE_PORT", "9001")
    s = parse_settings(["--port", "9002", "--store", "/tmp/x", "--no-access-log", "--warmup", "pow2"])
    assert s.port == 9002 and str(s.store) == "/tmp/x" and s.access_log is False and s.warmup == "pow2"


def test_every_field_has_help_and_an_option():
    parser = build_parser()
    options = {a.dest: a for a in parser._actions}
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"
        assert name in options and f"ZOOSERVE_{name.upper()}" in options[name].help
