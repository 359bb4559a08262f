"""Node configuration: command-line flags over ``SHOAL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from replication.interfaces import FsyncPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="forbid")

    node_id: str = Field("n1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = "127.0.0.1"
    port: int = Field(7700, ge=0, le=65535)
    advertise_url: str | None = None
    data_dir: Path = Path("./data")
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    snapshot_every_entries: int = Field(10_000, ge=1)
    snapshot_every_bytes: int = Field(256 << 20, ge=1 << 10)
    segment_bytes: int = Field(64 << 20, ge=1 << 12)
    max_body_bytes: int = Field(64 << 20, ge=1 << 10)
    api_key: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("api_key")
    @classmethod
    def _blank_key_means_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"
