import os
import stat

import pytest

from atelier.core.errors import AtelierError
from atelier.core.settings import load_settings


def load(tmp_path, dotenv="", **environ):
    (tmp_path / ".env").write_text(dotenv)
    environ.setdefault("ATELIER_STATE_DIR", str(tmp_path / "state"))
    return load_settings(root=tmp_path, environ=environ)


def test_defaults_are_the_originals_and_local_only(tmp_path):
    s = load(tmp_path)
    # squid's port is published only when asked for.
    assert (s.project, s.subnet, s.ssh_port, s.http_port, s.squid_port) == ("atelier", "172.30", 8022, 8080, None)
    assert s.bind_address == "127.0.0.1"
    assert s.privileged is False
    assert s.subnet_cidr == "172.30.0.0/16"
    assert s.base_images["debian12"] == "debootstrap"
    assert s.base_images["rocky9"] == "rockylinux/rockylinux:9"


def test_environment_overrides_dotenv(tmp_path):
    s = load(tmp_path, "ATELIER_SSH_PORT=9022\nATELIER_SUBNET=10.9\n", ATELIER_SSH_PORT="7022")
    assert s.ssh_port == 7022
    assert s.subnet == "10.9"


def test_passwords_generated_once_kept_private_and_stable(tmp_path):
    first = load(tmp_path)
    second = load(tmp_path)
    assert first.superuser_password and first.replication_password
    assert first.superuser_password != first.replication_password
    assert (second.superuser_password, second.replication_password) == \
        (first.superuser_password, first.replication_password)
    state = tmp_path / "state" / "secrets.env"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


def test_given_password_wins_and_is_not_written(tmp_path):
    s = load(tmp_path, ATELIER_SUPERUSER_PASSWORD="it's:secret")
    assert s.superuser_password == "it's:secret"
    assert "it's:secret" not in (tmp_path / "state" / "secrets.env").read_text()


@pytest.mark.parametrize("key,value,message", [
    ("ATELIER_SUBNET", "300.1", "ATELIER_SUBNET=300.1 is not two octets 0-255"),
    ("ATELIER_SUBNET", "172.30.1", "not two octets"),
    ("ATELIER_SUBNET", "abc", "not two octets"),
    ("ATELIER_SSH_PORT", "70000", "ATELIER_SSH_PORT=70000 is not a whole number from 1 to 65535"),
    ("ATELIER_SSH_PORT", "ssh", "is not a whole number"),
    ("ATELIER_HTTP_PORT", "8022", "must differ"),
    ("ATELIER_BIND_ADDRESS", "localhost:1", "is not an IP address"),
    ("ATELIER_PRIVILEGED", "maybe", "valid: 1, 0, true, false"),
    ("ATELIER_PROJECT", "My Project", "is not a valid name"),
    ("ATELIER_BASE_ROCKY8", "debootstrap", "cannot make a Rocky base"),
])
def test_invalid_values_are_refused_in_one_line(tmp_path, key, value, message):
    with pytest.raises(AtelierError) as err:
        load(tmp_path, **{key: value})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_privileged_words(tmp_path):
    assert load(tmp_path, ATELIER_PRIVILEGED="yes").privileged is True
    assert load(tmp_path, ATELIER_PRIVILEGED="off").privileged is False


def test_mirrors_must_be_plain_urls(tmp_path):
    with pytest.raises(AtelierError, match=r"^ATELIER_DEBIAN_MIRROR=.* is not a plain URL; valid: "):
        load(tmp_path, ATELIER_DEBIAN_MIRROR='http://x/debian" \nRUN touch /x')
    assert load(tmp_path, ATELIER_UBUNTU_MIRROR="http://mirror.local:8080/ubuntu/").ubuntu_mirror == \
        "http://mirror.local:8080/ubuntu"


def test_passwords_are_one_printable_line_and_dotenv_does_not_expand(tmp_path):
    with pytest.raises(AtelierError, match="^ATELIER_SUDO_PASSWORD holds a newline"):
        load(tmp_path, ATELIER_SUDO_PASSWORD="a\nb")
    s = load(tmp_path, "ATELIER_SUPERUSER_PASSWORD='pa${HOME}ss'\n")
    assert s.superuser_password == "pa${HOME}ss"


def test_generated_passwords_are_kept_private_and_stable(tmp_path):
    first = load(tmp_path)
    again = load(tmp_path)
    assert first.replication_password == again.replication_password
    assert (tmp_path / "state" / "secrets.env").stat().st_mode & 0o777 == 0o600


def test_locales_timezone_and_the_initdb_locale(tmp_path):
    from atelier.core.settings import parse_settings

    default = parse_settings({}, tmp_path)
    assert default.locales == ("C.UTF-8", "en_US.UTF-8") and default.initdb_locale == "C.UTF-8"
    assert default.timezone == "UTC"
    korean = parse_settings({"ATELIER_LOCALES": "ko_KR.UTF-8, ko_KR.EUC-KR en_US.UTF-8",
                             "ATELIER_INITDB_LOCALE": "ko_KR.UTF-8", "ATELIER_TIMEZONE": "Asia/Seoul"}, tmp_path)
    assert korean.locales == ("C.UTF-8", "ko_KR.UTF-8", "ko_KR.EUC-KR", "en_US.UTF-8")
    assert (korean.initdb_locale, korean.timezone) == ("ko_KR.UTF-8", "Asia/Seoul")


@pytest.mark.parametrize("env, message", [
    ({"ATELIER_LOCALES": "korean"}, "ATELIER_LOCALES: 'korean' is not a locale"),
    ({"ATELIER_LOCALES": "ko_KR.UTF-8; rm -rf /"}, "is not a locale"),
    ({"ATELIER_INITDB_LOCALE": "ko_KR.UTF-8"}, "not among ATELIER_LOCALES; valid: C.UTF-8, en_US.UTF-8"),
    ({"ATELIER_TIMEZONE": "../../etc/passwd"}, "is not a time zone name"),
    ({"ATELIER_TIMEZONE": "Asia/Seoul'"}, "is not a time zone name"),
])
def test_bad_locale_or_timezone_is_one_line(env, message, tmp_path):
    from atelier.core.settings import parse_settings

    with pytest.raises(AtelierError, match=message):
        parse_settings(env, tmp_path)


def test_the_workspace_git_identity_comes_from_the_host_unless_given(tmp_path, monkeypatch):
    from atelier.core import settings as settings_module
    from atelier.core.model import Environment, select
    from atelier.render.runtime import runtime_files

    monkeypatch.setattr(settings_module, "host_git_identity", lambda: ("Host Dev", "host@example.org"))
    found = load_settings(root=tmp_path, environ={"ATELIER_STATE_DIR": str(tmp_path / "s")})
    assert found.git_identity == ("Host Dev", "host@example.org")
    given = load_settings(root=tmp_path, environ={"ATELIER_STATE_DIR": str(tmp_path / "s"),
                                                  "ATELIER_GIT_NAME": "Me", "ATELIER_GIT_EMAIL": "me@x"})
    assert given.git_identity == ("Me", "me@x")
    env = Environment(given, select(), nofile_ceiling=20000)
    assert runtime_files(env, env.container("debian12-pg15-active"))["etc/atelier/git-identity"][0] == b"Me\nme@x\n"
