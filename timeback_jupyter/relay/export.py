"""The overview's CSV: the table's header and rows, safe to open in a spreadsheet.

Student names come from hub accounts and activity names from a catalog (and, for an activity
not in it, from a student's own event), so a cell may begin with what a spreadsheet reads as a
formula. Such a cell is prefixed with a single quote, as OWASP's "CSV Injection" page advises;
the csv module quotes separators and quotes. No number in this table is ever negative (times
are sums of span lengths, XP sums of ``xp.award_xp`` awards, which are >= 0), so the prefix never
changes a number a teacher should compute with.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

# What a spreadsheet may take as the start of a formula (tab and CR: OWASP's list, since some
# programs strip them first and then see the next character).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: str) -> str:
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralize(c) for c in header])
    writer.writerows([neutralize(c) for c in row] for row in rows)
    return out.getvalue()
