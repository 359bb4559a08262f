"""Node configuration: command-line flags over ``SHOAL_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from replication.interfaces import FsyncPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="forbid", populate_by_name=True)

    node_id: str = Field("n1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = "127.0.0.1"
    port: int = Field(7700, ge=0, le=65535)
    advertise_url: str | None = None
    data_dir: Path = Path("./data")
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    snapshot_every_entries: int = Field(10_000, ge=1)
    snapshot_every_bytes: int = Field(256 << 20, ge=1 << 10)
    # A snapshot also once the log since the last one reaches this fraction of
    # its size: a restart replays at most that much (see Engine._snapshot_due).
    snapshot_log_ratio: float = Field(0.1, gt=0, le=100)
    # A node whose applied index has not moved for this many seconds takes a
    # snapshot of what it applied since its last one, so a restart after a
    # burst of writes has little or nothing to replay (0: never).
    snapshot_when_quiet: float = Field(2.0, ge=0, le=3600)
    segment_bytes: int = Field(64 << 20, ge=1 << 12)
    snapshot_chunk_bytes: int = Field(4 << 20, ge=1 << 12, le=32 << 20)
    max_body_bytes: int = Field(64 << 20, ge=1 << 10)
    # The largest answer (JSON) a node builds; larger asks get a 422 saying
    # what to ask for instead (node.answer_size).
    max_answer_bytes: int = Field(64 << 20, ge=1 << 16)  # answer_size.DEFAULT_LIMIT
    api_key: str | None = None
    # A JSON list of keys and their roles, read again on SIGHUP (node.keys).
    keys_file: Path | None = None
    # Serve a non-loopback address with no API key at all (refused otherwise).
    insecure: bool = False
    # HTTPS with this certificate and key; with peer_ca, node-to-node traffic
    # is mutual TLS (node.tls).
    # Admission (node.limits): requests a second per client (API key, or
    # address without one; 0: no limit), its bursts (0: twice the rate), and
    # the writes a node holds at once.
    rate_limit: float = Field(0.0, ge=0)
    rate_burst: float = Field(0.0, ge=0)
    max_writes_in_flight: int = Field(4096, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    peer_ca: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "n1=http://host:port,n2=...": every voter, this node included, when the
    # cluster is first started; afterwards the member list stored in the data
    # directory is used, and a different list here is refused. Empty on a
    # fresh directory: a cluster of one.
    peers: str = ""
    cluster_secret: str | None = None
    # Comma-separated URLs of an existing cluster's nodes: a fresh node asks
    # them to add it as a learner (then the operator promotes it).
    join: str = ""
    # Make this node's data a new cluster of one, whatever cluster it was in
    # (the lever when a majority is gone for good). Once; not for every start.
    force_new_cluster: bool = False
    election_timeout: float = Field(1.0, ge=0.1, le=60.0)
    heartbeat_interval: float = Field(0.15, ge=0.01, le=10.0)
    # Lets tests cut links through /_cluster/faults. Never in production.
    fault_injection: bool = False
    # Cohere: used for embeddings when a key is set (the plain COHERE_API_KEY
    # variable works too); the base URL is for proxies and tests.
    cohere_api_key: str | None = Field(
        None, validation_alias=AliasChoices("SHOAL_COHERE_API_KEY", "COHERE_API_KEY")
    )
    cohere_base_url: str | None = None
    cohere_embed_model: str = "embed-english-v3.0"
    # Temporal: where /ask starts its workflows (none: /ask answers 503).
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "shoal-ask"

    @field_validator("snapshot_when_quiet")
    @classmethod
    def _quiet_time_is_off_or_real(cls, value: float) -> float:
        if 0 < value < 0.1:
            raise ValueError("snapshot_when_quiet must be 0 (off) or at least 0.1 seconds")
        return value

    @field_validator("api_key", "cluster_secret", "cohere_api_key", "temporal_address")
    @classmethod
    def _blank_means_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _cluster_is_consistent(self) -> Settings:
        urls = self.peer_urls()
        if urls and self.node_id not in urls:
            raise ValueError(f"peers must include this node ({self.node_id})")
        if len(urls) > 1 and not self.cluster_secret:
            raise ValueError("a cluster of several nodes needs a cluster secret")
        if self.tls_cert is not None and any(u.startswith("http://") for u in urls.values()):
            raise ValueError("with --tls-cert every peer URL must be https://: the nodes "
                             "send the cluster secret and the log to each other")  # fmt: skip
        if self.heartbeat_interval * 3 > self.election_timeout:
            raise ValueError("heartbeat_interval must be under a third of election_timeout")
        return self

    def exposed_without_key(self) -> bool:
        """Listening beyond this machine with no API key asked of anyone."""
        if self.api_key or self.keys_file is not None:
            return False
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return True

    def peer_urls(self) -> dict[str, str]:
        """Voters by node id, parsed from ``peers``."""
        urls: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.peers.split(","))):
            node, sep, url = item.partition("=")
            if not sep or not node or not url.startswith(("http://", "https://")):
                raise ValueError(f"peer {item!r} is not of the form id=http://host:port")
            urls[node.strip()] = url.strip().rstrip("/")
        return urls

    @property
    def url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        own = self.peer_urls().get(self.node_id)
        if own:
            return own
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{host}:{self.port}"
