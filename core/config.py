"""Configuration, read once from the environment.

Every setting has a development default so that `make run` works on a fresh machine; in
production (`KILAT_ENV=production`) the secrets must be given explicitly or the process refuses
to start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

DEV_JWT_SECRET = "kilat-development-secret-do-not-use-in-production"


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or incomplete."""


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
    database_url: str = "postgresql://kilat:kilat@127.0.0.1:5432/kilat"
    data_dir: str = "var/worker"
    web_port: int = 6066
    canonical_url: str = ""
    web_host: str = "127.0.0.1"
    web_bind: str = "127.0.0.1"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_access_ttl_s: int = 15 * 60
    jwt_refresh_ttl_s: int = 7 * 24 * 3600
    jwt_issuer: str = "kilat-pet-runner"
    platform_fee_percent: float = 15.0
    cash_out_rail_delay_s: float = 30.0
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
    log_json: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"


def topic_name(name: str) -> str:
    """The Kafka topic name for a logical topic, with the deployment's prefix."""
    return f"{settings().topic_prefix}{name}"


@lru_cache(maxsize=1)
def settings() -> Settings:
    env = os.environ.get("KILAT_ENV", os.environ.get("APP_ENV", "development"))
    secret = os.environ.get("JWT_SECRET", "")
    if not secret:
        if env == "production":
            raise ConfigError("JWT_SECRET must be set when KILAT_ENV=production")
        secret = DEV_JWT_SECRET
    if env == "production" and secret == DEV_JWT_SECRET:
        raise ConfigError("the development JWT secret cannot be used in production")
    brokers = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
    return Settings(
        env=env,
        app_id=os.environ.get("KILAT_APP_ID", "kilat"),
        kafka_brokers=brokers,
        topic_prefix=os.environ.get("KILAT_TOPIC_PREFIX", ""),
        topic_partitions=_int("KILAT_TOPIC_PARTITIONS", 3),
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
        log_json=os.environ.get("KILAT_LOG_JSON", "") in ("1", "true", "yes"),
    )
