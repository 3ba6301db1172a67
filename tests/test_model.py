import pytest

from atelier.core.errors import AtelierError
from atelier.core.matrix import MAJORS, OSES, PgBuild
from atelier.core.model import PROFILES, select


def test_address_plan_is_the_originals(make_env):
    env = make_env("full")
    by_name = {c.name: c for c in env.containers}
    assert by_name["rocky8-init"].address == "172.30.8.1"
    assert by_name["rocky8-pg14-active"].address == "172.30.8.14"
    assert by_name["rocky8-pg14-standby"].address == "172.30.8.44"
    assert by_name["rocky8-pg14-standalone"].address == "172.30.8.74"
    assert by_name["ubuntu24-pg18-standalone"].address == "172.30.24.78"
    assert by_name["debian12-pg15-active"].address == "172.30.12.15"
    assert by_name["debian13-pg17-standby"].address == "172.30.13.47"
    assert by_name["haproxy"].address == "172.30.200.1"
    assert by_name["apache2"].address == "172.30.200.2"
    assert by_name["squid"].address == "172.30.200.3"
    addresses = [c.address for c in env.containers]
    assert len(addresses) == len(set(addresses))


def test_full_profile_is_every_os_major_and_role(make_env):
    env = make_env("full")
    assert len(env.containers) == 3 + len(OSES) + len(OSES) * len(MAJORS) * 3
    assert len(env.images) == 3 + len(OSES) + len(OSES) * len(MAJORS)


def test_develop_is_standalone_only(make_env):
    roles = {c.role for c in make_env("develop").containers}
    assert roles == {"haproxy", "apache2", "squid", "init", "standalone"}


def test_default_profile_builds_offline(make_env):
    env = make_env()
    assert [c.name for c in env.containers] == [
        "haproxy", "apache2", "squid", "debian12-init",
        "debian12-pg15-active", "debian12-pg15-standalone", "debian12-pg15-standby"]
    assert all(i.os == "debian12" for i in env.images)
    assert PgBuild(OSES["debian12"], 15).source == "distro"


def test_pg_alone_is_that_major_everywhere_os_alone_every_major_both_intersect():
    assert select(pg="14").groups == tuple((o, 14) for o in OSES)
    assert select(os="rocky9").groups == tuple(("rocky9", m) for m in MAJORS)
    assert select(os="ubuntu22", pg="16").groups == (("ubuntu22", 16),)
    assert select(os="debian13,debian12", pg="17,15").groups == (
        ("debian12", 15), ("debian12", 17), ("debian13", 15), ("debian13", 17))


def test_profiles_exist_for_every_major_and_os():
    for name in [f"pg{m}" for m in MAJORS] + list(OSES) + ["full", "develop", "default", "debian", "distro"]:
        assert name in PROFILES


def test_debian_and_distro_profiles_need_no_pgdg(make_env):
    env = make_env("debian")
    assert [c.name for c in env.containers if c.role == "init"] == ["debian12-init", "debian13-init", "debian14-init"]
    assert {(c.os, c.major) for c in env.servers} == {("debian12", 15), ("debian13", 17), ("debian14", 18)}
    assert all(i.build.source == "distro" for i in env.images if i.build)
    assert set(PROFILES["distro"].groups) == {("debian12", 15), ("debian13", 17), ("debian14", 18), ("ubuntu22", 14),
                                              ("ubuntu24", 16)}


def test_debian14_is_forky_pinned_by_name_with_postgresql_18_from_its_archive(make_env):
    forky = OSES["debian14"]
    assert (forky.codename, forky.octet, forky.prompt, forky.default_base) == ("forky", 14, "d14", "debootstrap")
    assert PgBuild(forky, 18).source == "distro" and PgBuild(forky, 17).source == "pgdg"
    env = make_env(os="debian14", pg="18")
    assert env.container("debian14-pg18-active").address == "172.30.14.18"
    assert env.container("debian14-pg18-standby").address == "172.30.14.48"


def test_selection_args_select_it_again():
    for sel in (select(os="debian12", pg="15,16"), PROFILES["pg14"], select(pg="17")):
        again = select(**dict(zip(("profile", "os", "pg"), _args(sel.args))))
        assert again.groups == sel.groups


def _args(text):
    words = text.split()
    values = dict(zip(words[::2], words[1::2]))
    return values.get("--profile"), values.get("--os"), values.get("--pg")


