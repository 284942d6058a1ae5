"""`kilat create-admin --email --password --full-name`: the only way to make an admin
(sign-up refuses the role, DESIGN item 5)."""

from __future__ import annotations

import click
from faust.cli import option

from core.db import db
from core.outbox import emit
from core.security import hash_password
from domain import identity as rules
from kilat import app
from models import events as ev
from stores import identity as store


class CommandError(click.ClickException):
    """Reported on stderr with exit status 1."""


@app.command(
    option("--email", required=True, help="Admin's email (login name)."),
    option("--password", required=True, help="At least 8 characters."),
    option("--full-name", required=True, help="Shown in the admin console."),
)
async def create_admin(self, email: str, password: str, full_name: str) -> None:
    """Create an administrator account."""
    email = rules.normalize_email(email)
    if not rules.is_email(email):
        raise CommandError(f"invalid email: {email}")
    if not full_name.strip():
        raise CommandError("full name is required")
    try:
        rules.check_password(password, email)
        full_name = rules.check_full_name(full_name)
    except rules.RuleViolation as exc:
        raise CommandError(str(exc)) from None
    try:
        async with db.transaction() as conn:
            user = await store.create_user(
                conn, email=email, password_hash=hash_password(password),
                full_name=full_name, role="admin", is_verified=True)
            if user is None:
                raise CommandError(f"User with email '{email}' already exists")
            await emit(conn, ev.IDENTITY_EVENTS, user["id"], "service-identity",
                       "identity.user_registered", {
                           "user_id": user["id"], "email": user["email"],
                           "full_name": user["full_name"], "role": "admin", "referred_by": None,
                       })
    finally:
        await db.close()
    self.say(f"created admin {user['email']} ({user['id']})")
