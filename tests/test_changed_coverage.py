"""Coverage of the lines a patch changed: the diff and tracefile join, pure,
and which folders lcov captures (the shell snippet, run on a git tree here)."""

import subprocess

import pytest

from atelier.pg.changed_coverage import build_report, changed_lines, html_page, parse_lcov, text_summary
from atelier.core.errors import AtelierError
from atelier.pg.coverage import CAPTURE_CHANGED_FOLDERS, changed_range

DIFF = """diff --git a/src/backend/utils/adt/int.c b/src/backend/utils/adt/int.c
index 1111111..2222222 100644
--- a/src/backend/utils/adt/int.c
+++ b/src/backend/utils/adt/int.c
@@ -10,0 +11,5 @@ int4in(PG_FUNCTION_ARGS)
+int
+atelier_untested(int x)
+{
+	return x + 1;
+}
@@ -20 +25 @@ int4out(PG_FUNCTION_ARGS)
-	old();
+	result = pg_ltoa(arg1, buf);
diff --git a/doc/src/sgml/func.sgml b/doc/src/sgml/func.sgml
--- a/doc/src/sgml/func.sgml
+++ b/doc/src/sgml/func.sgml
@@ -1 +1 @@
-old
+new
diff --git a/src/backend/gone.c b/src/backend/gone.c
--- a/src/backend/gone.c
+++ /dev/null
@@ -1,2 +0,0 @@
-x
-y
"""

LCOV = """TN:
SF:/var/lib/postgresql/workspace/postgres/src/backend/utils/adt/int.c
FN:5,int4in
FN:11,15,atelier_untested
FN:20,int4out
FNDA:40,int4in
FNDA:0,atelier_untested
FNDA:7,int4out
DA:12,0
DA:14,0
DA:15,0
DA:25,7
end_of_record
"""


def test_the_diff_gives_each_added_line_by_its_new_number():
    lines = changed_lines(DIFF)
    assert set(lines) == {"src/backend/utils/adt/int.c", "doc/src/sgml/func.sgml"}
    assert sorted(lines["src/backend/utils/adt/int.c"]) == [11, 12, 13, 14, 15, 25]
    assert lines["src/backend/utils/adt/int.c"][12] == "atelier_untested(int x)"


def test_a_function_no_test_calls_is_uncovered_and_its_changed_lines_too():
    report = build_report("abc123", DIFF, LCOV)
    assert [f.path for f in report.files] == ["src/backend/utils/adt/int.c"]  # docs have no tracefile
    (int_c,) = report.files
    assert [x.number for x in int_c.uncovered] == [12, 14, 15] and int_c.covered == 1
    untested = {fn.name: fn for fn in int_c.functions}
    assert untested["atelier_untested"].calls == 0 and untested["atelier_untested"].uncovered == 3
    assert untested["int4out"].covered == 1
    assert [fn.name for _, fn in report.untested_functions] == ["atelier_untested"]
    summary = text_summary(report)
    assert "1 ran, 3 did not" in summary and "atelier_untested (line 11): 0 ran, 3 did not; NEVER CALLED" in summary
    page = html_page(report)
    assert 'id="missed-1"' in page and 'id="missed-3"' in page and "atelier_untested" in page


def test_html_escapes_source_text():
    diff = DIFF.replace("return x + 1;", "return x < 1 && \"<script>\";")
    assert "<script>" not in html_page(build_report("b", diff, LCOV))


def test_lcov_sums_counts_of_a_file_captured_twice():
    traces = parse_lcov(LCOV + LCOV)
    (trace,) = traces.values()
    assert trace.lines[25] == 14 and trace.function_hits["int4in"] == 80


@pytest.mark.parametrize("spec, base, head", [
    ("abc123", "'abc123^'", "abc123"),  # shell words: quoted where the shell would read them
    ("origin/master..HEAD", "origin/master", "HEAD"),
    ("v18.0..", "v18.0", "HEAD"),
])
def test_changed_names_a_commit_or_a_range(spec, base, head):
    assert changed_range(spec) == (base, head)


def test_the_default_is_the_merge_base_with_upstreams_main():
    base, head = changed_range(None)
    assert "git merge-base HEAD" in base and "origin/master" in base and head == "HEAD"
    assert changed_range("a...b")[0] == "$(git merge-base a b)"


@pytest.mark.parametrize("spec", ["--output=/tmp/x", "a;rm -rf ~", "$(id)", "a..b c"])
def test_a_bad_commit_is_one_line(spec):
    with pytest.raises(AtelierError, match="is not a commit or a range"):
        changed_range(spec)


def capture_words(tmp_path, changes: dict[str, str]) -> list[str]:
    """lcov's --directory words for a commit that writes `changes` over a base tree."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    tmp_path.mkdir(exist_ok=True)
    for name in ("src/backend/a.c", "src/include/b.h", "src/backend/parser/gram.y", "README"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("base\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=tmp_path, check=True)
    for name, text in changes.items():
        (tmp_path / name).write_text(text)
    subprocess.run([*git, "commit", "-qam", "patch", "--allow-empty"], cwd=tmp_path, check=True)
    script = "base=HEAD^\n" + CAPTURE_CHANGED_FOLDERS.format(head="HEAD") + '\nprintf "%s\\n" "$@"'
    return subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.split()


def test_changed_coverage_captures_the_folders_of_changed_sources_only(tmp_path):
    assert capture_words(tmp_path, {"src/backend/a.c": "new\n", "src/backend/parser/gram.y": "new\n",
                                    "README": "new\n"}) == [
        "--directory", "src/backend", "--directory", "src/backend/parser"]


def test_a_changed_header_or_no_source_captures_the_whole_tree(tmp_path):
    assert capture_words(tmp_path / "h", {"src/backend/a.c": "new\n", "src/include/b.h": "new\n"}) == [
        "--directory", "."]
    assert capture_words(tmp_path / "doc", {"README": "new\n"}) == ["--directory", "."]