@pytest.mark.parametrize("kwargs,message", [
    ({"pg": "13"}, "unknown PostgreSQL major '13'"),
    ({"pg": "fifteen"}, "unknown PostgreSQL major 'fifteen'"),
    ({"os": "centos7"}, "unknown OS 'centos7'; valid: rocky8, rocky9, ubuntu22, ubuntu24, debian12, debian13, debian14"),
    ({"profile": "fulll"}, "did you mean full"),
    ({"profile": "pg15", "os": "rocky8"}, "not both"),
])
def test_bad_selection_is_one_line_with_choices(kwargs, message):
    with pytest.raises(AtelierError) as err:
        select(**kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_aliases_point_to_own_group_and_same_role_elsewhere(make_env):
    env = make_env("full")
    hosts = dict(env.container("ubuntu22-pg16-standby").hosts)
    assert hosts["init"] == "172.30.22.1"
    assert hosts["active"] == "172.30.22.16"
    assert hosts["standby"] == "172.30.22.46"
    assert hosts["standalone"] == "172.30.22.76"
    assert hosts["rocky8"] == "172.30.8.46"
    assert hosts["debian13"] == "172.30.13.46"
    assert "ubuntu22" not in hosts
    assert hosts["host"] == hosts["host.docker.internal"] == "host-gateway"


def test_aliases_do_not_depend_on_the_selection(make_env):
    """Switching profile must not recreate a server just because of its hosts."""
    assert make_env("full").container("debian12-pg15-active").hosts == \
        make_env().container("debian12-pg15-active").hosts


def test_engine_names_are_scoped_by_project(make_env):
    env = make_env()
    c = env.container("debian12-pg15-standby")
    assert env.docker_name(c) == "atelier-debian12-pg15-standby"
    assert env.volume_name(c, "workspace") == "atelier-debian12-pg15-standby-workspace"
    assert env.network == "atelier"
    assert env.labels(c)["atelier.project"] == "atelier"
    assert env.replication_slot(c) == "debian12_pg15_standby"


def test_server_volumes_keep_data_workspace_and_editor_state(make_env):
    c = make_env().container("debian12-pg15-active")
    assert dict(c.volumes) == {"pgdata": "/var/lib/postgresql/pgdata",
                               "workspace": "/var/lib/postgresql/workspace",
                               "vscode-server": "/var/lib/postgresql/.vscode-server"}
    rocky = make_env("full").container("rocky8-pg14-active")
    assert dict(rocky.volumes)["workspace"] == "/var/lib/pgsql/workspace"
    assert rocky.image.build.datadir == "/var/lib/pgsql/14/data"


def test_every_major_of_one_os_and_role_shares_one_data_volume(make_env):
    env = make_env("upgrade")
    old, new, standby = (env.container(f"debian14-pg{m}-{r}") for m, r in ((18, "active"), (19, "active"),
                                                                           (19, "standby")))
    assert env.volume_name(old, "pgdata") == env.volume_name(new, "pgdata") == "atelier-debian14-active-pgdata"
    assert env.volume_name(standby, "pgdata") == "atelier-debian14-standby-pgdata"
    assert env.volume_name(new, "workspace") == "atelier-debian14-pg19-active-workspace"
    assert env.legacy_data_volume(old) == "atelier-debian14-pg18-active-data"
    assert new.image.build.datadir == "/var/lib/postgresql/19/main"


def test_ulimits_are_clamped_to_the_host(make_env):
    assert make_env(nofile=20000).ulimits == {"nofile": (20000, 20000), "core": (-1, -1)}
    assert make_env(nofile=2 ** 21).ulimits["nofile"] == (65536, 1048576)


def test_where_each_os_gets_each_major():
    assert PgBuild(OSES["debian13"], 17).source == "distro"
    assert PgBuild(OSES["debian12"], 16).source == "pgdg"
    assert PgBuild(OSES["ubuntu22"], 14).source == "distro"
    assert PgBuild(OSES["ubuntu24"], 16).source == "distro"
    assert PgBuild(OSES["rocky9"], 16).source == "pgdg"


def test_service_names_and_paths_per_family():
    rocky, debian = PgBuild(OSES["rocky8"], 14), PgBuild(OSES["debian12"], 15)
    assert rocky.service == "postgresql-14"
    assert rocky.bindir == "/usr/pgsql-14/bin"
    assert rocky.datadir == rocky.confdir == "/var/lib/pgsql/14/data"
    assert debian.service == "postgresql@15-main"
    assert debian.bindir == "/usr/lib/postgresql/15/bin"
    assert debian.datadir == "/var/lib/postgresql/15/main"
    assert debian.confdir == "/etc/postgresql/15/main"
    assert rocky.socket_dir == debian.socket_dir == "/var/run/postgresql"  # both packagings' patch


def test_prompt_is_the_originals(make_env):
    env = make_env("full")
    assert env.container("rocky8-pg14-active").prompt == "r08-p14-a"
    assert env.container("ubuntu22-pg15-standby").prompt == "u22-p15-s"
    assert env.container("rocky9-pg16-standalone").prompt == "r09-p16-#"


def test_the_originals_default_mix_ships_as_a_profile():
    assert PROFILES["original"].groups == (("rocky8", 17), ("rocky9", 18), ("ubuntu22", 15), ("ubuntu24", 16))
    assert select("orig").profile == "original"


def test_a_users_own_profile_is_selected_like_a_built_in_one(settings, tmp_path):
    from pathlib import Path

    from atelier.core.model import Environment
    from atelier.core.settings import parse_settings

    mine = parse_settings({"ATELIER_PROFILE_MIX": "rocky8:17, ubuntu22:15,rocky8:17",
                           "ATELIER_PROFILE_TWO_DEBIANS": "debian12:15,debian14:18"}, Path(tmp_path)).profiles
    assert mine == {"mix": (("rocky8", 17), ("ubuntu22", 15)),
                    "two-debians": (("debian12", 15), ("debian14", 18))}
    chosen = select("mix", user_profiles=mine)
    assert chosen.groups == (("rocky8", 17), ("ubuntu22", 15)) and chosen.args == "--profile mix"
    env = Environment(settings, select("two", user_profiles=mine), nofile_ceiling=20000)
    assert {(c.os, c.major) for c in env.servers} == {("debian12", 15), ("debian14", 18)}
    with pytest.raises(AtelierError, match="valid: .*mix"):
        select("nosuch", user_profiles=mine)
    with pytest.raises(AtelierError, match="built-in profile"):
        select("full", user_profiles={"full": (("debian12", 15),)})


@pytest.mark.parametrize("value, message", [
    ("rocky8", "'rocky8' is not OS:major"),
    ("centos7:15", "unknown OS 'centos7'; valid: rocky8"),
    ("debian12:13", "unknown PostgreSQL major '13'; valid: 14, 15, 16, 17, 18, 19"),
    ("", "is empty"),
])
def test_a_bad_user_profile_is_one_line(value, message, tmp_path):
    from pathlib import Path

    from atelier.core.settings import parse_settings

    with pytest.raises(AtelierError, match=message) as caught:
        parse_settings({"ATELIER_PROFILE_MIX": value}, Path(tmp_path))
    assert str(caught.value).startswith("ATELIER_PROFILE_MIX") and "\n" not in str(caught.value)


def test_experdb_gets_every_extension_the_image_carries_by_its_sql_name():
    debian = PgBuild(OSES["debian12"], 15).sql_extensions
    assert debian[:2] == ["pg_stat_statements", "plpython3u"]
    assert "pldbgapi" in debian and "pldebugger" not in debian and "hypopg" in debian
    pgdg17 = PgBuild(OSES["rocky9"], 17)
    assert {"pg_hint_plan", "pg_show_plans", "pg_store_plans", "pgsentinel", "pg_ensure_queryid"} <= \
        set(pgdg17.sql_extensions)
    assert "pg_ensure_queryid" in pgdg17.preload_libraries  # its _PG_init works only from there, as the original had it
    # Two of the git extensions do not compile on 18: left out, and said why.
    pgdg18 = PgBuild(OSES["rocky9"], 18)
    assert {"pg_hint_plan", "pg_show_plans", "pgsentinel"} <= set(pgdg18.sql_extensions)
    assert not {"pg_store_plans", "pg_ensure_queryid"} & set(pgdg18.sql_extensions + pgdg18.preload_libraries)
    assert [e.skip_reason(18) for e in pgdg18.skipped_extensions] == [
        "pg_store_plans 443ff6d builds on PostgreSQL 14, 15, 16, 17, not 18",
        "pg_ensure_queryid 1.0.0 builds on PostgreSQL 14, 15, 16, 17, not 18"]
    # Ubuntu's own majors get the archive's extension packages, as Debian's do.
    for os_name, major in (("ubuntu22", 14), ("ubuntu24", 16)):
        assert "pg_qualstats" in PgBuild(OSES[os_name], major).preload_libraries


def test_a_major_past_its_end_of_life_is_named_in_one_line_and_only_then():
    from datetime import date

    from atelier.core.matrix import END_OF_LIFE, MAJORS, end_of_life_line

    assert set(END_OF_LIFE) == set(MAJORS)
    assert END_OF_LIFE[14] == date(2026, 11, 12)  # the date, and the policy's
    assert end_of_life_line([15, 17, 18], date(2026, 12, 2)) == ""
    assert end_of_life_line([14, 15], date(2026, 11, 11)) == ""
    assert end_of_life_line([18, 14, 14], date(2026, 12, 2)) == (
        "past end of life: PostgreSQL 14 (last release 2026-11-12): no more fixes from the PostgreSQL project; "
        "it runs as before, and `inv db.logical` rehearses the move to a newer major")
    both = end_of_life_line([14, 15], date(2027, 11, 11))
    assert "PostgreSQL 14 (last release 2026-11-12), PostgreSQL 15 (last release 2027-11-11)" in both
    assert "they run as before" in both and "\n" not in both
