"""Settings, read from the environment (prefix ``BATCHQ_``).

Only the edges read settings: the API app, the Celery app, the CLI. Everything else takes arguments.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Endpoints a batch may target; every line's url must equal the batch's endpoint.
SUPPORTED_ENDPOINTS: tuple[str, ...] = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
)


class Settings(BaseSettings):
    """Every knob of batchq. Defaults follow DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="BATCHQ_", extra="ignore", env_ignore_empty=True)

    # --- wiring -------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker, result backend, batch state, counters and rate limits."""
    storage_url: str = "file://./.batchq/data"
    """Object store: ``file://<folder>`` or ``s3://bucket/prefix``."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, Ceph, moto). Unset means AWS."""
    s3_checksum_mode: Literal["when_required", "when_supported"] = "when_required"
    """boto3 request_checksum_calculation / response_checksum_validation (boto3#4392)."""
    s3_timeout_s: float = 60.0
    """Read timeout of one S3 call (boto3 retries it a few times before the task retries)."""
    upstream_url: str | None = None
    """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:9000/v1``."""
    upstream_api_key: str | None = Field(default=None, repr=False)
    """Sent upstream as Bearer; never logged, never returned."""
    api_keys: str | None = Field(default=None, repr=False)
    """``key:account[,key:account...]``; unset = local mode (loopback clients only, account ``local``)."""
    routes: str | None = None
    """Path of a TOML/JSON file mapping models to upstreams (url, key, limits)."""

    # --- limits (DESIGN.md "Defaults and limits") -------------------------------------------------
    max_requests_per_batch: int = 10_000
    max_file_bytes: int = 500 * 1024 * 1024
    max_line_bytes: int = 10 * 1024 * 1024
    max_custom_id_chars: int = 512
    max_active_batches: int = 10
    max_reported_errors: int = 100
    completion_window_s: int = 24 * 3600
    """Default completion window; ``timeout_minutes`` on create can shorten it (down to seconds for tests)."""
    served_models: str | None = None
    """Comma-separated models the default upstream serves; unset = any model (routes add their own)."""

    # --- upstream calls -------------------------------------------------------------------------
    rate_limit_rpm: int = 0
    rate_limit_tpm: int = 0
    rate_limit_burst: int = 1
    """Requests beyond the per-second share (rpm / 60) that may go in any one second; see docs/ratelimit.md."""
    max_in_flight: int = 64
    max_attempts: int = 6
    upstream_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 600.0
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 30.0
    rate_limit_cooldown_s: float = 1.0
    """After an upstream 429 every worker holds off this route this long (the 429'd request waits its Retry-After)."""
    max_inline_wait_s: float = 5.0
    """A request task sleeps in place at most this long for its turn; longer waits are re-queued."""
    max_countdown_s: float = 60.0
    """Longest countdown used for re-queues; must stay well under the visibility timeout."""

    # --- pricing (estimates only) ------------------------------------------------------------
    batch_discount: float = 0.10
    prices: str | None = None
    """``model=input_per_1M:output_per_1M[,model=...]`` in USD; the batch discount applies on top."""

    # --- recovery ---------------------------------------------------------------------------
    visibility_timeout_s: int = 2 * 3600
    """Redis broker visibility timeout: longer than any task (countdowns included). It brings back intake,
    finalize and webhook messages; request messages are brought back by their line's lease (``lease_s``)."""
    unacked_restore_interval_s: float = 10.0
    sweep_interval_s: float = 15.0
    """How often one worker (elected through a Redis lock) runs the sweeper."""
    requeue_after_s: float = 60.0
    """A line handed to the broker but never claimed, in a batch with no progress this long, is sent again."""
    lease_s: float = 30.0
    """A line's lease: renewed every third of it while its call runs, so a dead worker's lines return this soon."""
    scratch_ttl_s: int = 7 * 24 * 3600
    """Per-batch scratch keys live at most this long (a safety net; finalize drops them sooner)."""
    result_ttl_after_final_s: int = 3600
    allow_redis_eviction: bool = False
    """Start even when Redis may evict keys (maxmemory with a policy other than noeviction): not recommended."""

    # --- workers and scheduling ------------------------------------------------------------------
    worker_pool: Literal["threads", "prefork", "gevent", "solo"] = "gevent"
    """Pool of the plain ``celery -A workers worker`` command (``-P`` overrides). Calls wait on I/O: gevent, which the
    plain command starts itself under (batchq/broker/green.py); ``threads`` is batchq's threads pool."""
    worker_concurrency: int = 0
    """Slots per worker process (``-c`` overrides); 0 = the default route's max_in_flight + 32 (a request claimed
    and read waits for each freed call slot; half the cap at most), at least 64."""
    dispatch_window: int = 0
    """Request messages in the broker at most, across all batches; 0 = twice the routes' in-flight caps, >= 64."""
    account_weights: str | None = None
    """``account=weight[,...]``: an account's share of worker slots and rate limits (default weight 1)."""
    urgent_fraction: float = 0.1
    """A batch in the last this-fraction of its completion window is fed before every other."""
    input_cache_mb: int = 64
    """Per worker process: input-file blocks kept in memory, so lines are not read from the store one by one."""
    fast_path: bool = True
    """batchq's reaches into Celery, kombu and redis-py internals (batchq/broker/: its Redis transport, request
    messages it builds and pushes itself, its threads pool, the gevent start). ``false``: Celery and kombu as they
    ship (kombu's transport, Celery's publishing and ``threads`` pool), for a kombu release
    that breaks the fast path."""

    # --- webhooks and retention ----------------------------------------------------------
    webhook_allow_private: bool = False
    """Allow webhook URLs that reach loopback, private, link-local or reserved addresses (off: SSRF)."""
    webhook_retry_period_s: int = 24 * 3600
    """How long a failing webhook delivery keeps being retried, from its first attempt."""
    webhook_timeout_s: float = 5.0
    """Read/write timeout of one webhook POST (connect: at most 3 s; the whole attempt: at most twice this)."""
    output_expires_after_s: int = 30 * 24 * 3600
    """Output and error files expire this long after they are written, unless the batch sets its own."""
    min_expires_after_s: int = 3600
    """The shortest ``expires_after`` / ``output_expires_after`` accepted (OpenAI's is 3600; lower for tests)."""

    # --- API ----------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @field_validator("rate_limit_burst")
    @classmethod
    def _burst_not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("rate_limit_burst must be >= 0")
        return v

    @field_validator("max_attempts")
    @classmethod
    def _attempts_positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("max_attempts must be >= 1")
        return v

    @field_validator("upload_timeout_s")
    @classmethod
    def _upload_timeout_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("upload_timeout_s must be > 0")
        return v

    @field_validator("max_account_storage_bytes")
    @classmethod
    def _quota_not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("max_account_storage_bytes must be >= 0 (0 = no quota)")
        return v

    @field_validator("webhook_retry_period_s", "webhook_timeout_s", "output_expires_after_s", "min_expires_after_s")
    @classmethod
    def _webhook_retention_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("webhook and retention periods must be > 0")
        return v

    def api_key_map(self) -> dict[str, str]:
        """Parse ``BATCHQ_API_KEYS`` into {key: account}.

        Raises:
            ValueError: the variable is set but names no key (e.g. ``" "``), an entry is not ``key:account``,
                or a key is empty or configured twice. The API refuses to start then.
        """
        mapping: dict[str, str] = {}
        if self.api_keys is None:
            return mapping
        for item in self.api_keys.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, account = (part.strip() for part in item.partition(":"))
            if not sep or not key or not account:
                raise ValueError("BATCHQ_API_KEYS: every entry must be key:account with a non-empty key and account")
            if key in mapping:
                raise ValueError(f"BATCHQ_API_KEYS: a key is configured twice (accounts {mapping[key]!r}, {account!r})")
            mapping[key] = account
        if not mapping:
            raise ValueError("BATCHQ_API_KEYS is set but names no key; unset it or give key:account entries")
        return mapping

    def account_weight_map(self) -> dict[str, float]:
        """Parse ``BATCHQ_ACCOUNT_WEIGHTS`` into {account: weight}."""
        weights: dict[str, float] = {}
        for item in (self.account_weights or "").split(","):
            if not item.strip():
                continue
            account, sep, weight = item.partition("=")
            try:
                value = float(weight)
            except ValueError:
                value = 0.0
            if not sep or not account.strip() or not value > 0:
                raise ValueError(f"BATCHQ_ACCOUNT_WEIGHTS entry {item!r} is not account=weight (weight > 0)")
            weights[account.strip()] = value
        return weights

    def served_model_set(self) -> frozenset[str] | None:
        if not self.served_models:
            return None
        return frozenset(m.strip() for m in self.served_models.split(",") if m.strip())

    # --- API hardening: local mode, request bounds, dependency timeouts -------------
    local_mode: bool = False
    """With no BATCHQ_API_KEYS, trust loopback clients as account ``local``. Development only; off by default."""
    max_create_body_bytes: int = 1024 * 1024
    """Largest ``POST /v1/batches`` body (counted while it streams; chunked bodies too)."""
    max_form_fields: int = 16
    """Most non-file parts a ``POST /v1/files`` body may have (their bytes count towards the file limit)."""
    upload_timeout_s: float = 3600.0
    """The longest one upload may take, first byte to last (408 past it): 500 MB needs ~140 KB/s (1.1 Mbit/s)."""
    max_account_storage_bytes: int = 0
    """Bytes one account's files may hold (uploads and outputs); an upload beyond it is a 413. 0 = no quota."""
    api_redis_timeout_s: float = 2.0
    """The API's Redis connect and read timeout: a stalled Redis gives a 503 in a few seconds."""
    api_store_timeout_s: float = 5.0
    """The API's S3 connect and read timeout (the workers keep ``s3_timeout_s``)."""
    metrics_token: str | None = Field(default=None, repr=False)
    """Set: ``/metrics`` answers only ``Authorization: Bearer <token>`` (tenants' keys get 401). Unset: loopback
    clients only (a Prometheus on the same host, a sidecar)."""


@lru_cache
def get_settings() -> Settings:
    return Settings()
