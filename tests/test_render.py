import shutil
import subprocess
import tarfile
import io
import dataclasses

from atelier.core.model import Environment, select

import pytest
import yaml

from atelier.core.matrix import MAJORS, OSES
from atelier.render.archive import tar_bytes, write_tree
from atelier.render.compose import compose_yaml, render_all
from atelier.render.templates import build_context, dockerfile
from atelier.render.runtime import haproxy_cfg, pgbouncer_files, pgpass, roles_sql, runtime_files, squid_conf
from atelier.render.spec import container_spec


def test_every_image_of_the_matrix_renders(make_env):
    env = make_env("full")
    names = set()
    for image in env.images:
        text = dockerfile(image, env.settings)
        assert text.startswith(f"# {image.name}")
        assert f"FROM {image.parent}\n" in text
        assert "{{" not in text and "{%" not in text
        names.add(image.name)
    assert {f"atelier-{o}-pg{m}" for o in OSES for m in MAJORS} <= names


def first_step(text: str) -> str:
    """The first instruction after FROM, its continuation lines joined."""
    lines = [line for line in text.split("FROM ", 1)[1].splitlines()[1:] if line and not line.startswith("#")]
    return lines[0]


def test_images_of_one_parent_differ_from_their_first_step(make_env):
    """Images of one parent are built in parallel: an identical first step
    would be made once per build, and Docker's cache would find only one copy."""
    env = make_env("full")
    by_parent: dict[str, dict[str, str]] = {}
    for image in env.images:
        step = first_step(dockerfile(image, env.settings))
        assert step not in by_parent.setdefault(image.parent, {}), (image.name, by_parent[image.parent].get(step))
        by_parent[image.parent][step] = image.name
    assert len(by_parent["atelier-base:debian12"]) >= 4  # the services, and debian12's init


def test_rocky_uses_dnf_and_pgdg_rpms(make_env):
    env = make_env("full")
    text = dockerfile(env.container("rocky8-pg14-active").image, env.settings)
    assert "dnf install" in text and "apt-get" not in text
    assert "EL-8-$(uname -m)/pgdg-redhat-repo-latest" in text  # the machine's own architecture
    assert "module disable postgresql" in text
    nine = dockerfile(env.container("rocky9-pg17-active").image, env.settings)
    assert "module disable postgresql" in nine  # EL 9 carries postgresql:15 and :16 streams too
    assert "postgresql14-server" in text and "pg_hint_plan_14" in text
    assert "llvm-devel clang" in text and "libicu-devel" in text
    init = dockerfile(env.container("rocky9-init").image, env.settings)
    assert "--set-enabled crb" in init and "CMD [\"/usr/sbin/init\"]" in init


def test_ubuntu_and_debian_use_apt_with_sources_and_pgdg_only_when_needed(make_env):
    env = make_env("full")
    ubuntu_init = dockerfile(env.container("ubuntu24-init").image, env.settings)
    assert "Types: deb deb-src" in ubuntu_init
    debian_init = dockerfile(env.container("debian13-init").image, env.settings)
    assert "deb-src http://deb.debian.org/debian trixie main" in debian_init
    distro = dockerfile(env.container("ubuntu22-pg14-active").image, env.settings)
    assert "apt.postgresql.org" not in distro
    pgdg = dockerfile(env.container("ubuntu22-pg17-active").image, env.settings)
    assert "https://apt.postgresql.org/pub/repos/apt jammy-pgdg main" in pgdg
    assert "postgresql-17-pg-hint-plan" in pgdg and "pg_store_plans" in pgdg
    debian15 = dockerfile(env.container("debian12-pg15-active").image, env.settings)
    assert "postgresql-15-pg-qualstats" in debian15
    assert "apt-get build-dep -y postgresql-15" in debian15
    assert "create_main_cluster = false" in debian15


