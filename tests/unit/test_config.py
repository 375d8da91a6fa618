"""Config: lookup order, environment overrides, validation, secrets kept out of output."""

from pathlib import Path

import pytest

from campaigns.config import load_settings
from campaigns.errors import ConfigError

K1 = "k1-current-secret-key-of-32-bytes-or-more"


def test_explicit_config_wins_over_env_and_cwd(tmp_path, monkeypatch):
    a = tmp_path / "a.toml"
    a.write_text('currency = "EUR"\n')
    b = tmp_path / "b.toml"
    b.write_text('currency = "GBP"\n')
    (tmp_path / "config.toml").write_text('currency = "JPY"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(a, environ={"CAMPAIGNS_CONFIG": str(b)}).currency == "EUR"
    assert load_settings(None, environ={"CAMPAIGNS_CONFIG": str(b)}).currency == "GBP"
    assert load_settings(None, environ={}).currency == "JPY"


def test_without_any_file_the_builtin_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, environ={})
    assert s.source == "built-in defaults"
    assert s.sending.transport == "file"


def test_the_database_file_is_campaigns_db_by_default_and_in_the_shipped_config(tmp_path, monkeypatch):
    """The module move renamed `campaigns.db` to `campaigns.store.db` in the default URL by mistake."""
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, environ={}).database_url == f"sqlite:///{tmp_path / 'campaigns.db'}"
    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    (tmp_path / "config.toml").write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_settings(tmp_path / "config.toml", environ={}).database_url == f"sqlite:///{tmp_path / 'campaigns.db'}"


def test_environment_overrides_file_values(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[smtp]\nport = 25\n[database]\nurl = "sqlite:///x.db"\n')
    s = load_settings(cfg, environ={"CAMPAIGNS_SMTP_PORT": "2525", "CAMPAIGNS_DATABASE_URL": "sqlite:///y.db",
                                    "CAMPAIGNS_SECRET_KEY": K1, "CAMPAIGNS_PREVIOUS_SECRET_KEYS": "k0,kminus"})
    assert s.smtp.port == 2525
    assert s.database_url == f"sqlite:///{tmp_path / 'y.db'}"
    assert s.signing_keys == [K1.encode(), b"k0", b"kminus"]


def test_relative_paths_are_anchored_at_the_config_folder(tmp_path):
    cfg = tmp_path / "sub" / "c.toml"
    cfg.parent.mkdir()
    cfg.write_text('templates_dir = "tpl"\n')
    s = load_settings(cfg, environ={})
    assert s.path(s.templates_dir) == tmp_path / "sub" / "tpl"
    assert s.database_url.endswith(str(tmp_path / "sub" / "campaigns.db"))


@pytest.mark.parametrize("text, env, expected", [
    ("[smtp]\nprot = 1\n", {}, "[smtp] prot: unknown setting"),
    ("[smtp]\nport = 'abc'\n", {}, "[smtp] port"),
    ("timezone = 'Mars/Base'\n", {}, "'Mars/Base' is not a known IANA time zone"),
    ("[policy]\nfrequency_cap = 'often'\n", {}, "[policy] frequency_cap"),
    ("", {"CAMPAIGNS_SMTP_PORT": "x"}, "CAMPAIGNS_SMTP_PORT"),
    ("", {"CAMPAIGNS_NOPE": "1"}, "CAMPAIGNS_NOPE: unknown setting"),
    ("", {"CAMPAIGNS_SMTP_NOPE": "1"}, "CAMPAIGNS_SMTP_NOPE: unknown setting [smtp] nope"),
    ("this is = = not toml", {}, "not valid TOML"),
])
def test_bad_keys_and_values_are_one_clear_error_naming_them(tmp_path, text, env, expected):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ=env)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="CAMPAIGNS_CONFIG"):
        load_settings(None, environ={"CAMPAIGNS_CONFIG": str(tmp_path / "nope.toml")})


