"""Configuration loading: defaults, the shipped config.toml, unknown keys, types, environment."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path

import msgspec
import pytest

from commandcenter.config import (
    Config,
    ConfigError,
    CourtConfig,
    load_config,
    replace_section,
)

REPO = Path(__file__).resolve().parent.parent
CONFIG_TOML = REPO / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sections() -> dict[str, type[msgspec.Struct]]:
    hints = typing.get_type_hints(Config)
    return {
        name: tp
        for name, tp in hints.items()
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct)
    }


def test_embedded_defaults_are_valid_and_listen_on_localhost_8080() -> None:
    cfg = load_config(None, environ={})
    assert cfg == Config()
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.redis.url == ""
    assert cfg.server.data_dir == "./var"


def test_shipped_config_toml_loads_to_exactly_the_defaults() -> None:
    assert load_config(CONFIG_TOML, environ={}) == Config()


def test_shipped_config_toml_lists_and_documents_every_setting() -> None:
    """Every field of every section appears in config.toml with its env variable named."""
    text = CONFIG_TOML.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for section, cls in sections().items():
        fields = {f.name for f in msgspec.structs.fields(cls)}
        assert set(data[section]) == fields, section
        for name in fields:
            assert f"# env: COMMANDCENTER_{section.upper()}_{name.upper()}\n" in text
    assert len(data["courts"]) == len(Config().courts)


def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 9000\n")
    with pytest.raises(ConfigError, match=re.escape("server.prot")):
        load_config(path, environ={})


def test_unknown_section_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[sever]\nport = 9000\n")
    with pytest.raises(ConfigError, match="sever: unknown setting"):
        load_config(path, environ={})


def test_unknown_key_in_a_court_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[[courts]]\ncode = "P"\nname = "P"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=re.escape("courts[0].colour")):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[server]\nport = "8080"\n', "server.port"),
        ("[server]\nhost = 1\n", "server.host"),
        ('[calls]\nfallback_to_parent = "maybe"\n', "calls.fallback_to_parent"),
        ("[presence]\ngrace_s = true\n", "presence.grace_s"),
        ('[auth]\nalgorithms = "HS256"\n', "auth.algorithms"),
        ("server = 1\n", "server"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: expected"):
        load_config(write(tmp_path, text), environ={})


def test_integer_is_accepted_for_a_float_setting(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[presence]\ngrace_s = 10\n"), environ={})
    assert cfg.presence.grace_s == 10.0
    assert isinstance(cfg.presence.grace_s, float)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[presence]\ngrace_s = nan\n", {}, "presence.grace_s: must be a finite number, got nan"),
        ("[calls]\nring_timeout_s = inf\n", {}, "calls.ring_timeout_s: must be a finite number"),
        (
            "",
            {"COMMANDCENTER_PRESENCE_HEARTBEAT_INTERVAL_S": "nan"},
            "presence.heartbeat_interval_s: must be a finite number, got nan",
        ),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    """Every bound compares false with NaN: without this check `nan` passes as positive."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ=env)


def test_missing_file_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match=re.escape("config.toml")):
        load_config(write(tmp_path, "[server\n"), environ={})


def test_environment_overrides_file_and_converts_types(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    cfg = load_config(
        path,
        environ={
            "COMMANDCENTER_SERVER_PORT": "9100",
            "COMMANDCENTER_SERVER_NODE_ID": "n1",
            "COMMANDCENTER_CALLS_FALLBACK_TO_PARENT": "false",
            "COMMANDCENTER_AUTH_ALGORITHMS": "HS256, ES256",
            "COMMANDCENTER_PRESENCE_GRACE_S": "12.5",
            "UNRELATED": "ignored",
        },
    )
    assert cfg.server.port == 9100
    assert cfg.server.node_id == "n1"
    assert cfg.calls.fallback_to_parent is False
    assert cfg.auth.algorithms == ("HS256", "ES256")
    assert cfg.presence.grace_s == 12.5


def test_environment_variable_naming_no_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"COMMANDCENTER_SERVER_PROT: no such setting"):
        load_config(None, environ={"COMMANDCENTER_SERVER_PROT": "1"})
    with pytest.raises(ConfigError, match=r"COMMANDCENTER_NOPE_PORT: no such setting"):
        load_config(None, environ={"COMMANDCENTER_NOPE_PORT": "1"})


