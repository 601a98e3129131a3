"""Settings: defaults from the issue, environment overrides, bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmvis.config import Settings


def test_defaults():
    s = Settings()
    assert (s.host, s.port, s.model, s.queue_size) == ("127.0.0.1", None, "smollm2", 4)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert s.cache_bytes == min(4 << 30, max(1 << 30, ram // 4))  # a quarter of RAM, 1–4 GiB
    assert s.token is None and not s.trust_remote_code and s.db_path == s.data_dir / "runs.sqlite3"


def test_environment_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMVIS_PORT", "6001")
    monkeypatch.setenv("LLMVIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMVIS_TRUST_REMOTE_CODE", "true")
    s = Settings.from_env(host="0.0.0.0", model=None)
    assert s.port == 6001 and s.data_dir == Path(tmp_path) and s.trust_remote_code
    assert s.host == "0.0.0.0" and s.model == "smollm2"  # None overrides nothing


@pytest.mark.parametrize("bad", [{"port": 70000}, {"queue_size": -1}, {"token": "short"}])
def test_bounds(bad):
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_serve_flags_set_the_cache_budget():
    from llmvis.cli import build_parser, serve_settings

    args = build_parser().parse_args(["serve", "--cache-gb", "2.5", "--port", "6100"])
    settings = serve_settings(args)
    assert settings.cache_bytes == int(2.5 * (1 << 30)) and settings.port == 6100
    assert serve_settings(build_parser().parse_args(["serve"])).cache_bytes == Settings().cache_bytes
    assert serve_settings(build_parser().parse_args(["serve", "--spill-gb", "0"])).spill_bytes == 0
    assert Settings().spill_bytes == 16 << 30


def test_the_servers_cache_spills_within_its_budget(tmp_path):
    from llmvis.server.app import create_app

    settings = Settings(data_dir=tmp_path, cache_bytes=1 << 30, spill_bytes=3 << 30)
    cache = create_app(settings).state.engine.slot.cache
    assert (cache.max_bytes, cache.spill_bytes) == (1 << 30, 3 << 30)
