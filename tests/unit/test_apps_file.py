"""The apps file (GATEWAY_APPS): what it may hold, and one clear line for every mistake."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gateway.banner import banner
from gateway.config import ConfigError, Secret, Settings
from gateway.config.apps import (
    DEFAULT_APP,
    MAX_FILE_BYTES,
    App,
    Apps,
    key_digest,
    parse_apps,
    read_apps_file,
)
from gateway.pricing import PUBLISHED, Price

KEY_A = "gk_support_0123456789abcdef"
KEY_B = "gk_sales_fedcba9876543210"
SHA_B = hashlib.sha256(KEY_B.encode()).hexdigest()

TWO_APPS = f"""
[apps.support]
key = "{KEY_A}"
max_calls = 20
calls_per_minute = 60
models = ["gpt-realtime", "gpt-realtime-mini"]
voices = ["marin"]
locked_session_fields = ["instructions"]
budget_usd_per_day = 50.0
budget_usd_per_month = 1000

[apps.support.session]
instructions = "You are the support desk."

[apps.sales]
key_sha256 = "{SHA_B}"

[prices."gpt-realtime"]
input_text = 1
cached_input_text = 0.1
output_text = 2
input_audio = 3
cached_input_audio = 0.3
output_audio = 4
"""


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_apps(text, source="/etc/apps.toml")
    message = str(caught.value)
    assert message.startswith("GATEWAY_APPS (/etc/apps.toml)"), message
    assert "\n" not in message
    return message


class TestParse:
    def test_two_apps_and_a_price(self) -> None:
        """Every documented field is read; a plain key is kept only as its digest."""
        config = parse_apps(TWO_APPS)
        support, sales = config.apps
        assert support == App(
            name="support",
            key_digest=key_digest(KEY_A),
            max_calls=20,
            calls_per_minute=60,
            models=("gpt-realtime", "gpt-realtime-mini"),
            voices=("marin",),
            session={"instructions": "You are the support desk."},
            locked_session_fields=("instructions",),
            budget_usd_per_day=50.0,
            budget_usd_per_month=1000.0,
        )
        assert sales.name == "sales" and sales.key_digest == bytes.fromhex(SHA_B)
        assert sales.max_calls is None and sales.models is None
        assert config.prices == {"gpt-realtime": Price(1, 0.1, 2, 3, 0.3, 4)}
        assert KEY_A not in repr(config) and SHA_B not in repr(config)

    def test_an_empty_file_has_no_apps(self) -> None:
        """A file may hold only prices, or nothing: the single key goes on as it was."""
        assert parse_apps("").apps == ()

    def test_a_key_shorter_than_the_minimum(self) -> None:
        """A guessable key is refused, and the line does not repeat it."""
        message = refused('[apps.a]\nkey = "short-key"\n')
        assert "app 'a'" in message and "16 characters" in message
        assert "short-key" not in message

    def test_a_digest_that_is_not_sha256(self) -> None:
        """key_sha256 must be 64 hex digits."""
        message = refused('[apps.a]\nkey_sha256 = "abc123"\n')
        assert "64 hex digits" in message

    def test_both_or_neither_key(self) -> None:
        """Exactly one of key and key_sha256."""
        assert "exactly one" in refused("[apps.a]\nmax_calls = 1\n")
        assert "exactly one" in refused(f'[apps.a]\nkey = "{KEY_A}"\nkey_sha256 = "{SHA_B}"\n')

    def test_duplicate_keys_across_apps(self) -> None:
        """Two apps with one key (plain or digest) could not be told apart: refused, by name."""
        text = f'[apps.a]\nkey = "{KEY_B}"\n[apps.b]\nkey_sha256 = "{SHA_B}"\n'
        message = refused(text)
        assert "'a'" in message and "'b'" in message and "same key" in message
        assert KEY_B not in message and SHA_B not in message

    def test_unknown_fields_are_refused(self) -> None:
        """A misspelt field is not ignored: the line names it and the known ones."""
        message = refused(f'[apps.a]\nkey = "{KEY_A}"\nmax_call = 3\n')
        assert "unknown field 'max_call'" in message and "max_calls" in message

    def test_unknown_tables_are_refused(self) -> None:
        """Only [apps.*] and [prices.*] are understood."""
        assert "unknown table 'app'" in refused(f'[app.a]\nkey = "{KEY_A}"\n')

    def test_bad_values(self) -> None:
        """Limits are whole numbers in range; lists are non-empty lists of names."""
        base = f'[apps.a]\nkey = "{KEY_A}"\n'
        assert "'max_calls'" in refused(base + "max_calls = 0\n")
        assert "'max_calls'" in refused(base + "max_calls = true\n")
        assert "'calls_per_minute'" in refused(base + 'calls_per_minute = "10"\n')
        assert "'models'" in refused(base + "models = []\n")
        assert "'voices'" in refused(base + "voices = [1]\n")
        assert "'budget_usd_per_day'" in refused(base + "budget_usd_per_day = -1\n")
        assert "'session'" in refused(base + 'session = "x"\n')
        assert "'locked_session_fields'" in refused(base + 'locked_session_fields = ["a..b"]\n')

    def test_bad_app_names(self) -> None:
        """Names become metric labels and log fields: a small alphabet."""
        assert "app name" in refused(f'[apps."a b"]\nkey = "{KEY_A}"\n')

    def test_bad_prices(self) -> None:
        """A price table needs every field, each 0 or more."""
        fields = "input_text = 1\ncached_input_text = 1\noutput_text = 1\ninput_audio = 1\n"
        assert "no 'cached_input_audio'" in refused(f"[prices.m]\n{fields}")
        full = fields + "cached_input_audio = 1\noutput_audio = 1\n"
        assert "0 or more" in refused(f"[prices.m]\n{full.replace('= 1', '= -1', 1)}")
        assert "unknown field 'image'" in refused(f"[prices.m]\n{full}image = 1\n")

    def test_not_toml(self) -> None:
        """A syntax error says where, and never echoes the line (it may hold a key)."""
        message = refused(f'[apps.a]\nkey = "{KEY_A}\n')
        assert "not valid TOML" in message and KEY_A not in message


class TestRead:
    def test_reads_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "apps.toml"
        path.write_text(TWO_APPS)
        assert [app.name for app in read_apps_file(str(path)).apps] == ["support", "sales"]

    def test_a_huge_file_is_refused_unread(self, tmp_path: Path) -> None:
        """The read is bounded: a file past the limit is refused without being parsed."""
        path = tmp_path / "apps.toml"
        with path.open("wb") as file:
            file.write(b"#" * (MAX_FILE_BYTES + 10))
        with pytest.raises(ConfigError, match="larger than"):
            read_apps_file(str(path))

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"^GATEWAY_APPS \(.*\) cannot be read"):
            read_apps_file(str(tmp_path / "nope.toml"))

    def test_a_fifo_is_not_waited_on(self, tmp_path: Path) -> None:
        """Only a regular file is read (a FIFO would block startup)."""
        fifo = tmp_path / "apps.fifo"
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the next open not block
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                with pytest.raises(ConfigError, match="not a regular file"):
                    read_apps_file(str(fifo))
            finally:
                os.close(writer)
        finally:
            os.close(fd)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "apps.toml"
        path.write_bytes(b"\xff\xfe")
        with pytest.raises(ConfigError, match="not UTF-8"):
            read_apps_file(str(path))


class TestApps:
    def test_each_key_authenticates_as_its_app(self) -> None:
        apps = Apps.of(parse_apps(TWO_APPS), Secret("gk_the_single_key_0001"))
        assert [app.name for app in apps] == [DEFAULT_APP, "support", "sales"]
        assert apps.authenticate(KEY_A) is apps.get("support")
        assert apps.authenticate(KEY_B) is apps.get("sales")
        assert apps.authenticate("gk_the_single_key_0001") is apps.get(DEFAULT_APP)
        assert apps.authenticate(KEY_A + "x") is None
        assert apps.authenticate("") is None

    def test_without_a_single_key_there_is_no_default_app(self) -> None:
        apps = Apps.of(parse_apps(TWO_APPS), None)
        assert apps.get(DEFAULT_APP) is None and len(apps) == 2

    def test_default_is_the_single_keys_name(self) -> None:
        """An app named 'default' beside GATEWAY_API_KEY is refused: which would it be?"""
        config = parse_apps(f'[apps.default]\nkey = "{KEY_A}"\n')
        with pytest.raises(ConfigError, match="GATEWAY_API_KEY"):
            Apps.of(config, Secret("gk_the_single_key_0001"))
        assert Apps.of(config, None).authenticate(KEY_A) is not None

    def test_an_app_with_the_single_keys_key(self) -> None:
        config = parse_apps(f'[apps.a]\nkey = "{KEY_A}"\n')
        with pytest.raises(ConfigError, match="same key as GATEWAY_API_KEY"):
            Apps.of(config, Secret(KEY_A))


class TestSettings:
    def test_gateway_apps_is_read_at_startup(self, tmp_path: Path) -> None:
        path = tmp_path / "apps.toml"
        path.write_text(TWO_APPS)
        settings = Settings.from_env({"GATEWAY_APPS": str(path)})
        assert settings.apps_file == str(path)
        assert settings.apps_config is not None and len(settings.apps_config.apps) == 2
        # Apps hold the keys: no key is made up for the emulator on top of them.
        assert settings.gateway_api_key is None and not settings.gateway_api_key_generated

    def test_the_banner_names_the_apps_not_a_missing_key(self, tmp_path: Path) -> None:
        """Apps without GATEWAY_API_KEY are keys enough: the banner lists them, no alarm."""
        path = tmp_path / "apps.toml"
        path.write_text(TWO_APPS)
        text = banner(Settings.from_env({"GATEWAY_APPS": str(path)}))
        assert "apps:         2 from GATEWAY_APPS (support, sales)" in text
        assert "MISSING" not in text and KEY_A not in text

    def test_a_broken_file_stops_startup(self, tmp_path: Path) -> None:
        path = tmp_path / "apps.toml"
        path.write_text('[apps.a]\nkey = "x"\n')
        with pytest.raises(ConfigError, match=r"^GATEWAY_APPS"):
            Settings.from_env({"GATEWAY_APPS": str(path)})

    def test_a_clash_with_the_single_key_stops_startup(self, tmp_path: Path) -> None:
        path = tmp_path / "apps.toml"
        path.write_text(f'[apps.a]\nkey = "{KEY_A}"\n')
        with pytest.raises(ConfigError, match="same key as GATEWAY_API_KEY"):
            Settings.from_env({"GATEWAY_APPS": str(path), "GATEWAY_API_KEY": KEY_A})

    def test_the_published_prices_are_the_default(self) -> None:
        assert "gpt-realtime" in PUBLISHED and "gpt-realtime-mini" in PUBLISHED
