"""Apps: who may spend the gateway's key, each with its own gateway key and limits.

``GATEWAY_APPS`` names a TOML file (read with the standard library's ``tomllib``)::

    [apps.support]
    key_sha256 = "9f86d0…"          # hex SHA-256 of the app's gateway key (or: key = "…")
    max_calls = 20                  # concurrent calls of this app (per gateway process)
    calls_per_minute = 60           # new calls of this app, per minute
    models = ["gpt-realtime"]       # the models it may use (default: any)
    voices = ["marin", "cedar"]     # the voices it may use (default: any)
    locked_session_fields = ["instructions", "model"]   # default: GATEWAY_LOCKED_SESSION_FIELDS
    budget_usd_per_day = 50.0       # spent: new secrets and calls get insufficient_quota
    budget_usd_per_month = 1000.0
    budget_usd_per_user_per_day = 2.0   # each end user (the session's tracing.group_id)
    budget_warn_at = 0.8            # the share of a budget that logs budget.warning
    end_calls_at_budget = false     # true: live calls end too once a budget is spent

    [apps.support.session]          # session defaults of this app, over GATEWAY_SESSION
    instructions = "You are the support desk."

    [prices."gpt-realtime"]         # USD per 1M tokens, over the published prices
    input_text = 4.0                # every field of gateway.pricing.Price

Parsing is pure (:func:`parse_apps`); :func:`read_apps_file` adds a bounded read. Every mistake
is a :class:`ConfigError` of one line that names the setting, the file and the app, never a
key. Only the SHA-256 digest of each key is kept: a plain ``key`` is hashed as it is read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.config.base import ConfigError, Secret
from gateway.pricing import PRICE_FIELDS, Price

SETTING: Final = "GATEWAY_APPS"
DEFAULT_APP: Final = "default"
"""The app ``GATEWAY_API_KEY`` authenticates as."""
MAX_FILE_BYTES: Final = 1 << 20
"""An apps file larger than this is refused unread (it would be a mistake, not a config)."""
MAX_APPS: Final = 1000
"""App names are metric labels: a bounded set."""
MIN_KEY_CHARS: Final = 16

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_APP_FIELDS: Final = frozenset(
    {
        "key",
        "key_sha256",
        "max_calls",
        "calls_per_minute",
        "models",
        "voices",
        "session",
        "locked_session_fields",
        "budget_usd_per_day",
        "budget_usd_per_month",
        "budget_usd_per_user_per_day",
        "budget_warn_at",
        "end_calls_at_budget",
    }
)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class App:
    name: str
    key_digest: bytes = field(repr=False)
    max_calls: int | None = None
    calls_per_minute: int | None = None
    models: tuple[str, ...] | None = None
    """The models it may use; ``None``: any."""
    voices: tuple[str, ...] | None = None
    session: Mapping[str, Any] | None = None
    """Session defaults of this app, merged over the gateway's."""
    locked_session_fields: tuple[str, ...] | None = None
    """``None``: the gateway's (``GATEWAY_LOCKED_SESSION_FIELDS``)."""
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    budget_usd_per_user_per_day: float | None = None
    budget_warn_at: float = 0.8
    end_calls_at_budget: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"'name' must be 1-63 letters, digits, '.', '_' or '-' (got {self.name!r})"
            )
        if len(self.key_digest) != 32:
            raise ValueError("'key_digest' must be a SHA-256 digest (32 bytes)")


@dataclass(frozen=True)
class AppsConfig:
    """What an apps file holds."""

    apps: tuple[App, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=dict)


class Apps:
    """The apps a gateway knows now, and which one a gateway key belongs to."""

    def __init__(self, apps: Iterable[App] = ()) -> None:
        self._by_name: dict[str, App] = {}
        for app in apps:
            if app.name in self._by_name:
                raise ConfigError(f"{SETTING}: two apps are named {app.name!r}")
            self._by_name[app.name] = app

    @classmethod
    def of(cls, config: AppsConfig | None, gateway_key: Secret | None) -> Apps:
        """The file's apps, plus ``GATEWAY_API_KEY`` as the app ``default`` when it is set."""
        apps = list(config.apps) if config is not None else []
        if gateway_key is not None:
            if any(app.name == DEFAULT_APP for app in apps):
                raise ConfigError(
                    f"{SETTING}: the app name {DEFAULT_APP!r} belongs to GATEWAY_API_KEY; "
                    "rename the app or unset GATEWAY_API_KEY"
                )
            digest = key_digest(gateway_key.reveal())
            for app in apps:
                if hmac.compare_digest(app.key_digest, digest):
                    raise ConfigError(
                        f"{SETTING}: app {app.name!r} has the same key as GATEWAY_API_KEY; "
                        "every app needs a key of its own"
                    )
            apps.insert(0, App(name=DEFAULT_APP, key_digest=digest))
        return cls(apps)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[App]:
        return iter(self._by_name.values())

    def get(self, name: str) -> App | None:
        return self._by_name.get(name)

    def authenticate(self, key: str) -> App | None:
        """The app whose key ``key`` is, or ``None``. Digests are compared in constant time,
        and with every app's, so the time taken says nothing about which app (if any) matched."""
        digest = key_digest(key)
        found = None
        for app in self._by_name.values():
            if hmac.compare_digest(digest, app.key_digest):
                found = app
        return found


# -- reading -----------------------------------------------------------------------------------


def read_apps_file(path: str) -> AppsConfig:
    """Read and parse the apps file at ``path``; at most :data:`MAX_FILE_BYTES` are read."""
    where = f"{SETTING} ({path})"
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(f"{where} is not a regular file")
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text") from None
    return parse_apps(text, source=path)


