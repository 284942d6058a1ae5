"""Notification channel adapters on the real client libraries: push via pyfcm (FCM HTTP v1),
SMS via twilio, email via SMTP.

Each `send_*` returns the provider's message id or raises `ChannelError`; `permanent=True`
means retrying cannot help (unknown device token, rejected number, channel not configured).

Pointing the libraries at other servers (local fakes, a regional gateway):
* pyfcm 2.x builds its URL as `FCM_END_POINT_BASE + "/<project>/messages:send"` and gets its
  OAuth token with google-auth from a service-account file (`FCM_SERVICE_ACCOUNT_FILE`); the
  token endpoint is the file's `token_uri`. `FCM_ENDPOINT` replaces `FCM_END_POINT_BASE` on our
  instance (e.g. `http://127.0.0.1:9001/v1/projects`).
* twilio builds absolute `https://api.twilio.com/...` URLs; `TWILIO_BASE_URL` makes our
  http client (twilio's own aiohttp-based `AsyncTwilioHttpClient`) send them to that scheme
  and host instead, path unchanged.
* SMTP goes to `SMTP_HOST:SMTP_PORT` (`SMTP_PORT=0` = email not configured).
The blocking clients (pyfcm's requests session, smtplib) run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from pyfcm import FCMNotification
from pyfcm.errors import (
    AuthenticationError,
    FCMNotRegisteredError,
    FCMSenderIdMismatchError,
    FCMServerError,
    InvalidDataError,
)
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from core.config import settings

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 10


class ChannelError(Exception):
    """A send that did not go through; `permanent` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# ---------------------------------------------------------------- push (FCM via pyfcm)

@lru_cache(maxsize=1)
def _fcm() -> FCMNotification:
    cfg = settings()
    fcm = FCMNotification(service_account_file=cfg.fcm_service_account_file)
    if cfg.fcm_endpoint:
        fcm.FCM_END_POINT_BASE = cfg.fcm_endpoint.rstrip("/")
    return fcm


def _push_sync(token: str, title: str, body: str, data: dict[str, str]) -> str:
    if not Path(settings().fcm_service_account_file).is_file():
        raise ChannelError("push channel is not configured", permanent=True)
    try:
        result = _fcm().notify(fcm_token=token, notification_title=title,
                               notification_body=body, data_payload=data or None,
                               timeout=SEND_TIMEOUT_S)
    except (FCMNotRegisteredError, FCMSenderIdMismatchError) as exc:
        raise ChannelError(f"fcm: {exc}", permanent=True) from exc
    except InvalidDataError as exc:
        # pyfcm raises this both for a 400 and for a token it could not obtain.
        raise ChannelError(f"fcm: invalid request: {exc}") from exc
    except (AuthenticationError, FCMServerError) as exc:
        raise ChannelError(f"fcm: {exc}") from exc
    except requests.RequestException as exc:
        raise ChannelError(f"fcm: {type(exc).__name__}: {exc}") from exc
    return str((result or {}).get("name", ""))


async def send_push(token: str, title: str, body: str, data: dict[str, str] | None = None) -> str:
    if not settings().fcm_service_account_file:
        raise ChannelError("push channel is not configured", permanent=True)
    return await asyncio.to_thread(_push_sync, token, title, body, dict(data or {}))


# ---------------------------------------------------------------- SMS (twilio)

class RoutedTwilioHttpClient(AsyncTwilioHttpClient):
    """twilio's aiohttp client, sending to `base_url`'s scheme and host when one is set."""

    def __init__(self, base_url: str = "") -> None:
        super().__init__(pool_connections=False)
        self.base_url = base_url.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        if self.base_url:
            base = urlsplit(self.base_url)
            parts = urlsplit(url)
            url = urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query,
                              parts.fragment))
        return await super().request(method, url, *args, **kwargs)


def _twilio() -> TwilioClient:
    cfg = settings()
    return TwilioClient(cfg.twilio_account_sid, cfg.twilio_auth_token,
                        http_client=RoutedTwilioHttpClient(cfg.twilio_base_url))


async def send_sms(to: str, body: str) -> str:
    cfg = settings()
    if not cfg.twilio_account_sid or not cfg.twilio_auth_token:
        raise ChannelError("sms channel is not configured", permanent=True)
    try:
        message = await asyncio.wait_for(
            _twilio().messages.create_async(to=to, from_=cfg.twilio_from_number, body=body),
            SEND_TIMEOUT_S)
    except TwilioRestException as exc:
        permanent = 400 <= exc.status < 500 and exc.status not in (408, 429)
        raise ChannelError(f"twilio: {exc.status} {exc.msg}", permanent=permanent) from exc
    except (TwilioException, OSError, TimeoutError) as exc:
        raise ChannelError(f"twilio: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # aiohttp errors and the like: the network, retry later
        raise ChannelError(f"twilio: {type(exc).__name__}: {exc}") from exc
    return str(message.sid or "")


# ---------------------------------------------------------------- email (SMTP)

def _email_sync(to: str, subject: str, html: str) -> str:
    cfg = settings()
    msg = EmailMessage()
    msg["From"] = cfg.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="kilat.my")
    msg.set_content(html, subtype="html")
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=SEND_TIMEOUT_S) as smtp:
            smtp.send_message(msg)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise ChannelError(f"smtp: {exc}", permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"smtp: {type(exc).__name__}: {exc}") from exc
    return str(msg.get("Message-ID") or "")


async def send_email(to: str, subject: str, html: str) -> str:
    if not settings().smtp_port:
        raise ChannelError("email channel is not configured", permanent=True)
    return await asyncio.to_thread(_email_sync, to, subject, html)


# ---------------------------------------------------------------- dispatch

async def send(channel: str, contact: str, content: dict[str, str],
               data: dict[str, str] | None = None) -> str:
    """Send one rendered variant (`content`) on `channel` to `contact`."""
    if channel == "push":
        return await send_push(contact, content.get("title", ""), content.get("body", ""), data)
    if channel == "sms":
        return await send_sms(contact, content.get("body", ""))
    if channel == "email":
        return await send_email(contact, content.get("subject", ""), content.get("html", ""))
    raise ChannelError(f"unknown channel {channel!r}", permanent=True)
