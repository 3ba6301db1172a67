"""Plain-text tables, the one way atelier prints them."""

from __future__ import annotations


def format_table(headers, rows, right=()) -> str:
    """Columns two spaces apart, as wide as their widest cell; the columns
    named in `right` are right-aligned (numbers)."""
    table = [tuple(str(h) for h in headers)] + [tuple(str(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.rjust(w) if headers[i] in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
