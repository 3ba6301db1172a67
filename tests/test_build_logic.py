from atelier.engine.build import is_transient, retry_delays


def test_network_and_mirror_failures_are_transient():
    for line in ["Temporary failure resolving 'deb.debian.org'",
                 "E: Failed to fetch http://deb.debian.org/debian/pool/main/x.deb  Connection timed out",
                 "Hash Sum mismatch",
                 "Could not connect to deb.debian.org:80",
                 "curl: (6) Could not resolve host: download.postgresql.org",
                 "E: Some index files failed to download."]:
        assert is_transient(line), line


def test_dockerfile_and_package_errors_are_not():
    for line in ["E: Unable to locate package postgresql-13-pg-qualstats",
                 "Dockerfile parse error line 3: unknown instruction: RUNN",
                 "/bin/sh: 1: mkae: not found",
                 "The command '/bin/sh -c false' returned a non-zero code: 1"]:
        assert not is_transient(line), line


def test_delays_grow_and_are_capped():
    assert retry_delays(10) == [2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert retry_delays(1) == []


def test_a_failed_build_is_named_by_the_package_managers_own_error():
    from atelier.engine.build import failure_reason

    log = ("Step 5/12 : RUN apt-get update && apt-get install ...\nReading package lists...\n"
           "E: Release file for http://deb.debian.org/debian/dists/forky/InRelease is expired\n"
           "E: Release file for http://deb.debian.org/debian/dists/forky-updates/InRelease is expired\n"
           "The command '/bin/sh -c apt-get update' returned a non-zero code: 100")
    assert failure_reason(log).startswith("E: Release file for http://deb.debian.org/debian/dists/forky/")
    assert failure_reason("Error: Unable to find a match: liburing-devel\nThe command ... 1") == \
        "Error: Unable to find a match: liburing-devel"
    promtool = ("Checking /etc/prometheus/atelier-rules/postgresql-alerts.yml\n  FAILED:\n/etc/prometheus/atelier-rules/"
                "postgresql-alerts.yml: 21:15: group \"postgresql-alerts\", rule 3, \"ReplicationLag\": could not parse "
                "expression\nThe command '/bin/sh -c promtool check rules' returned a non-zero code: 1")
    assert '"ReplicationLag": could not parse expression' in failure_reason(promtool)
    assert failure_reason("step\nThe command x returned 2") == "The command x returned 2"
    assert failure_reason("") == "no output"


def test_debootstrap_gets_sids_script_for_a_release_newer_than_itself(tmp_path):
    from atelier.engine.build import debootstrap_script

    (tmp_path / "sid").write_text("")
    (tmp_path / "trixie").write_text("")
    assert debootstrap_script("trixie", tmp_path) == []
    assert debootstrap_script("forky", tmp_path) == [str(tmp_path / "sid")]