def test_unit_files_are_rendered_for_the_image(make_env):
    env = make_env("full")
    files = build_context(env.container("rocky9-pg16-active").image, env.settings)
    unit = files["postgres/etc/systemd/system/atelier-pg-setup.service"][0].decode()
    assert "Before=postgresql-16.service" in unit and "RequiredBy=postgresql-16.service" in unit
    assert not any(path.endswith(".j2") for path in files)
    assert files["postgres/usr/local/sbin/atelier-pg-setup"][1] == 0o755


def test_no_secret_enters_any_build_context(make_env):
    env = make_env("full")
    secrets = [env.settings.superuser_password.encode(), env.settings.replication_password.encode()]
    for image in env.images:
        for path, (content, _) in build_context(image, env.settings).items():
            assert not any(s in content for s in secrets), (image.name, path)
            assert b"PRIVATE KEY" not in content, (image.name, path)


def test_runtime_files_carry_identity_and_secrets_only_where_needed(make_env):
    env = make_env()
    active = runtime_files(env, env.container("debian12-pg15-active"))
    standby = runtime_files(env, env.container("debian12-pg15-standby"))
    assert active["etc/atelier/roles.sql"][1] == 0o600
    assert "etc/atelier/roles.sql" not in standby
    assert b"ATELIER_SLOT=debian12_pg15_standby" in standby["etc/atelier/atelier.env"][0]
    assert b"ATELIER_PROMPT=d12-p15-a" in active["etc/atelier/atelier.env"][0]
    assert "etc/haproxy/haproxy.cfg" in runtime_files(env, env.container("haproxy"))


def test_roles_sql_quotes_passwords(settings):
    from dataclasses import replace

    tricky = replace(settings, superuser_password="a'b;DROP", replication_password="x:y\\z")
    sql = roles_sql(tricky)
    assert "PASSWORD 'a''b;DROP';" in sql
    assert "experdba WITH LOGIN SUPERUSER" in sql and "repluser WITH LOGIN REPLICATION" in sql
    assert pgpass(tricky) == "*:*:*:repluser:x\\:y\\\\z\n*:*:*:experdba:a'b;DROP\n"


def test_haproxy_round_robins_over_the_selected_inits(make_env):
    cfg = haproxy_cfg(make_env(os="debian12,rocky8", pg="15"))
    assert "balance roundrobin" in cfg and "mode tcp" in cfg
    assert "server debian12-init 172.30.12.1:22 check" in cfg
    assert "server rocky8-init 172.30.8.1:22 check" in cfg
    assert "ubuntu22-init" not in cfg


def test_haproxy_routes_each_pair_by_what_its_members_say_they_are(make_env):
    env = make_env(os="debian12,debian13", pg="15")
    cfg = haproxy_cfg(env)
    pairs = {p.name: p for p in env.pairs}
    assert set(pairs) == {"debian12-pg15", "debian13-pg15"}
    rw, ro = cfg.split("listen debian12-pg15-rw")[1].split("listen debian12-pg15-ro")
    ro = ro.split("listen ")[0]
    assert f"bind :{pairs['debian12-pg15'].rw_port}\n" in rw and "option httpchk GET /primary" in rw
    assert f"bind :{pairs['debian12-pg15'].ro_port}\n" in ro and "option httpchk GET /replica" in ro
    assert "balance first" in rw and "balance first" not in ro
    for part in (rw, ro):
        assert "on-marked-down shutdown-sessions" in part
        assert "server debian12-pg15-active 172.30.12.15:5432 check port 8008" in part
        assert "server debian12-pg15-standby 172.30.12.45:5432 check port 8008" in part
    assert pairs["debian12-pg15"].rw_port != pairs["debian13-pg15"].rw_port
    # No pair without both roles: a develop profile routes nothing.
    assert make_env(profile="develop").pairs == []


