"""Markdown pieces every report shares."""

from __future__ import annotations


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "\\|") for h in header) + " |" for r in rows]
    return "\n".join(lines)