def test_environment_value_of_wrong_type_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^server.port: expected an integer"):
        load_config(None, environ={"COMMANDCENTER_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 70000}, "server.port"),
        ({"port": -1}, "server.port"),
    ],
)
def test_invalid_server_values_are_rejected(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace_section(Config(), "server", **changes)


def test_other_invalid_values_are_rejected_naming_the_key() -> None:
    cfg = Config()
    cases: list[tuple[str, dict[str, typing.Any], str]] = [
        ("auth", {"algorithms": ("none",)}, "auth.algorithms"),
        ("auth", {"algorithms": ()}, "auth.algorithms"),
        ("auth", {"jwt_secret": "short"}, "auth.jwt_secret"),
        ("auth", {"leeway_s": -1.0}, "auth.leeway_s"),
        ("auth", {"max_ttl_s": 0}, "auth.max_ttl_s"),
        ("logging", {"format": "xml"}, "logging.format"),
        ("logging", {"level": "loud"}, "logging.level"),
        ("limits", {"max_frame_bytes": 0}, "limits.max_frame_bytes"),
        ("calls", {"max_queue": 0}, "calls.max_queue"),
        ("presence", {"grace_s": -1.0}, "presence.grace_s"),
        ("redis", {"url": "http://x"}, "redis.url"),
        ("redis", {"heartbeat_s": 0.0}, "redis.heartbeat_s"),
        ("redis", {"lease_ttl_s": -1.0}, "redis.lease_ttl_s"),
        ("redis", {"heartbeat_s": 5.0, "node_timeout_s": 5.0}, "redis.node_timeout_s"),
        # Several nodes write one trace; SQLite would give each its own.
        ("redis", {"url": "redis://127.0.0.1:6379/0"}, "recorder.backend"),
        ("feed", {"poll_s": 0.0}, "feed.poll_s"),
        ("feed", {"heartbeat_s": 3601.0}, "feed.heartbeat_s"),
        ("feed", {"send_timeout_s": -1.0}, "feed.send_timeout_s"),
        ("feed", {"page": 0}, "feed.page"),
        ("feed", {"page": 10001}, "feed.page"),
        ("feed", {"max_per_user": 0}, "feed.max_per_user"),
        ("feed", {"max_connections": 0}, "feed.max_connections"),
    ]
    for section, changes, key in cases:
        with pytest.raises(ConfigError, match=re.escape(key)):
            replace_section(cfg, section, **changes)


def test_a_long_enough_jwt_secret_is_accepted() -> None:
    cfg = replace_section(Config(), "auth", jwt_secret="x" * 32)
    assert cfg.auth.jwt_secret == "x" * 32


@pytest.mark.parametrize(
    ("courts", "message"),
    [
        ((), "at least one court"),
        ((CourtConfig("P", "p"), CourtConfig("P", "again")), "courts.P: duplicate"),
        ((CourtConfig("", "nameless"),), "empty code"),
        ((CourtConfig("P", "p"), CourtConfig("Q", "q")), "exactly one court"),
        ((CourtConfig("P", "p", "P"),), "exactly one court"),
        ((CourtConfig("P", "p"), CourtConfig("A", "a", "X")), "courts.A.parent: unknown court"),
        (
            (CourtConfig("P", "p"), CourtConfig("A", "a", "B"), CourtConfig("B", "b", "A")),
            "cycle",
        ),
        (
            (CourtConfig("P", "p", case_code="P01"),),
            "courts.P.case_code: 'P01' is not a court code",
        ),
        (
            (CourtConfig("P", "p", case_code="粤"), CourtConfig("A", "a", "P", "粤")),
            "courts.A.case_code: '粤' is court P's",
        ),
    ],
)
def test_court_hierarchy_errors(courts: tuple[CourtConfig, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(courts=courts)


def test_court_hierarchy_from_toml(tmp_path: Path) -> None:
    """A file's [[courts]] replace the default hierarchy entirely."""
    text = (
        '[[courts]]\ncode = "R"\nname = "Root"\n'
        '[[courts]]\ncode = "R1"\nname = "Child"\nparent = "R"\n'
    )
    cfg = load_config(write(tmp_path, text), environ={})
    assert cfg.courts == (CourtConfig("R", "Root"), CourtConfig("R1", "Child", "R"))


def test_court_without_code_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[[courts]]\nname = "Root"\n')
    with pytest.raises(ConfigError, match=re.escape("courts[0]")):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nport = "8080"\n', 'server.port: expected an integer, got "8080"'),
        ("[presence]\ngrace_s = true\n", "presence.grace_s: expected a number, got true"),
        ('[auth]\nalgorithms = ["HS256", 256]\n', "auth.algorithms[1]: expected a string, got 256"),
        ("courts = {code = 1}\n", "courts: expected a list, got {code = 1}"),
        ('[[courts]]\nname = "Root"\n', "courts[0].code: required"),
        ("[server]\nport = 80.0\n", "server.port: expected an integer, got 80.0"),
    ],
)
def test_type_error_names_the_key_the_value_and_the_type(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert str(caught.value) == message


def test_a_long_wrong_value_is_cut_short_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f'[server]\nport = "{"9" * 500}"\n'), environ={})
    assert len(str(caught.value)) < 100


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("1", True),
        ("false", False),
        ("no", False),
        ("off", False),
        (" 0 ", False),
    ],
)
def test_environment_booleans_accept_the_documented_words(word: str, value: bool) -> None:
    cfg = load_config(None, environ={"COMMANDCENTER_CALLS_ALLOW_COVERT_MONITORING": word})
    assert cfg.calls.allow_covert_monitoring is value
    cfg = load_config(None, environ={"COMMANDCENTER_CALLS_FALLBACK_TO_PARENT": word})
    assert cfg.calls.fallback_to_parent is value