def test_pgbouncer_names_each_pair_and_reaches_it_through_haproxy(settings):
    env = Environment(dataclasses.replace(settings, pgbouncer=True), select(), nofile_ceiling=20000)
    ini = pgbouncer_files(env)["etc/pgbouncer/pgbouncer.ini"][0].decode()
    pair = env.pairs[0]
    assert (f"debian12-pg15.experdb = host={env.service_address('haproxy')} port={pair.rw_port} dbname=experdb"
            in ini)
    # The container names stay, for whoever means that container.
    assert "debian12-pg15-active.experdb = host=172.30.12.15 port=5432 dbname=experdb" in ini


def test_ports_are_published_on_the_bind_address(make_env):
    env = make_env()
    spec = container_spec(env, env.container("haproxy"), 1)
    assert spec.bind == "127.0.0.1" and spec.ports == ((22, 8022),)
    doc = yaml.safe_load(compose_yaml(env))
    assert doc["services"]["haproxy"]["ports"] == ["127.0.0.1:8022:22"]
    assert doc["services"]["apache2"]["ports"] == ["127.0.0.1:8080:80"]


def test_systemd_runs_without_privileged_by_default(make_env):
    env = make_env()
    spec = container_spec(env, env.container("debian12-pg15-active"), 1)
    assert spec.privileged is False
    # cgroup v1: no SYS_ADMIN, the host's cgroup tree read-only.
    assert set(spec.cap_add) == {"SYS_PTRACE"}
    assert "/run" in spec.tmpfs and ("/sys/fs/cgroup", "/sys/fs/cgroup", "ro") in spec.binds
    # cgroup v2: a cgroup namespace of its own, never the host's tree read-write.
    v2 = container_spec(env, env.container("debian12-pg15-active"), 2)
    assert v2.cgroupns == "private" and not any(b[0] == "/sys/fs/cgroup" for b in v2.binds)
    assert "SYS_ADMIN" in v2.cap_add


def test_a_systemd_that_needs_cgroup_v2_gets_a_namespace_of_its_own_on_a_v1_host(make_env):
    env = make_env(os="debian14", pg="18")
    for cgroup_version in (1, 2):
        spec = container_spec(env, env.container("debian14-pg18-active"), cgroup_version)
        assert spec.cgroupns == "private" and "SYS_ADMIN" in spec.cap_add
        assert not any(b[0] == "/sys/fs/cgroup" for b in spec.binds)  # never the host's tree
    assert "atelier-init" in dockerfile(env.container("debian14-init").image, env.settings)


def test_config_hash_follows_what_matters(make_env):
    env = make_env()
    spec = container_spec(env, env.container("debian12-pg15-active"), 1)
    assert spec.config_hash("sha256:a") == spec.config_hash("sha256:a")
    assert spec.config_hash("sha256:a") != spec.config_hash("sha256:b")
    other = container_spec(make_env("full"), make_env("full").container("debian12-pg15-active"), 1)
    assert other.config_hash("sha256:a") == spec.config_hash("sha256:a")


