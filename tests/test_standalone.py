"""The repository stands alone: nothing in it cites notes kept outside it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("../" + "shared", "shared" + "/REFERENCE", "shared" + "/LIBRARY",
           "REFERENCE" + "_RESULTS", "LIBRARY" + "_FACTS")


def test_no_file_cites_notes_outside_the_repository():
    folders = ("xentdbg", "tests", "examples", "docs", "bench", "scripts", ".ci")
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    suffixes = ("", ".py", ".md", ".json", ".toml")
    files += [p for f in folders for p in (ROOT / f).rglob("*") if p.is_file() and p.suffix in suffixes]
    cited = [f"{p.relative_to(ROOT)}: {word}" for p in files for word in OUTSIDE
             if word in p.read_text(errors="replace")]
    assert not cited, "state these facts in docs/ instead:\n" + "\n".join(cited)
