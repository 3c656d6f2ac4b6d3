"""Issue 14 point 9: the README's examples run as pasted, and the docs render without stray
markup. (The examples in docs/ are doctested by ``sphinx-build -b doctest``, ``tox -e docs``.)"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.rst").read_text(encoding="utf-8")
CLEAN_ENV = {
    name: value
    for name, value in os.environ.items()
    if name not in ("KEG_STORAGE_ROOT", "KEG_STORAGE_CONFIG")
}


def literal_blocks(text: str, directive: str) -> list[str]:
    """The bodies of the blocks that follow ``directive`` (``.. code-block:: python`` or a
    paragraph ending in ``::``), dedented."""
    blocks = []
    for match in re.finditer(rf"{re.escape(directive)}\n\n((?:(?:    .*)?\n)+)", text):
        blocks.append(textwrap.dedent(match.group(1)).strip("\n") + "\n")
    return blocks


def test_readme_python_example_runs_as_pasted(tmp_path: Path) -> None:
    [example] = literal_blocks(README, ".. code-block:: python")
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    listing, *lines = result.stdout.splitlines(keepends=True)
    assert listing.startswith("[ListEntry(name='reports/2026.csv', last_modified=<Arrow [")
    assert lines == ["a,b\n", "1,2\n"]
    assert (tmp_path / "files" / "archive" / "2026.csv").read_bytes() == b"a,b\n1,2\n"


def test_readme_cli_one_liner_runs_as_pasted(tmp_path: Path) -> None:
    """The one-liner after its install steps (``python3 -m venv`` and ``pip install .``, which
    this test environment has done), with ``.venv/bin/`` the bin directory of this Python."""
    one_liner = next(
        block for block in literal_blocks(README, "::") if "keg-storage put" in block
    ).strip()
    steps = one_liner.split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -q ."]
    bin_dir = Path(sys.executable).parent
    command = " && ".join(steps[2:]).replace(".venv/bin/", f"{bin_dir}/")
    result = subprocess.run(
        ["sh", "-c", command],
        cwd=tmp_path,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "demo/hello.txt" in result.stdout
    assert result.stdout.endswith("hello\n")
    assert (tmp_path / "storage" / "demo" / "hello.txt").read_bytes() == b"hello\n"


def test_readme_claims_hold() -> None:
    """The README says where tox comes from, and points at the list of 0.5 names that are gone
    instead of claiming that every one keeps working."""
    text = " ".join(README.split())
    assert (
        "they need tox itself (``./scripts/test`` installs it, or "
        '``python3 -m pip install "tox>=4.11"``)' in text
    )
    scripts_test = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert 'python3 -m pip install --quiet --disable-pip-version-check "tox>=4.11"' in scripts_test
    assert "every documented name keeps working" not in text
    assert "(``docs/migrating.rst``) lists those with the reason" in text
    assert "Not kept, and why:" in (ROOT / "docs" / "migrating.rst").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def html_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The text of every page of the built HTML docs, code blocks left out."""
    sphinx = shutil.which("sphinx-build", path=str(Path(sys.executable).parent))
    assert sphinx is not None, "sphinx is not installed (pip install -e '.[test,docs]')"
    out = tmp_path_factory.mktemp("html")
    build = subprocess.run(
        [sphinx, "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    pages = {}
    for page in out.rglob("*.html"):
        if page.parent.name.startswith("_") or page.name in ("genindex.html", "search.html"):
            continue
        body = page.read_text(encoding="utf-8").split('role="main">', 1)[-1]
        body = re.sub(r"<pre.*?</pre>", "", body, flags=re.S)
        pages[str(page.relative_to(out))] = html.unescape(re.sub(r"<[^>]+>", "", body))
    return pages


@pytest.mark.parametrize(
    "stray",
    [
        r"^\s*[=\-~^`]{2,}\s*$",  # a heading's underline shown as text (the index's "==")
        r"``|:\w+:`|`_\b",  # RST markup that did not render
        r"\bR\s+SS\b",  # the LocalFS page's "peak R   SS"
    ],
)
def test_docs_render_without_stray_markup(html_pages: dict[str, str], stray: str) -> None:
    found = {
        page: match.group(0)
        for page, text in html_pages.items()
        if page != "changelog.html"
        for match in [re.search(stray, text, flags=re.M)]
        if match
    }
    assert found == {}
    assert "index.html" in html_pages and "backends/localfs.html" in html_pages
