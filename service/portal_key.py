"""The victims' page's own key (`serve --portal-key-file`): read from its file, and
refused unless it can do no more than the page does.

Anyone who opens the page acts with this key, so it is as good as public: it may hold
the submit role, scoped to victims' cases, and nothing else."""

from __future__ import annotations

from pathlib import Path

from indexer.credentials import split_token
from indexer.store import CASE_LIST, ApiKey

MAX_FILE_BYTES = 4096


class PortalKeyRefused(Exception):
    """The page's key can't be used: why, in words for the operator."""


def read_portal_key(path: Path) -> str:
    """The key in `path`: its only line, or the `key:` line `hashmatch keys create`
    prints (its whole output may be saved as the file)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PortalKeyRefused(f"cannot read the portal key file {path}: {exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    printed = [line.split(":", 1)[1].strip() for line in lines if line.startswith("key:")]
    tokens = printed or lines
    if len(raw) > MAX_FILE_BYTES or len(tokens) != 1 or split_token(tokens[0]) is None:
        raise PortalKeyRefused(
            f"{path} holds no API key: save in it the key `hashmatch keys create` printed "
            "(hm_...), alone on its line"
        )
    return tokens[0]


def portal_key_problem(key: ApiKey | None) -> str | None:
    """Why `key` may not be the page's (None: it may)."""
    if key is None:
        return "is unknown or revoked"
    if key.roles != frozenset({"submit"}):
        return (
            f"holds the roles {', '.join(sorted(key.roles))}: the page's key must hold "
            "submit alone, since anyone who opens the page acts with it"
        )
    if key.lists != frozenset({CASE_LIST}):
        scope = "every list" if key.lists is None else ", ".join(sorted(key.lists))
        return (
            f"is scoped to {scope}: the page's key must be scoped to {CASE_LIST} alone "
            f"(keys create --role submit --list {CASE_LIST})"
        )
    return None