def test_tar_is_deterministic(make_env):
    env = make_env()
    image = env.container("debian12-pg15-active").image
    a = tar_bytes(build_context(image, env.settings))
    b = tar_bytes(build_context(image, env.settings))
    assert a == b
    names = tarfile.open(fileobj=io.BytesIO(a)).getnames()
    assert "Dockerfile" in names and "postgres/usr/local/sbin/atelier-pg-setup" in names


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose")
@pytest.mark.parametrize("profile", ["default", "full", "develop", "pg16", "rocky9"])
def test_compose_file_is_accepted_by_docker_compose(make_env, tmp_path, profile):
    env = make_env(profile)
    write_tree(render_all(env), tmp_path)
    # Debian's docker-compose (1.29) predates the Compose Specification's
    # `cgroup` key (a cgroup namespace of the container's own: debian14, whose
    # systemd needs cgroup v2); compose v2 takes it. Checked apart, below.
    document = yaml.safe_load((tmp_path / "compose.yml").read_text())
    namespaced = {name for name, service in document["services"].items() if service.pop("cgroup", None)}
    assert namespaced == {c.name for c in env.containers if c.os == "debian14" and c.systemd}
    for name in namespaced:
        assert "SYS_ADMIN" in document["services"][name]["cap_add"]
        assert not any(v.startswith("/sys/fs/cgroup") for v in document["services"][name].get("volumes", []))
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(document))
    run = subprocess.run(["docker-compose", "-f", str(tmp_path / "compose.yml"), "config", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "images/atelier-debian12-pg15/Dockerfile").exists() or profile != "default"
    # secrets are left out of the review tree
    assert not list(tmp_path.rglob("roles.sql"))


def test_every_init_image_checks_that_sshd_applies_atelier_settings(make_env):
    env = make_env("full")
    for os_name in ("rocky8", "rocky9", "ubuntu22", "debian12"):
        text = dockerfile(env.container(f"{os_name}-init").image, env.settings)
        # Rocky 8's sshd has no Include: the settings must head sshd_config itself.
        assert "cat /etc/ssh/sshd_config.d/atelier.conf; echo; cat /etc/ssh/sshd_config; }" in text
        assert "sshd -T -h /tmp/atelier-check-key" in text and '"passwordauthentication no"' in text


def test_debian_images_take_security_fixes(make_env):
    env = make_env("debian")
    text = dockerfile(env.container("debian13-init").image, env.settings)
    assert '"deb http://deb.debian.org/debian-security trixie-security main"' in text


def test_squid_refuses_the_gateway_and_is_not_published_by_default(make_env):
    env = make_env()
    conf = squid_conf(env)
    assert conf.index("http_access deny gateway") < conf.index("http_access allow atelier")
    assert "acl gateway src 172.30.0.1\n" in conf and env.gateway == "172.30.0.1"
    assert env.container("squid").ports == ()


@pytest.mark.parametrize("os_name, major, include, bindir", [
    ("debian12", 15, "/usr/include/postgresql/15/server", "/usr/lib/postgresql/15/bin"),
    ("ubuntu24", 16, "/usr/include/postgresql/16/server", "/usr/lib/postgresql/16/bin"),
    ("rocky9", 18, "/usr/pgsql-18/include/server", "/usr/pgsql-18/bin"),
])
def test_vscode_configs_are_rendered_for_each_os_and_major(settings, os_name, major, include, bindir):
    import json

    from atelier.core.model import pg_image
    from atelier.render.templates import build_context

    context = build_context(pg_image(os_name, major), settings)
    read = lambda name: json.loads(context[f"postgres/etc/atelier/vscode/{name}"][0])  # noqa: E731
    editor, launch, cpp = read("settings.json"), read("launch.json"), read("c_cpp_properties.json")
    assert editor["atelier.postgres"] == f"{bindir}/postgres" and editor["atelier.psql"] == f"{bindir}/psql"
    assert editor["atelier.buildTree.postgres"].endswith("/workspace/postgres/src/backend/postgres")
    assert include in cpp["configurations"][0]["includePath"]
    build = pg_image(os_name, major).build
    single = next(e for e in launch["configurations"] if e["name"] == "postgres (launch)")["args"]
    assert single[:3] == ["--single", "-D", build.datadir]
    assert single[4] == f"config_file={build.confdir}/postgresql.conf"
    assert all(e["program"].startswith("${config:atelier.") for e in launch["configurations"])


def test_debian14_is_forky_by_name_and_snapshot_mirrors_are_opt_in(make_env, settings):
    import dataclasses

    from atelier.core.model import Environment, select

    env = make_env("debian")
    init = dockerfile(env.container("debian14-init").image, env.settings)
    assert '"deb http://deb.debian.org/debian forky main"' in init and "testing" not in init
    assert '"deb http://deb.debian.org/debian-security forky-security main"' in init
    assert "Check-Valid-Until" not in init
    pg = dockerfile(env.container("debian14-pg18-active").image, env.settings)
    assert "postgresql-18-pg-qualstats" in pg and "apt-get build-dep -y postgresql-18" in pg
    assert "apt.postgresql.org" not in pg  # forky's own archive, no PGDG
    snapshot = Environment(dataclasses.replace(settings, debian_snapshot=True), select("debian"), nofile_ceiling=20000)
    assert 'Acquire::Check-Valid-Until "false"' in dockerfile(snapshot.container("debian14-init").image,
                                                              snapshot.settings)
    assert "Check-Valid-Until" not in dockerfile(snapshot.container("debian12-init").image, snapshot.settings)


def test_images_generate_the_chosen_locales(make_env, settings):
    import dataclasses

    from atelier.core.model import Environment, select

    korean = dataclasses.replace(settings, locales=("C.UTF-8", "ko_KR.UTF-8", "ko_KR.EUC-KR"))
    env = Environment(korean, select("full"), nofile_ceiling=20000)
    for os_name in ("debian12", "ubuntu24", "rocky9"):
        text = dockerfile(env.container(f"{os_name}-init").image, korean)
        assert "localedef -i ko_KR -f UTF-8 ko_KR.UTF-8 && localedef -i ko_KR -f EUC-KR ko_KR.EUC-KR && true" in text
    assert "glibc-locale-source" in dockerfile(env.container("rocky8-init").image, korean)
    files = runtime_files(env, env.container("debian12-pg15-active"))
    assert b"ATELIER_TIMEZONE=UTC\n" in files["etc/atelier/atelier.env"][0]


def test_images_carry_the_originals_tools_and_check_the_configure_line(make_env):
    env = make_env("full")
    for os_name in ("debian12", "ubuntu22", "rocky8", "rocky9"):
        text = dockerfile(env.container(f"{os_name}-init").image, env.settings)
        assert all(tool in text for tool in ("htop", "ncdu", "cmake", "bash-completion")), os_name
    assert "btop" in dockerfile(env.container("debian12-init").image, env.settings)
    assert "pandoc" in dockerfile(env.container("ubuntu24-init").image, env.settings)
    for os_name in ("rocky8", "rocky9"):
        pg = dockerfile(env.container(f"{os_name}-pg18-active").image, env.settings)
        assert "numactl-devel" in pg and "systemtap-sdt-devel" in pg  # PGDG's 18: --with-libnuma, --enable-dtrace
        # PGDG builds 18 with io_uring on EL 9 only: EL 8 has no liburing-devel to install.
        assert ("liburing-devel" in pg) == (os_name == "rocky9")
    for name in ("debian12-pg15-active", "rocky9-pg18-active", "ubuntu24-pg16-active"):
        assert "&& atelier-check-configure" in dockerfile(env.container(name).image, env.settings)


def test_pgsentinels_settings_follow_the_preload_list(tmp_path):
    """atelier-pg-setup's block for the preloaded extensions' settings, run
    by bash as the setup runs it: pgsentinel's only where it is preloaded."""
    from helpers import ROOT

    script = (ROOT / "files/postgres/usr/local/sbin/atelier-pg-setup").read_text()
    start = script.index('case ",$PG_PRELOAD," in')
    block = script[start:script.index("\nesac\n", start) + len("\nesac\n")]
    for preload, expected in (("pg_stat_statements,pgsentinel,pg_store_plans",
                               ["pgsentinel.db_name = 'experdb'", "pgsentinel_ash.max_entries = 10000",
                                "pgsentinel_ash.track_idle_trans = on"]),
                              ("pg_stat_statements,pg_qualstats", [])):
        conf = tmp_path / "atelier.conf"
        conf.write_text("")
        subprocess.run(["bash", "-c", block], check=True,
                       env={"PG_PRELOAD": preload, "PG_CONFDIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert conf.read_text().splitlines() == expected


@pytest.mark.parametrize("driver", ["bridge", "overlay"])
def test_the_compose_network_is_the_one_up_makes(settings, driver, tmp_path):
    env = Environment(dataclasses.replace(settings, network_driver=driver), select("default"), nofile_ceiling=20000)
    network = yaml.safe_load(compose_yaml(env))["networks"][env.network]
    assert network["driver"] == driver and network["labels"] == {"atelier.project": env.project}
    pool = network["ipam"]["config"][0]
    assert pool["subnet"] == f"{settings.subnet}.0.0/16" and pool["gateway"] == f"{settings.subnet}.0.1"
    if driver == "overlay":
        assert network["attachable"] is True and pool["ip_range"] == f"{settings.subnet}.254.0/24"
    else:
        assert "attachable" not in network and "ip_range" not in pool
    if shutil.which("docker-compose"):
        (tmp_path / "compose.yml").write_text(compose_yaml(env))
        run = subprocess.run(["docker-compose", "-f", str(tmp_path / "compose.yml"), "config", "-q"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def test_postgresql_19_on_debian14_comes_from_experimental_only_when_asked(settings):
    plain = Environment(settings, select("upgrade"))
    pgdg = dockerfile(plain.container("debian14-pg19-active").image, plain.settings)
    assert "https://apt.postgresql.org/pub/repos/apt forky-pgdg main" in pgdg and "experimental" not in pgdg
    asked = dataclasses.replace(settings, debian_experimental=True)
    env = Environment(asked, select("upgrade"))
    text = dockerfile(env.container("debian14-pg19-active").image, asked)
    assert "deb-src http://deb.debian.org/debian experimental main" in text and "apt.postgresql.org" not in text
    # Only 19's own packages and the libpq they need come from experimental;
    # forky's own 18 comes along for pg_upgrade.
    assert "libpq5/experimental libpq-dev/experimental postgresql-client-19/experimental postgresql-18 " in text
    assert "-t experimental" not in text
    # 18's server is for pg_upgrade: its cluster is the 18 container's, on the shared volume.
    assert "systemctl mask postgresql@18-main.service" in text
    assert "postgresql-19-pg-hint-plan" in text and "postgresql-19-pg-qualstats" not in text
    assert "pgsentinel v1.4.0 builds on PostgreSQL 14, 15, 16, 17, 18, not 19" in text
    # 18 stays forky's own, whatever the setting.
    assert dockerfile(env.container("debian14-pg18-active").image, asked) == \
        dockerfile(plain.container("debian14-pg18-active").image, settings)


def test_build_says_where_postgresql_19_comes_from(settings):
    from atelier.core.matrix import PgBuild
    line = PgBuild(OSES["debian14"], 19).source_line
    assert line == ("debian14/pg19: PostgreSQL 19 from PGDG (apt.postgresql.org); ATELIER_DEBIAN_EXPERIMENTAL=1 "
                    "takes it from Debian's experimental instead, beside forky's own 18")
    assert PgBuild(OSES["debian14"], 19, True).source_line == \
        "debian14/pg19: PostgreSQL 19 from Debian's experimental (a release candidate)"
    assert PgBuild(OSES["rocky9"], 19, True).source == "pgdg"  # the setting is Debian's alone
    assert PgBuild(OSES["debian14"], 18, True).upgrade_from == ()
    assert PgBuild(OSES["rocky9"], 19).packages[-3:-2] == ["postgresql18-server"]


def test_the_control_path_leaves_room_for_the_temporary_name_ssh_binds_first():
    from pathlib import Path

    from atelier.render.ssh_config import control_path

    fits = Path("/s" + "x" * 44)  # 46 bytes: + /cm- + 40 + . + 16 random = 107
    assert control_path(fits) == f"{fits}/cm-%C"
    longer = Path("/tmp/pytest-of-root/pytest-83/swarm0/ateliertest-swarm")  # 55: a real failure
    assert control_path(longer).startswith("/tmp/atelier-")
    assert len(control_path(longer).replace("%C", "c" * 40)) + 17 <= 107
