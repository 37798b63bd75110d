"""All configuration, read once from environment variables (DESIGN.md §5).

Development is the default and says so loudly; production refuses to start without an
encryption key and a real JWT issuer (see :func:`Settings.check_production`).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from byodb.content.limits import MAX_FILE_BYTES
from byodb.content.version import resolve_schema_target
from byodb.errors import ConfigurationError


class Environment(StrEnum):
    development = "development"
    production = "production"


class Settings(BaseSettings):
    """Process-wide settings. Field names map to the environment variables in ``alias``."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    env: Environment = Field(Environment.development, alias="BYODB_ENV")
    data_dir: Path = Field(Path("byodb-data"), alias="BYODB_DATA_DIR")
    database_url: str | None = Field(None, alias="BYODB_DATABASE_URL")
    encryption_key: str | None = Field(None, alias="BYOD_ENCRYPTION_KEY")
    # Older keys that must keep decrypting after a rotation: "keyid:hex,keyid:hex".
    previous_encryption_keys: str | None = Field(None, alias="BYOD_PREVIOUS_ENCRYPTION_KEYS")
    allow_private_hosts: bool | None = Field(None, alias="BYODB_ALLOW_PRIVATE_HOSTS")

    # Auth. Development signs its own tokens; production verifies an issuer's JWKS.
    jwt_issuer: str | None = Field(None, alias="BYODB_JWT_ISSUER")
    jwt_audience: str | None = Field(None, alias="BYODB_JWT_AUDIENCE")
    jwks_url: str | None = Field(None, alias="BYODB_JWKS_URL")
    admin_claim: str = Field("byodb_admin", alias="BYODB_ADMIN_CLAIM")
    admin_users: str = Field("", alias="BYODB_ADMIN_USERS")
    # Reverse proxies whose X-Forwarded-Proto / X-Forwarded-For are believed: comma-separated
    # addresses or CIDRs. None by default: a header anyone can send must not make a plain-HTTP
    # request look like HTTPS (Secure cookies, the same-site check's own origin).
    trusted_proxies: str = Field("", alias="BYODB_TRUSTED_PROXIES")

    # Model provider: offline unless an OpenAI-compatible endpoint is configured.
    llm_base_url: str | None = Field(
        None, validation_alias=AliasChoices("BYODB_LLM_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_api_key: str | None = Field(
        None, validation_alias=AliasChoices("BYODB_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_model: str = Field("gpt-4o-mini", alias="BYODB_LLM_MODEL")
    # Embeddings: "auto" follows the LLM endpoint when one is set, else the offline semantic
    # model (WordLlama); "offline", "hashing" (lexical, exact) and "openai" force one.
    embedding_provider: str = Field("auto", alias="BYODB_EMBEDDING_PROVIDER")
    embedding_model: str = Field("text-embedding-3-small", alias="BYODB_EMBEDDING_MODEL")

    # Limits of user-database connections.
    connect_timeout_s: float = Field(5.0, alias="BYODB_CONNECT_TIMEOUT")
    test_timeout_s: float = Field(15.0, alias="BYODB_TEST_TIMEOUT")
    deploy_timeout_s: float = Field(300.0, alias="BYODB_DEPLOY_TIMEOUT")
    # A data move (onboarding, switching, migrate back): one deadline for the whole move.
    move_timeout_s: float = Field(1800.0, alias="BYODB_MOVE_TIMEOUT")
    # An export (GET /api/export, byodb export): one deadline for the whole archive, its one
    # snapshot transaction and every statement in it (not the request's statement limit).
    export_timeout_s: float = Field(3600.0, gt=0, alias="BYODB_EXPORT_TIMEOUT")
    # A routed content request's transaction on a user database, end to end (client side).
    user_request_timeout_s: float = Field(30.0, alias="BYODB_USER_REQUEST_TIMEOUT")
    # The work after a chat reply (embedding the exchange, extracting memories), end to end;
    # also how long a closing process lets such work finish before cancelling it.
    after_exchange_timeout_s: float = Field(60.0, gt=0, alias="BYODB_AFTER_EXCHANGE_TIMEOUT")
    # Server-side limits of a routed request's transactions (set at the start of each). The
    # statement limit defaults to the request deadline less 3 s, so a database that answers
    # ends a slow statement itself (byod_timeout) before the deadline calls it down.
    user_statement_timeout_s: float | None = Field(None, gt=0,
                                                   alias="BYODB_USER_STATEMENT_TIMEOUT")
    user_lock_timeout_s: float = Field(5.0, alias="BYODB_USER_LOCK_TIMEOUT")
    user_pool_size: int = Field(2, alias="BYODB_USER_POOL_SIZE")
    # A user's pooled connections close after this many idle seconds (0: no pooling), so a
    # database that scales to zero can suspend.
    user_idle_timeout_s: float = Field(60.0, ge=0, alias="BYODB_USER_IDLE_TIMEOUT")
    engine_cache_size: int = Field(500, alias="BYODB_ENGINE_CACHE_SIZE")
    test_rate_limit_per_minute: int = Field(10, alias="BYODB_TEST_RATE_LIMIT")

    # The HTTP edge: bodies above these sizes are refused (413) before they are read. JSON:
    # the largest body the content API's field limits allow, in any JSON encoding, is
    # about 1.8 MB; routes carrying base64 bytes (attachments, TTS audio) get
    # MAX_INLINE_BYTES as base64 on top (byodb.web.edge_limits). Uploads: a file of
    # MAX_FILE_BYTES plus its multipart framing.
    max_json_body_bytes: int = Field(2 * 1024 * 1024, gt=0, alias="BYODB_MAX_JSON_BODY")
    max_upload_bytes: int = Field(MAX_FILE_BYTES + 64 * 1024, gt=0,
                                  alias="BYODB_MAX_UPLOAD_BYTES")
    # POST /api/import: an export file (a byodb, ChatGPT or Claude export) is far larger than
    # one uploaded file; its members may unpack to at most 8 times this (docs/import.md).
    max_import_bytes: int = Field(256 * 1024 * 1024, gt=0, alias="BYODB_MAX_IMPORT_BYTES")
    # Imports (docs/import.md): running at once on the deployment, checked at once by this
    # process's worker processes, bytes one user may upload in 24 hours, and the deadline of
    # receiving and checking one upload (writing it has BYODB_MOVE_TIMEOUT).
    max_running_imports: int = Field(4, gt=0, alias="BYODB_MAX_RUNNING_IMPORTS")
    import_workers: int = Field(1, gt=0, alias="BYODB_IMPORT_WORKERS")
    import_bytes_per_day: int = Field(1024 * 1024 * 1024, gt=0,
                                      alias="BYODB_IMPORT_BYTES_PER_DAY")
    import_check_timeout_s: float = Field(600.0, gt=0, alias="BYODB_IMPORT_CHECK_TIMEOUT")
    # GET /readyz answers within this many seconds, even when main hangs.
    ready_timeout_s: float = Field(2.0, gt=0, alias="BYODB_READY_TIMEOUT")

    # Run background jobs inside `byodb serve` (a separate `byodb worker` may run them too).
    run_worker_in_app: bool = Field(True, alias="BYODB_INLINE_WORKER")

    # Fleet schema migrations (docs/operations.md, "Schema rollouts"). The target version
    # defaults to the latest this code knows; it is never below the minimum supported.
    schema_target: int | None = Field(None, alias="BYODB_SCHEMA_TARGET")
    auto_migrate: bool = Field(True, alias="BYODB_AUTO_MIGRATE")

    # Health of user databases (docs/operations.md, "Health and alerts").
    health_interval_s: float = Field(300.0, gt=0, alias="BYODB_HEALTH_INTERVAL")
    # A healthy database whose user made no request since its last check is probed at most
    # this often (a successful request counts as a check), so a database that scales to
    # zero can sleep; one in error or failing is probed every BYODB_HEALTH_INTERVAL.
    health_idle_interval_s: float = Field(3600.0, gt=0, alias="BYODB_HEALTH_IDLE_INTERVAL")
    health_concurrency: int = Field(50, gt=0, alias="BYODB_HEALTH_CONCURRENCY")
    health_failures: int = Field(2, gt=0, alias="BYODB_HEALTH_FAILURES")
    health_timeout_s: float = Field(5.0, gt=0, alias="BYODB_HEALTH_TIMEOUT")
    # Alert email: smtp://user:pass@host:port (the password is a secret like any other).
    smtp_url: str | None = Field(None, alias="BYODB_SMTP_URL")
    alert_emails: str = Field("", alias="BYODB_ALERT_EMAILS")
    mail_from: str = Field("byodb@localhost", alias="BYODB_MAIL_FROM")
    alert_group_threshold: int = Field(5, gt=0, alias="BYODB_ALERT_GROUP_THRESHOLD")
    # GET /metrics: open when unset, else only with "Authorization: Bearer <token>".
    metrics_token: str | None = Field(None, alias="BYODB_METRICS_TOKEN")
    # A scrape waits at most this long for main's aggregates, then reports what it has.
    metrics_timeout_s: float = Field(2.0, gt=0, alias="BYODB_METRICS_TIMEOUT")

    # Feature flags and the premium gate (docs/byod.md, "Feature flags").
    byod_enabled: bool = Field(True, alias="BYOD_ENABLED")
    byod_requires_premium: bool = Field(False, alias="BYOD_REQUIRES_PREMIUM")
    premium_claim: str = Field("byodb_premium", alias="BYODB_PREMIUM_CLAIM")
    byod_realtime: bool = Field(False, alias="BYOD_REALTIME")
    byod_file_storage: bool = Field(True, alias="BYOD_FILE_STORAGE")

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def private_hosts_allowed(self) -> bool:
        """Loopback/private addresses: allowed in development, refused in production."""
        if self.allow_private_hosts is not None:
            return self.allow_private_hosts
        return not self.is_production

    @property
    def tls_required(self) -> bool:
        return self.is_production

    @property
    def admin_user_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``BYODB_TRUSTED_PROXIES`` parsed; a malformed entry is a configuration error, not
        a silently ignored proxy (the server would then treat every request as plain HTTP)."""
        networks = []
        for entry in (e.strip() for e in self.trusted_proxies.split(",")):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"BYODB_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR range"
                ) from None
        return tuple(networks)

    def problems(self) -> list[str]:
        """Every configuration problem, each one sentence (startup prints them all at once).
        A malformed ``BYODB_TRUSTED_PROXIES`` or schema target counts in any environment;
        production also needs its secrets."""
        found = []
        for check in (lambda: self.trusted_proxy_networks,
                      lambda: resolve_schema_target(self.schema_target)):
            try:
                check()
            except ConfigurationError as exc:
                found.append(exc.message)
        found.extend(interval_problems(self))
        if not self.is_production:
            return found
        missing = []
        if not self.encryption_key:
            missing.append("BYOD_ENCRYPTION_KEY")
        if not (self.jwks_url and self.jwt_issuer):
            missing.append("BYODB_JWKS_URL and BYODB_JWT_ISSUER")
        # Without an audience any token the issuer signs for another application would
        # sign in here too.
        if not self.jwt_audience:
            missing.append("BYODB_JWT_AUDIENCE")
        if missing:
            found.append("production needs " + ", ".join(missing)
                         + " (see README, Configuration)")
        return found

    def check_production(self) -> None:
        """Refuse to run with any of :meth:`problems` (this is the one check every entry
        point runs before serving)."""
        found = self.problems()
        if found:
            raise ConfigurationError("; ".join(found))


MIN_HEALTH_INTERVAL_S = 5.0


def interval_problems(settings: Settings) -> list[str]:
    """Interval settings the schedule cannot honour, refused rather than rounded (the
    sweep's tick honours any interval from 5 s up, to the second)."""
    found = []
    if settings.health_interval_s < MIN_HEALTH_INTERVAL_S:
        found.append(f"BYODB_HEALTH_INTERVAL={settings.health_interval_s:g}: sweeps start at "
                     f"most every {MIN_HEALTH_INTERVAL_S:g} seconds; use "
                     f"{MIN_HEALTH_INTERVAL_S:g} or more")
    return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
