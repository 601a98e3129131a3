"""Settings for `llmvis serve`: one pydantic model filled from CLI flags (and LLMVIS_* env vars).

A plain pydantic model rather than a settings framework: the CLI builds it from argparse,
tests build it directly with a temporary data dir, and `from_env` covers container use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_path
from pydantic import BaseModel, Field

DEFAULT_PORT = 5050


def default_data_dir() -> Path:
    return user_data_path("llmvis", appauthor=False)


DEFAULT_SPILL_BYTES = 16 << 30


def default_cache_bytes() -> int:
    """A quarter of the machine's memory, at most 4 GiB (1 GiB where it cannot be read): the
    capture of an 8,192-token run of the bundled model is 2.5 GB, of a 1,536-token one 0.46 GB."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 30
    return int(min(4 << 30, max(1 << 30, ram // 4)))


class Settings(BaseModel):
    host: str = Field(default="127.0.0.1", description="address to bind; non-loopback requires a token")
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=f"None = {DEFAULT_PORT}, or the next free port when it is taken",
    )
    model: str | None = Field(
        default="smollm2",
        description="model spec: smollm2, a directory, a .gguf, an HF id; the engine's model name with --backend openai",
    )
    device: str | None = None
    dtype: str | None = None
    device_map: str | dict[str, str | int] | None = Field(default=None, description="shard across GPUs")
    trust_remote_code: bool = False
    data_dir: Path = Field(default_factory=default_data_dir, description="SQLite run store lives here")
    cache_bytes: int = Field(
        default_factory=default_cache_bytes,
        ge=0,
        description="memory for runs' captures and their summaries (default: a quarter of RAM, at most 4 GiB)",
    )
    spill_bytes: int = Field(
        default=DEFAULT_SPILL_BYTES,
        ge=0,
        description="disk for the summaries the memory budget cannot hold (a long run's head-mean "
        "attention), in a private temporary directory removed on exit; 0: recompute them instead",
    )
    queue_size: int = Field(default=4, ge=0, le=1000, description="runs allowed to wait behind the running one")
    token: str | None = Field(default=None, min_length=8, description="access token (required off loopback)")
    open_browser: bool = False
    backend: Literal["local", "openai"] = Field(default="local", description="where runs generate")
    base_url: str | None = Field(default=None, description="the OpenAI-compatible engine's base URL")
    api_key_env: str | None = Field(default=None, description="environment variable holding the engine's API key")
    tokenizer: str | None = Field(default=None, description="local tokenizer spec for the engine's model")
    extra_body: dict[str, Any] | None = Field(default=None, description="JSON merged into every engine request")
    engine_timeout: float = Field(default=120.0, gt=0, description="seconds to wait for the engine")
    remote_slots: int = Field(default=64, ge=1, le=4096, description="remote runs streaming at once")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "runs.sqlite3"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from LLMVIS_<FIELD> environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(f"LLMVIS_{name.upper()}")
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
