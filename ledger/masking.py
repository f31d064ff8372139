"""Credentials never reach a message: database URLs are printed with their password masked.

`mask_url("postgresql://ledger:s3cret@db:5432/ledger")` → `postgresql://ledger:***@db:5432/ledger`;
a `password=` query parameter is masked too. `mask_in(text, url)` masks a URL's password
wherever it appears in a message (a driver's error may repeat it).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_QUERY_PASSWORD = re.compile(r"([?&;]password=)[^&;#\s]*", re.IGNORECASE)


def _userinfo(url: str) -> tuple[int, int] | None:
    """Return the span of the password in `scheme://user:password@host…`, or None."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    start = scheme_end + 3
    at = url.rfind("@", start)
    if at < 0:
        return None
    colon = url.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at


def password(url: str) -> str | None:
    """Return the password a URL carries in its user part (as written), or None."""
    span = _userinfo(url)
    return None if span is None or span[0] == span[1] else url[span[0]:span[1]]


def mask_url(url: str) -> str:
    """Return the URL with its password (user part and `password=` parameter) as `***`."""
    span = _userinfo(url)
    if span is not None and span[0] != span[1]:
        url = url[:span[0]] + MASK + url[span[1]:]
    return _QUERY_PASSWORD.sub(lambda match: match.group(1) + MASK, url)


def mask_in(text: str, url: str) -> str:
    """Return `text` with the URL masked and its password, raw or decoded, replaced."""
    text = text.replace(url, mask_url(url))
    secret = password(url)
    if secret:
        for form in {secret, unquote(secret)}:
            if len(form) >= 3:  # a one- or two-character password would mask ordinary text
                text = text.replace(form, MASK)
    return _QUERY_PASSWORD.sub(lambda match: match.group(1) + MASK, text)
