from __future__ import annotations

import pytest

from gateway.config import ConfigError, Secret, Settings


class TestSettings:
    def test_emulator_mode_without_key(self) -> None:
        """No OPENAI_API_KEY means the emulator, a generated gateway key and the demo page."""
        s = Settings.from_env({})
        assert s.uses_emulator
        assert s.gateway_api_key is not None and s.gateway_api_key_generated
        assert s.gateway_api_key.reveal().startswith("gk_")
        assert s.demo_enabled
        assert s.upstream_ice_addresses == ("127.0.0.1",)

    def test_openai_mode_needs_explicit_gateway_key(self) -> None:
        """With a real key, no gateway key is invented: minting stays off until one is set."""
        s = Settings.from_env({"OPENAI_API_KEY": "sk-test-123456"})
        assert not s.uses_emulator
        assert s.gateway_api_key is None
        assert not s.demo_enabled
        assert s.upstream_ice_addresses == ()

    def test_secrets_do_not_show_in_repr(self) -> None:
        """Neither key appears in the settings' repr."""
        s = Settings.from_env({"OPENAI_API_KEY": "sk-supersecret", "GATEWAY_API_KEY": "gk_zzz"})
        assert "supersecret" not in repr(s)
        assert "gk_zzz" not in repr(s)
        assert "supersecret" not in str(s.openai_api_key)

    def test_values_are_parsed(self) -> None:
        """Every documented variable is read and typed."""
        s = Settings.from_env(
            {
                "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
                "GATEWAY_ICE_ADDRESSES": "127.0.0.1, ::1",
                "GATEWAY_PORT": "9000",
                "GATEWAY_MODEL": "m",
                "GATEWAY_VOICE": "cedar",
                "GATEWAY_INSTRUCTIONS": "be brief",
                "GATEWAY_CLIENT_SECRET_TTL": "60",
                "GATEWAY_CLIENT_SECRET_SINGLE_USE": "false",
                "GATEWAY_CORS_ORIGINS": "https://a.example, https://b.example/",
            }
        )
        assert s.openai_base_url == "http://127.0.0.1:9/v1"
        assert s.ice_addresses == ("127.0.0.1", "::1")
        assert s.port == 9000
        assert (s.model, s.voice, s.instructions) == ("m", "cedar", "be brief")
        assert s.client_secret_ttl == 60
        assert s.client_secret_single_use is False
        assert s.cors_origins == ("https://a.example", "https://b.example")

    def test_overrides_win(self) -> None:
        """Command-line flags override the environment; None means 'not given'."""
        s = Settings.from_env({"GATEWAY_PORT": "9000"}, port=7000, host=None)
        assert s.port == 7000 and s.host == "127.0.0.1"

    @pytest.mark.parametrize(
        ("env", "needle"),
        [
            ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT must be a whole number"),
            ({"GATEWAY_PORT": "70000"}, "between 0 and 65535"),
            ({"GATEWAY_ICE_ADDRESSES": "localhost"}, "GATEWAY_ICE_ADDRESSES"),
            ({"OPENAI_BASE_URL": "api.openai.com"}, "OPENAI_BASE_URL"),
            ({"OPENAI_API_KEY": "ek_abc"}, "not an ephemeral"),
            ({"GATEWAY_CLIENT_SECRET_SINGLE_USE": "maybe"}, "true or false"),
            ({"GATEWAY_LOG_LEVEL": "loud"}, "GATEWAY_LOG_LEVEL"),
            ({"GATEWAY_CORS_ORIGINS": "example.com"}, "GATEWAY_CORS_ORIGINS"),
        ],
    )
    def test_bad_values_are_explained(self, env: dict[str, str], needle: str) -> None:
        """A malformed setting names the variable and what it expects."""
        with pytest.raises(ConfigError, match=needle):
            Settings.from_env(env)

    def test_secret_equality_is_by_value(self) -> None:
        """Secrets compare by value without revealing it."""
        assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