def test_secrets_never_appear_in_repr_or_errors(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[database]\nurl = "postgresql://u:dbpass@h/db"\n')
    s = load_settings(cfg, environ={"CAMPAIGNS_SMTP_PASSWORD": "smtp-pass", "CAMPAIGNS_SECRET_KEY": "sekrit",
                                    "CAMPAIGNS_SMS_AUTH_TOKEN": "tok-123"})
    shown = repr(s) + str(s)
    for secret in ("smtp-pass", "sekrit", "tok-123", "dbpass"):
        assert secret not in shown
    assert s.smtp.password.get_secret_value() == "smtp-pass"
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={"CAMPAIGNS_SMTP_PORT": "sekrit-port"})
    assert "dbpass" not in str(err.value)


def test_config_show_masks_secrets(tmp_path, db_url):
    from tests.conftest import CliRunner, write_config

    cfg = write_config(tmp_path, db_url, extra='[smtp]\npassword = "very-secret-pw"\n')
    r = CliRunner(cfg)("config", "show", "--json")
    assert r.exit_code == 0, r.output
    assert "very-secret-pw" not in r.output and "test-secret-key" not in r.output
    assert '"password": "********"' in r.stdout


def test_missing_secret_key_says_how_to_make_one(tmp_path):
    s = load_settings(None, environ={"CAMPAIGNS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    s.base_dir = tmp_path
    with pytest.raises(ConfigError, match="campaigns init"):
        s.signing_key  # noqa: B018
    created = s.ensure_secret_key_file()
    assert created == Path(tmp_path / "secret.key") and oct(created.stat().st_mode & 0o777) == "0o600"
    assert len(s.signing_key) > 40


def _key_file_settings(tmp_path: Path, key: str = "first-key-of-at-least-32-bytes-long"):
    (tmp_path / "secret.key").write_text(key + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('secret_key_file = "secret.key"\n')
    return load_settings(cfg, environ={})


def test_the_key_file_is_read_once_per_process_and_again_only_on_reload(tmp_path):
    from campaigns.signing import sign

    s = _key_file_settings(tmp_path)
    before = sign(s, "click", "abc")
    (tmp_path / "secret.key").unlink()  # not looked at again: signing goes on with the key in hand
    assert sign(s, "click", "abc") == before and s.signing_key == b"first-key-of-at-least-32-bytes-long"
    (tmp_path / "secret.key").write_text("second-key-of-at-least-32-bytes-long\n")
    assert sign(s, "click", "abc") == before  # an edited file is not picked up mid-run
    s.reload_keys()
    assert s.signing_key == b"second-key-of-at-least-32-bytes-long" and sign(s, "click", "abc") != before
    (tmp_path / "secret.key").unlink()
    s.reload_keys()
    with pytest.raises(ConfigError, match="campaigns init"):
        s.signing_key  # noqa: B018


def test_rotation_through_the_key_file_keeps_old_links_valid_after_reload(tmp_path):
    from pydantic import SecretStr

    from campaigns.signing import sign, verify

    s = _key_file_settings(tmp_path, "old-key-of-at-least-32-bytes-long")
    old = sign(s, "unsubscribe", "42")
    (tmp_path / "secret.key").write_text("new-key-of-at-least-32-bytes-long\n")
    s.previous_secret_keys = [SecretStr("old-key-of-at-least-32-bytes-long")]
    s.reload_keys()
    new = sign(s, "unsubscribe", "42")
    assert new != old
    assert verify(s, "unsubscribe", "42", old) and verify(s, "unsubscribe", "42", new)
    assert s.signing_keys == [b"new-key-of-at-least-32-bytes-long", b"old-key-of-at-least-32-bytes-long"]


def test_changing_the_key_settings_drops_the_key_in_hand(tmp_path):
    from pydantic import SecretStr

    s = _key_file_settings(tmp_path, "file-key-of-at-least-32-bytes-long")
    assert s.signing_key == b"file-key-of-at-least-32-bytes-long"
    s.secret_key = SecretStr("inline-key-of-at-least-32-bytes-long")
    assert s.signing_key == b"inline-key-of-at-least-32-bytes-long"
    (tmp_path / "other.key").write_text("other-key-of-at-least-32-bytes-long\n")
    s.secret_key = SecretStr("")
    s.secret_key_file = "other.key"
    assert s.signing_key == b"other-key-of-at-least-32-bytes-long"