def parse_apps(text: str, *, source: str = "") -> AppsConfig:
    """The apps and prices of an apps file's text; :class:`ConfigError` names the mistake."""
    where = f"{SETTING} ({source})" if source else SETTING
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says where, never what the line holds: no key is echoed.
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"apps", "prices"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown table {unknown[0]!r}; the file holds [apps.<name>] and "
            "[prices.<model>] tables"
        )
    apps_table = _table(document.get("apps", {}), f"{where}: 'apps'")
    if len(apps_table) > MAX_APPS:
        raise ConfigError(f"{where}: more than {MAX_APPS} apps")
    apps = tuple(_app(name, body, where) for name, body in apps_table.items())
    seen: dict[bytes, str] = {}
    for app in apps:
        other = seen.get(app.key_digest)
        if other is not None:
            raise ConfigError(
                f"{where}: apps {other!r} and {app.name!r} have the same key; every app "
                "needs a key of its own"
            )
        seen[app.key_digest] = app.name
    prices_table = _table(document.get("prices", {}), f"{where}: 'prices'")
    prices = {model: _price(model, body, where) for model, body in prices_table.items()}
    return AppsConfig(apps=apps, prices=prices)


def _app(name: str, raw: Any, where: str) -> App:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: app name {name[:80]!r} must be 1-63 letters, digits, '.', '_' or '-'"
        )
    what = f"{where}: app {name!r}"
    body = _table(raw, what)
    unknown = sorted(set(body) - _APP_FIELDS)
    if unknown:
        raise ConfigError(
            f"{what} has an unknown field {unknown[0][:80]!r}; known: "
            + ", ".join(sorted(_APP_FIELDS))
        )
    return App(
        name=name,
        key_digest=_digest(body, what),
        max_calls=_whole(body, "max_calls", what, 1, 100_000),
        calls_per_minute=_whole(body, "calls_per_minute", what, 1, 1_000_000),
        models=_strings(body, "models", what),
        voices=_strings(body, "voices", what),
        session=_table(body["session"], f"{what}: 'session'") if "session" in body else None,
        locked_session_fields=_paths(body, what),
        budget_usd_per_day=_usd(body, "budget_usd_per_day", what),
        budget_usd_per_month=_usd(body, "budget_usd_per_month", what),
        budget_usd_per_user_per_day=_usd(body, "budget_usd_per_user_per_day", what),
        budget_warn_at=_share(body, "budget_warn_at", what),
        end_calls_at_budget=_flag(body, "end_calls_at_budget", what),
    )


def _digest(body: Mapping[str, Any], what: str) -> bytes:
    if ("key" in body) == ("key_sha256" in body):
        raise ConfigError(f"{what} needs exactly one of 'key_sha256' (preferred) and 'key'")
    if "key" in body:
        key = body["key"]
        if not isinstance(key, str) or len(key.strip()) < MIN_KEY_CHARS:
            raise ConfigError(
                f"{what}: 'key' must be a string of at least {MIN_KEY_CHARS} characters"
            )
        return key_digest(key.strip())
    hexdigest = body["key_sha256"]
    if not isinstance(hexdigest, str) or not _HEX_DIGEST.fullmatch(hexdigest.strip()):
        raise ConfigError(
            f"{what}: 'key_sha256' must be 64 hex digits (e.g. the output of "
            '`printf %s "$KEY" | sha256sum`)'
        )
    return bytes.fromhex(hexdigest.strip())


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a table")
    return value


def _whole(body: Mapping[str, Any], name: str, what: str, lo: int, hi: int) -> int | None:
    if name not in body:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what}: '{name}' must be a whole number from {lo} to {hi}")
    return value


def _usd(body: Mapping[str, Any], name: str, what: str) -> float | None:
    if name not in body:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e12:
        raise ConfigError(f"{what}: '{name}' must be a number of US dollars, 0 or more")
    return float(value)


def _share(body: Mapping[str, Any], name: str, what: str) -> float:
    value = body.get(name, 0.8)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{what}: '{name}' must be a share of the budget, above 0 and up to 1")
    return float(value)


def _flag(body: Mapping[str, Any], name: str, what: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: '{name}' must be true or false")
    return value


def _strings(body: Mapping[str, Any], name: str, what: str) -> tuple[str, ...] | None:
    if name not in body:
        return None
    value = body[name]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise ConfigError(f"{what}: '{name}' must be a non-empty list of names")
    return tuple(v.strip() for v in value)


def _paths(body: Mapping[str, Any], what: str) -> tuple[str, ...] | None:
    if "locked_session_fields" not in body:
        return None
    value = body["locked_session_fields"]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and all(v.split(".")) for v in value
    ):
        raise ConfigError(
            f"{what}: 'locked_session_fields' must be a list of dotted session fields such as "
            "'audio.output.voice' (an empty list locks nothing)"
        )
    return tuple(value)


def _price(model: str, raw: Any, where: str) -> Price:
    what = f"{where}: prices of {model[:80]!r}"
    body = _table(raw, what)
    unknown = sorted(set(body) - set(PRICE_FIELDS))
    missing = [f for f in PRICE_FIELDS if f not in body]
    if unknown or missing:
        problem = f"unknown field {unknown[0][:80]!r}" if unknown else f"no {missing[0]!r}"
        raise ConfigError(
            f"{what} has {problem}; each model needs {', '.join(PRICE_FIELDS)} (USD per 1M tokens)"
        )
    try:
        return Price(**body)
    except ValueError:
        raise ConfigError(
            f"{what}: every price must be a number of US dollars, 0 or more"
        ) from None