class TestNetworkSettings:
    def test_port_range_public_ip_and_ice_servers(self) -> None:
        """Container networking settings are parsed and credentials kept secret."""
        s = Settings.from_env(
            {
                "GATEWAY_ICE_PORT_RANGE": "40000-40100",
                "GATEWAY_PUBLIC_IP": "203.0.113.7",
                "GATEWAY_ICE_SERVERS": '[{"urls":["turn:127.0.0.1:3479?transport=udp"],'
                '"username":"u","credential":"pw-secret"}]',
                "GATEWAY_UPSTREAM_ICE_SERVERS": "stun:127.0.0.1:3478",
                "GATEWAY_MEDIA": "transcode",
                "GATEWAY_MAX_CALLS": "5",
                "GATEWAY_DRAIN_TIMEOUT": "12.5",
            }
        )
        assert s.ice_port_range == (40000, 40100)
        assert s.public_ip == "203.0.113.7"
        assert s.ice_servers[0].urls == ("turn:127.0.0.1:3479?transport=udp",)
        assert s.ice_servers[0].username == "u"
        assert "pw-secret" not in repr(s)
        assert s.upstream_ice_servers[0].urls == ("stun:127.0.0.1:3478",)
        assert (s.media, s.max_calls, s.drain_timeout) == ("transcode", 5, 12.5)

    @pytest.mark.parametrize(
        ("env", "needle"),
        [
            ({"GATEWAY_ICE_PORT_RANGE": "40000"}, None),
            ({"GATEWAY_ICE_PORT_RANGE": "a-b"}, "40000-40100"),
            ({"GATEWAY_ICE_PORT_RANGE": "500-600"}, "1024-65535"),
            ({"GATEWAY_PUBLIC_IP": "gw.example.com"}, "GATEWAY_PUBLIC_IP"),
            ({"GATEWAY_ICE_SERVERS": "[{"}, "not valid JSON"),
            ({"GATEWAY_ICE_SERVERS": "http://x"}, "stun:, turn:"),
            ({"GATEWAY_ICE_SERVERS": "turn:127.0.0.1:3478"}, "username and a credential"),
            ({"GATEWAY_MEDIA": "magic"}, "GATEWAY_MEDIA"),
        ],
    )
    def test_bad_network_values(self, env: dict[str, str], needle: str | None) -> None:
        """Bad values are explained; a single port is a valid one-port range."""
        if needle is None:
            assert Settings.from_env(env).ice_port_range == (40000, 40000)
            return
        with pytest.raises(ConfigError, match=needle):
            Settings.from_env(env)


class TestClusterSettings:
    @pytest.mark.parametrize(
        "url",
        [
            "http://redis:6379",
            "redis://",
            "redis://redis:port/0",
            "redis://:pw@redis:6379/zero",
            "unix://",
        ],
    )
    def test_bad_redis_urls_are_one_line_without_the_password(self, url: str) -> None:
        """A Redis URL that cannot work fails at startup, naming the setting, not the password."""
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"GATEWAY_REDIS_URL": url})
        assert "GATEWAY_REDIS_URL" in str(info.value) and "pw" not in str(info.value)

    def test_cluster_settings_parse(self) -> None:
        """Redis, node, proxies and workers."""
        s = Settings.from_env(
            {
                "GATEWAY_REDIS_URL": "rediss://:pw@redis.example:6380/2",
                "GATEWAY_NODE_NAME": "gw-1",
                "GATEWAY_NODE_ADDRESS": "http://10.0.0.5:8080",
                "GATEWAY_CLUSTER_SECRET": "0123456789abcdef0123",
                "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                "GATEWAY_WORKERS": "auto",
            }
        )
        assert s.redis_url is not None and "pw" not in repr(s)
        assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
        assert (s.node_name, s.node_address, s.workers) == ("gw-1", "http://10.0.0.5:8080", 0)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("GATEWAY_NODE_NAME", "has space"),
            ("GATEWAY_CLUSTER_SECRET", "short"),
            ("GATEWAY_WORKERS", "0"),
            ("GATEWAY_NODE_ADDRESS", "10.0.0.5:8080"),
        ],
    )
    def test_bad_values_name_the_setting(self, name: str, value: str) -> None:
        """Each bad cluster setting is refused with its name."""
        with pytest.raises(ConfigError) as info:
            Settings.from_env({name: value})
        assert name in str(info.value)


class TestContinuitySettings:
    def test_on_by_default_with_a_longer_cap(self) -> None:
        settings = Settings.from_env({})
        assert settings.continuity is True
        assert settings.max_call_duration == 4 * 3600
        assert (settings.continuity_lead, settings.continuity_replay_tokens) == (60.0, 8000)

    def test_off_keeps_openais_cap(self) -> None:
        settings = Settings.from_env({"GATEWAY_CONTINUITY": "false"})
        assert settings.continuity is False
        assert settings.max_call_duration == 3600

    def test_transcoding_turns_it_off_unless_asked_for(self) -> None:
        assert Settings.from_env({"GATEWAY_MEDIA": "transcode"}).continuity is False
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"GATEWAY_MEDIA": "transcode", "GATEWAY_CONTINUITY": "true"})
        assert str(info.value).startswith("GATEWAY_CONTINUITY")
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("GATEWAY_CONTINUITY", "maybe"),
            ("GATEWAY_CONTINUITY_LEAD", "-1"),
            ("GATEWAY_CONTINUITY_REPLAY_TOKENS", "lots"),
        ],
    )
    def test_bad_values_name_the_setting(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
