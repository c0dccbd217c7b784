"""Error pages and reports never show credentials.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* matches
API/TOKEN/KEY/SECRET/PASS/SIGNATURE/HTTP_COOKIE. That misses ``DATABASE_URL``,
``REDIS_URL`` and the like, whose *value* carries a password. This filter also hides
every setting named ``*_URL``/``*_DSN``/``CREDENTIAL*`` and masks the password of any
``scheme://user:password@host`` found in any setting's value, however nested.
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@", re.I)


def mask_url_credentials(text: str) -> str:
    """``postgres://u:secret@h/db`` → ``postgres://********************@h/db``."""
    return _URL_CREDENTIALS.sub(
        lambda m: f"{m['scheme']}{SafeExceptionReporterFilter.cleansed_substitute}@", text
    )


class SafeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DSN|CREDENTIAL|_URL$|^URL$",
        flags=re.I,
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):  # lazy strings too (django-axes' settings are)
            masked = mask_url_credentials(str(cleansed))
            return masked if masked != str(cleansed) else cleansed
        return cleansed
