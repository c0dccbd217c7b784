"""Keeping marketplace credentials out of pages and logs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

MASK = "••••"


def mask_secret(value: str | None) -> str:
    """``••••`` plus the last four characters, enough for staff to tell tokens apart.

    Short secrets show no characters at all: four of eight would be half the secret.
    """
    if not value:
        return "—"
    if len(value) < 12:
        return MASK
    return f"{MASK}{value[-4:]}"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by its mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask_secret(secret))
    return text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that masks the given secrets in messages and their arguments.

    Handed to libraries that log wire traffic at DEBUG (websockets logs every
    handshake header, Authorization included), so turning DEBUG on never leaks
    a credential.
    """

    def __init__(self, logger: logging.Logger, secrets: Iterable[str]):
        super().__init__(logger, {})
        self.secrets = tuple(s for s in secrets if s)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join([str(msg), *map(str, args)])
        self.logger.log(level, "%s", redact(text, self.secrets), **kwargs)