def test_environment_value_error_names_the_key_the_value_and_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"COMMANDCENTER_CALLS_FALLBACK_TO_PARENT": "maybe"})
    assert str(caught.value) == (
        'calls.fallback_to_parent: expected true or false, got "maybe" '
        "(COMMANDCENTER_CALLS_FALLBACK_TO_PARENT)"
    )


def test_environment_lists_are_comma_separated_and_may_be_emptied() -> None:
    cfg = load_config(
        None,
        environ={
            "COMMANDCENTER_MEDIA_ICE_ADDRESSES": " 127.0.0.1, ,10.0.0.1 ",
            "COMMANDCENTER_MEDIA_STUN_URLS": "",
        },
    )
    assert cfg.media.ice_addresses == ("127.0.0.1", "10.0.0.1")
    assert cfg.media.stun_urls == ()


def test_environment_numbers_ignore_surrounding_blanks_and_strings_keep_them() -> None:
    cfg = load_config(
        None,
        environ={"COMMANDCENTER_SERVER_PORT": " 9000 ", "COMMANDCENTER_SERVER_NODE_ID": " n1"},
    )
    assert (cfg.server.port, cfg.server.node_id) == (9000, " n1")


def test_court_hierarchy_cannot_be_set_from_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"COMMANDCENTER_COURTS_CODE: no such setting \(set in"):
        load_config(None, environ={"COMMANDCENTER_COURTS_CODE": "X"})


def test_environment_overrides_still_pass_the_domain_checks() -> None:
    with pytest.raises(ConfigError, match=r"^server.port: 70000 is not a TCP port"):
        load_config(None, environ={"COMMANDCENTER_SERVER_PORT": "70000"})


def test_courts_are_built_positionally_and_compare_by_value() -> None:
    assert CourtConfig("P01", "First", "P") == CourtConfig(code="P01", name="First", parent="P")
    assert load_config(None, environ={}).courts[0] == CourtConfig(
        "P", "省高级人民法院", case_code="粤"
    )


def test_the_feed_section_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[feed]\npoll_s = 0.5\nmax_per_user = 3\n")
    cfg = load_config(
        path,
        environ={"COMMANDCENTER_FEED_MAX_PER_USER": "4", "COMMANDCENTER_FEED_PAGE": "100"},
    )
    assert (cfg.feed.poll_s, cfg.feed.max_per_user, cfg.feed.page) == (0.5, 4, 100)
    assert cfg.feed.max_connections == 64


# --- [audit] (issue 15) ---------------------------------------------------------------------


