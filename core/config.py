"""Configuration, read once from the environment.

Every setting has a development default so that `make run` works on a fresh machine; in
production (`KILAT_ENV=production`) the secrets must be given explicitly or the process refuses
to start. No secret is written in the repository: without `JWT_SECRET`, a development install
generates one on first start and keeps it in `KILAT_SECRET_FILE`.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One file per install (not per worker data dir): every worker, the gateway and the `kilat`
# commands must sign and verify with the same secret.
DEFAULT_SECRET_FILE = ROOT / "var" / "secrets" / "jwt-secret"
MIN_SECRET_CHARS = 43  # 256 bits of URL-safe base64


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or incomplete."""


def environment(env: Mapping[str, str]) -> str:
    """The deployment kind (`development`, `test`, `production`) named by `env`."""
    return env.get("KILAT_ENV", env.get("APP_ENV", "development"))


def _read_secret_file(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is readable by others: chmod 600 it")
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as f:
            secret = f.read().strip()
    finally:
        os.close(fd)
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_CHARS} characters")
    return secret


def load_or_create_secret(path: Path) -> str:
    """The secret kept in `path`, created (random, 0600) on first use.

    Processes of one install may start at the same moment: the new secret is written in full to
    a private temporary file and then hard-linked into place, which fails if another process won
    the race; everyone then reads the one file, so all end with the same secret and nobody ever
    reads a half-written one.
    """
    path = Path(path)
    try:
        return _read_secret_file(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_urlsafe(48) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot create the JWT secret file {path}: {exc}") from exc
    return _read_secret_file(path)


def jwt_secret(env: Mapping[str, str] | None = None) -> str:
    """The HS256 secret for tokens: `JWT_SECRET`, required in production; in any other
    environment, when unset, the install's generated secret file (`KILAT_SECRET_FILE`)."""
    env = os.environ if env is None else env
    secret = env.get("JWT_SECRET", "")
    if secret:
        return secret
    if environment(env) == "production":
        raise ConfigError("JWT_SECRET must be set when KILAT_ENV=production")
    return load_or_create_secret(Path(env.get("KILAT_SECRET_FILE") or DEFAULT_SECRET_FILE))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    app_id: str = "kilat"
    kafka_brokers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = 3
    # Copies of every partition (changelogs included) and how many must have a write before it
    # is acknowledged: see replication_defaults.
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    database_url: str = "postgresql://kilat:kilat@127.0.0.1:5432/kilat"
    data_dir: str = "var/worker"
    web_port: int = 6066
    canonical_url: str = ""
    web_host: str = "127.0.0.1"
    web_bind: str = "127.0.0.1"
    jwt_secret: str = ""
    jwt_access_ttl_s: int = 15 * 60
    jwt_refresh_ttl_s: int = 7 * 24 * 3600
    jwt_issuer: str = "kilat-pet-runner"
    platform_fee_percent: float = 15.0
    cash_out_rail_delay_s: float = 30.0
    # How long the owner has after delivery to confirm or dispute before the platform confirms.
    auto_confirm_hours: float = 24.0
    stripe_api_base: str = "mock"
    stripe_secret_key: str = "sk_test_kilat_local"
    fcm_endpoint: str = ""
    fcm_api_key: str = ""
    fcm_service_account_file: str = ""
    twilio_base_url: str = ""
    twilio_account_sid: str = "ACkilatlocal"
    twilio_auth_token: str = "kilat-local"
    twilio_from_number: str = "+60300000000"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 0
    smtp_from: str = "no-reply@kilat.my"
    templates_dir: str = ""
    outbox_poll_s: float = 0.05
    db_statement_timeout_ms: int = 8_000
    db_lock_timeout_ms: int = 5_000
    db_idle_in_transaction_timeout_ms: int = 15_000
    idempotency_lease_s: float = 60.0
    # Money sagas (streams/sagas.py): a release or refund still owed this long after the
    # booking's outcome is driven forward by the reconciler, which looks every interval.
    saga_step_timeout_s: float = 60.0
    saga_reconcile_interval_s: float = 10.0
    log_json: bool = False
    # Addresses whose X-Forwarded-Proto is believed (for HSTS); empty: none.
    trusted_proxies: frozenset[str] = frozenset()
    # Sign-in throttle (streams/login_throttle.py): failures counted per tumbling window.
    login_window_s: float = 900.0
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_max_failures_per_account: int = 50
    # The public trip page (web/share_page.py): map tiles (the only third-party requests it
    # makes; empty: no map, text only), where Leaflet is installed, how often open pages'
    # trip status is re-read.
    share_tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    share_tile_attribution: str = "© OpenStreetMap contributors"
    leaflet_dir: str = "/usr/share/javascript/leaflet"
    share_status_poll_s: float = 2.0
    # Job offers (streams/job_offers.py): how long a round of offers waits for an acceptance
    # before the search radius widens.
    job_offer_round_s: float = 60.0
    extra: dict = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"


def replication_defaults(brokers: str) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster given as `KAFKA_BROKERS`.

    One local broker cannot hold copies; three or more hold three copies and acknowledge a
    write once two have it, so one broker may fail without losing or refusing a write."""
    count = len([b for b in brokers.split(",") if b.strip()])
    return (3, 2) if count >= 3 else (1, 1)


def topic_name(name: str) -> str:
    """The Kafka topic name for a logical topic, with the deployment's prefix."""
    return f"{settings().topic_prefix}{name}"


@lru_cache(maxsize=1)
def settings() -> Settings:
    env = environment(os.environ)
    secret = jwt_secret(os.environ)
    brokers = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
    replicas, min_insync = replication_defaults(brokers)
    return Settings(
        env=env,
        app_id=os.environ.get("KILAT_APP_ID", "kilat"),
        kafka_brokers=brokers,
        topic_prefix=os.environ.get("KILAT_TOPIC_PREFIX", ""),
        topic_partitions=_int("KILAT_TOPIC_PARTITIONS", 3),
        topic_replication_factor=_int("KILAT_TOPIC_REPLICATION_FACTOR", replicas),
        topic_min_insync_replicas=_int("KILAT_TOPIC_MIN_INSYNC_REPLICAS", min_insync),
        database_url=os.environ.get(
            "DATABASE_URL", "postgresql://kilat:kilat@127.0.0.1:5432/kilat"
        ),
        data_dir=os.environ.get("KILAT_DATA_DIR", "var/worker"),
        web_port=_int("WEB_PORT", 6066),
        canonical_url=os.environ.get("KILAT_CANONICAL_URL", ""),
        web_host=os.environ.get("KILAT_WEB_HOST", "127.0.0.1"),
        web_bind=os.environ.get("KILAT_WEB_BIND", "127.0.0.1"),
        jwt_secret=secret,
        jwt_access_ttl_s=_int("JWT_ACCESS_TTL_S", 15 * 60),
        jwt_refresh_ttl_s=_int("JWT_REFRESH_TTL_S", 7 * 24 * 3600),
        platform_fee_percent=_float("PLATFORM_FEE_PERCENT", 15.0) or 15.0,
        cash_out_rail_delay_s=_float("CASH_OUT_RAIL_DELAY_S", 30.0),
        auto_confirm_hours=_float("AUTO_CONFIRM_HOURS", 24.0),
        stripe_api_base=os.environ.get("STRIPE_API_BASE", "mock"),
        stripe_secret_key=os.environ.get("STRIPE_SECRET_KEY", "sk_test_kilat_local"),
        fcm_endpoint=os.environ.get("FCM_ENDPOINT", ""),
        fcm_api_key=os.environ.get("FCM_API_KEY", ""),
        fcm_service_account_file=os.environ.get("FCM_SERVICE_ACCOUNT_FILE", ""),
        twilio_base_url=os.environ.get("TWILIO_BASE_URL", ""),
        twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID", "ACkilatlocal"),
        twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN", "kilat-local"),
        twilio_from_number=os.environ.get("TWILIO_FROM_NUMBER", "+60300000000"),
        smtp_host=os.environ.get("SMTP_HOST", "127.0.0.1"),
        smtp_port=_int("SMTP_PORT", 0),
        smtp_from=os.environ.get("SMTP_FROM", "no-reply@kilat.my"),
        templates_dir=os.environ.get("TEMPLATES_DIR", ""),
        outbox_poll_s=_float("KILAT_OUTBOX_POLL_S", 0.05),
        db_statement_timeout_ms=_int("KILAT_DB_STATEMENT_TIMEOUT_MS", 8_000),
        db_lock_timeout_ms=_int("KILAT_DB_LOCK_TIMEOUT_MS", 5_000),
        db_idle_in_transaction_timeout_ms=_int("KILAT_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 15_000),
        idempotency_lease_s=_float("IDEMPOTENCY_LEASE_S", 60.0),
        saga_step_timeout_s=_float("SAGA_STEP_TIMEOUT_S", Settings.saga_step_timeout_s),
        saga_reconcile_interval_s=_float("SAGA_RECONCILE_INTERVAL_S",
                                         Settings.saga_reconcile_interval_s),
        log_json=os.environ.get("KILAT_LOG_JSON", "") in ("1", "true", "yes"),
        trusted_proxies=frozenset(
            p.strip() for p in os.environ.get("KILAT_TRUSTED_PROXIES", "").split(",")
            if p.strip()),
        login_window_s=_float("LOGIN_WINDOW_S", 900.0),
        login_max_failures=_int("LOGIN_MAX_FAILURES", 5),
        login_max_failures_per_address=_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
        login_max_failures_per_account=_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 50),
        share_tile_url=os.environ.get("SHARE_TILE_URL", Settings.share_tile_url),
        share_tile_attribution=os.environ.get("SHARE_TILE_ATTRIBUTION",
                                              Settings.share_tile_attribution),
        leaflet_dir=os.environ.get("LEAFLET_DIR", Settings.leaflet_dir),
        share_status_poll_s=_float("SHARE_STATUS_POLL_S", 2.0),
        job_offer_round_s=_float("JOB_OFFER_ROUND_S", 60.0),
    )
