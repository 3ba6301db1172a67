"""Coverage of the lines a patch changed (the original's pg-gcov): what a
patch author checks before sending a patch to the list.

Pure: a zero-context unified diff (`git diff -U0`) and an lcov tracefile
in, a report out: per file and function, the changed lines that ran and
those that did not, and the functions the patch touched that never ran.
The side effects (lcov capture, git diff) are in in_container."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


def changed_lines(diff: str) -> dict[str, dict[int, str]]:
    """New-side path -> {line number: text} of every added or changed line."""
    found: dict[str, dict[int, str]] = {}
    path, line = None, 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            name = raw[4:].strip()
            path = None if name == "/dev/null" else name[2:] if name.startswith("b/") else name
            if path is not None:
                found.setdefault(path, {})
            continue
        if raw.startswith("--- "):
            continue
        hunk = HUNK.match(raw)
        if hunk:
            line = int(hunk.group(1))
            continue
        if path is None:
            continue
        if raw.startswith("+"):
            found[path][line] = raw[1:]
            line += 1
        elif raw.startswith(" "):
            line += 1
    return {p: lines for p, lines in found.items() if lines}


@dataclass
class Tracefile:
    """One source file of an lcov tracefile."""

    lines: dict[int, int] = field(default_factory=dict)        # line -> execution count
    functions: dict[str, int] = field(default_factory=dict)    # name -> first line
    function_hits: dict[str, int] = field(default_factory=dict)  # name -> calls


def parse_lcov(text: str) -> dict[str, Tracefile]:
    """SF:, DA:, FN:, FNDA: records (lcov 1.x and 2.x: FN may carry an end line)."""
    files: dict[str, Tracefile] = {}
    current = None
    for raw in text.splitlines():
        key, _, value = raw.partition(":")
        if key == "SF":
            current = files.setdefault(value, Tracefile())
        elif current is None:
            continue
        elif key == "DA":
            parts = value.split(",")
            number, count = int(parts[0]), int(float(parts[1]))
            current.lines[number] = current.lines.get(number, 0) + count
        elif key == "FN":
            parts = value.split(",")
            current.functions[parts[-1]] = int(parts[0])
        elif key == "FNDA":
            count, name = value.split(",", 1)
            current.function_hits[name] = current.function_hits.get(name, 0) + int(float(count))
        elif key == "end_of_record":
            current = None
    return files


@dataclass
class ChangedLine:
    number: int
    text: str
    count: int | None  # None: not code (a comment, a declaration)


@dataclass
class FunctionReport:
    name: str
    first_line: int
    calls: int
    covered: int
    uncovered: int


@dataclass
class FileReport:
    path: str
    lines: list[ChangedLine]
    functions: list[FunctionReport]

    @property
    def covered(self) -> int:
        return sum(1 for x in self.lines if x.count)

    @property
    def uncovered(self) -> list[ChangedLine]:
        return [x for x in self.lines if x.count == 0]


@dataclass
class Report:
    base: str
    files: list[FileReport]

    @property
    def covered(self) -> int:
        return sum(f.covered for f in self.files)

    @property
    def uncovered(self) -> int:
        return sum(len(f.uncovered) for f in self.files)

    @property
    def untested_functions(self) -> list[tuple[str, FunctionReport]]:
        return [(f.path, fn) for f in self.files for fn in f.functions if fn.calls == 0]


def tracefile_for(path: str, traces: dict[str, Tracefile]) -> Tracefile | None:
    """lcov names sources by absolute path; the diff by path in the repository."""
    for name, trace in traces.items():
        if name == path or name.endswith("/" + path):
            return trace
    return None


def function_of(line: int, functions: dict[str, int]) -> str | None:
    """The function a line falls in: the last one that starts at or before it."""
    before = [(start, name) for name, start in functions.items() if start <= line]
    return max(before)[1] if before else None


def build_report(base: str, diff: str, lcov: str) -> Report:
    traces = parse_lcov(lcov)
    files = []
    for path, lines in sorted(changed_lines(diff).items()):
        trace = tracefile_for(path, traces)
        if trace is None:
            continue  # not compiled with coverage: a header, a test script, docs
        changed = [ChangedLine(n, text, trace.lines.get(n)) for n, text in sorted(lines.items())]
        per_function: dict[str, FunctionReport] = {}
        for x in changed:
            name = function_of(x.number, trace.functions)
            if name is None or x.count is None:
                continue
            fn = per_function.setdefault(name, FunctionReport(name, trace.functions[name],
                                                              trace.function_hits.get(name, 0), 0, 0))
            if x.count:
                fn.covered += 1
            else:
                fn.uncovered += 1
        files.append(FileReport(path, changed, sorted(per_function.values(), key=lambda f: f.first_line)))
    return Report(base, files)


def text_summary(report: Report) -> str:
    out = [f"changed lines since {report.base}: {report.covered} ran, {report.uncovered} did not"]
    for f in report.files:
        code = [x for x in f.lines if x.count is not None]
        if not code:
            continue
        out.append(f"{f.path}: {f.covered}/{len(code)} changed lines ran")
        for fn in f.functions:
            mark = "NEVER CALLED" if fn.calls == 0 else f"{fn.calls} calls"
            out.append(f"  {fn.name} (line {fn.first_line}): {fn.covered} ran, {fn.uncovered} did not; {mark}")
        for x in f.uncovered:
            out.append(f"    {x.number:>6}  {x.text.rstrip()}")
    untested = report.untested_functions
    if untested:
        out.append("functions the patch touched that no test calls: "
                   + ", ".join(f"{fn.name} ({path})" for path, fn in untested))
    return "\n".join(out)


HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Changed-line coverage since {{ r.base }}</title>
<style>
body { font-family: sans-serif; margin: 2em; } code, pre { font-family: monospace; }
.ran { background: #e6ffe6; } .missed { background: #ffe0e0; } .none { color: #888; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; }
a.next { float: right; font-size: small; }
</style></head><body>
<h1>Coverage of the lines changed since <code>{{ r.base }}</code></h1>
<p>{{ r.covered }} changed lines ran, {{ r.uncovered }} did not.
{% if r.uncovered %}<a href="#missed-1">First line that did not run</a>{% endif %}</p>
{% if r.untested_functions %}<h2>Functions the patch touched that no test calls</h2><ul>
{% for path, fn in r.untested_functions %}<li><code>{{ fn.name }}</code> in {{ path }} (line {{ fn.first_line }})</li>
{% endfor %}</ul>{% endif %}
{% set ns = namespace(n=0) %}
{% for f in r.files %}<h2>{{ f.path }}</h2>
{% if f.functions %}<table><tr><th>function</th><th>calls</th><th>changed lines that ran</th><th>did not</th></tr>
{% for fn in f.functions %}<tr><td><code>{{ fn.name }}</code></td><td>{{ fn.calls }}</td><td>{{ fn.covered }}</td>
<td>{{ fn.uncovered }}</td></tr>{% endfor %}</table>{% endif %}
<pre>{% for x in f.lines %}{% if x.count == 0 %}{% set ns.n = ns.n + 1 %}<span class="missed" id="missed-{{ ns.n }}"><a class="next" href="#missed-{{ ns.n + 1 }}">next</a>{{ "%6d"|format(x.number) }}      0  {{ x.text }}</span>
{% elif x.count %}<span class="ran">{{ "%6d"|format(x.number) }} {{ "%6d"|format(x.count) }}  {{ x.text }}</span>
{% else %}<span class="none">{{ "%6d"|format(x.number) }}         {{ x.text }}</span>
{% endif %}{% endfor %}</pre>
{% endfor %}
</body></html>
"""


def html_page(report: Report) -> str:
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(HTML).render(r=report)