def test_the_checkpoint_key_defaults_beside_the_data_dir_never_inside_it(tmp_path: Path) -> None:
    from commandcenter.config import audit_key_path

    config = load_config(write(tmp_path, f'[server]\ndata_dir = "{tmp_path / "var"}"\n'), {})
    assert audit_key_path(config) == tmp_path / "var-audit" / "checkpoint_ed25519.pem"
    assert load_config(None, {}).audit.checkpoint_interval_s == 60.0
    # A trailing slash names the same directory.
    slashed = load_config(None, {"COMMANDCENTER_SERVER_DATA_DIR": f"{tmp_path}/var/"})
    assert audit_key_path(slashed) == tmp_path / "var-audit" / "checkpoint_ed25519.pem"


@pytest.mark.parametrize("key", ["checkpoint_key_file", "checkpoint_log"])
def test_a_key_or_checkpoint_log_inside_the_data_dir_is_refused(tmp_path: Path, key: str) -> None:
    text = f'[server]\ndata_dir = "{tmp_path / "var"}"\n[audit]\n{key} = "{tmp_path}/var/k.pem"\n'
    with pytest.raises(ConfigError, match=rf"audit.{key}: .* is inside server.data_dir"):
        load_config(write(tmp_path, text), {})
    # Next to it is fine, even with a name that starts alike.
    fine = text.replace("/var/k.pem", "/var-keys/k.pem")
    assert getattr(load_config(write(tmp_path, fine), {}).audit, key).endswith("var-keys/k.pem")


def test_audit_settings_come_from_the_environment_and_are_checked() -> None:
    env = {
        "COMMANDCENTER_AUDIT_CHECKPOINT_INTERVAL_S": "5",
        "COMMANDCENTER_AUDIT_TSA_URL": "http://tsa.example/stamp",
        "COMMANDCENTER_AUDIT_TSA_TIMEOUT_S": "2.5",
    }
    audit = load_config(None, env).audit
    assert (audit.checkpoint_interval_s, audit.tsa_url, audit.tsa_timeout_s) == (
        5.0,
        "http://tsa.example/stamp",
        2.5,
    )
    with pytest.raises(ConfigError, match=r"audit\.checkpoint_interval_s: must be above 0"):
        load_config(None, {"COMMANDCENTER_AUDIT_CHECKPOINT_INTERVAL_S": "0"})
    with pytest.raises(ConfigError, match=r"audit\.tsa_url: must start with http"):
        load_config(None, {"COMMANDCENTER_AUDIT_TSA_URL": "ftp://tsa"})
    with pytest.raises(ConfigError, match=r"audit.tsa_uri: unknown setting|no such setting"):
        load_config(None, {"COMMANDCENTER_AUDIT_TSA_URI": "http://x"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[media]\nconference_rollin_s = -1.0\n", "media.conference_rollin_s: must be 0 or more"),
        (
            "[media]\nconference_rollin_keyframe_s = 0.5\n",
            "media.conference_rollin_keyframe_s: must be 1 or more, got 0.5",
        ),
    ],
)
def test_a_conference_rollin_out_of_bounds_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})
    # Off is a setting, not an error.
    off = load_config(write(tmp_path, "[media]\nconference_rollin_s = 0.0\n"), environ={})
    assert off.media.conference_rollin_s == 0.0


def test_media_fanout_is_c_or_python() -> None:
    """The C fan-out by default; "python" from the file or the environment; anything else
    is an error naming the key and the value."""
    assert load_config(None, environ={}).media.fanout == "c"
    chosen = load_config(None, environ={"COMMANDCENTER_MEDIA_FANOUT": "python"})
    assert chosen.media.fanout == "python"
    with pytest.raises(ConfigError, match=r"^media.fanout: invalid enum value 'rust'"):
        load_config(None, environ={"COMMANDCENTER_MEDIA_FANOUT": "rust"})


def test_wall_caps_are_read_from_the_environment_and_bounded() -> None:
    cfg = load_config(None, {"COMMANDCENTER_WALL_TILES_16": "144, 10, 150"})
    assert cfg.wall.tiles_16 == (144, 10, 150)
    assert cfg.wall.tiles_4 == (540, 25, 1200)
    with pytest.raises(ConfigError, match=r"wall\.tiles_9: kbit/s must be 50 to 20000"):
        load_config(None, {"COMMANDCENTER_WALL_TILES_9": "360,15,10"})
