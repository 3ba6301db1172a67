from atelier.build import is_transient, retry_delays


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
