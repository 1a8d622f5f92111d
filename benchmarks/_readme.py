"""Write one benchmark's section of ``benchmarks/README.md`` between its markers, atomically,
leaving the other benchmarks' sections alone."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).with_name("README.md")


def replace_section(name: str, title: str, markdown: str, readme: Path = README) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` with a
    ``## title`` section (appended when the markers are missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"{begin}\n## {title}\n\n{markdown}\n{end}"
    if begin in text and end in text.split(begin, 1)[1]:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = readme.with_name(f".{readme.name}.{name}.tmp")
    tmp.write_text(text)
    tmp.replace(readme)
