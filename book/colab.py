"""Keep every chapter's Colab links consistent with the repository URL in book/_config.yml.

Each notebooks/NN_topic.py (and its paired .ipynb) carries two links to the repository: the
"Open in Colab" badge, ``https://colab.research.google.com/github/OWNER/REPO/blob/BRANCH/notebooks/NN_topic.ipynb``,
and the install cell's ``pip install "esasrec[plot] @ git+REPO_URL"``. Both are derived from
``repository.url`` and ``repository.branch`` in book/_config.yml, the one place the URL lives.

    python book/colab.py          # report mismatches, exit status 1 if any
    python book/colab.py --fix    # rewrite the links in the .py and .ipynb files in place

tests/test_notebooks.py calls :func:`check`.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

BOOK = pathlib.Path(__file__).resolve().parent
ROOT = BOOK.parent
COLAB = "https://colab.research.google.com/github/"
# A URL ends at whitespace, a quote, a backslash (JSON escapes) or a closing bracket (Markdown).
BADGE_RE = re.compile(re.escape(COLAB) + r"[^\s\"'\\)\]]+")
INSTALL_RE = re.compile(r"git\+(https?://[^\s\"'\\)\]]+)")
NOTEBOOK_RE = re.compile(r"\d\d_\w+\.py")


def repository(config: pathlib.Path = BOOK / "_config.yml") -> tuple[str, str]:
    """``(url, branch)`` of the repository, from book/_config.yml."""
    repo = yaml.safe_load(config.read_text())["repository"]
    url = repo["url"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"{config}: repository.url must look like https://github.com/OWNER/REPO, got {url!r}")
    return url, repo.get("branch", "main")


def chapters(notebooks: pathlib.Path = ROOT / "notebooks") -> list[pathlib.Path]:
    """The chapter sources notebooks/NN_topic.py, in order."""
    return sorted(p for p in notebooks.glob("*.py") if NOTEBOOK_RE.fullmatch(p.name))


def expected_links(source: pathlib.Path, url: str, branch: str) -> tuple[str, str]:
    """``(badge_url, install_url)`` that the chapter ``source`` (a .py or .ipynb) must carry."""
    owner_repo = url.removeprefix("https://github.com/")
    badge = f"{COLAB}{owner_repo}/blob/{branch}/notebooks/{source.stem}.ipynb"
    return badge, url


def _problems(path: pathlib.Path, text: str, badge: str, install: str) -> list[str]:
    found_badges = BADGE_RE.findall(text)
    found_installs = INSTALL_RE.findall(text)
    problems = [f"{path}: Colab badge points to {b}, expected {badge}" for b in found_badges if b != badge]
    problems += [f"{path}: install cell uses git+{u}, expected git+{install}" for u in found_installs if u != install]
    if not found_badges:
        problems.append(f"{path}: no Colab badge (expected a link to {badge})")
    if not found_installs:
        problems.append(f'{path}: no install cell (expected "esasrec[plot] @ git+{install}")')
    return problems


def check(notebooks: pathlib.Path = ROOT / "notebooks", config: pathlib.Path = BOOK / "_config.yml",
          fix: bool = False) -> list[str]:
    """Problems with the Colab links of every chapter (.py and its .ipynb when present).

    Args:
        notebooks: the folder holding NN_topic.py / NN_topic.ipynb.
        config: the book configuration that holds ``repository.url``.
        fix: rewrite wrong links in place (a missing badge or install cell is not invented).

    Returns:
        one message per problem found (before fixing); empty when everything matches.
    """
    url, branch = repository(config)
    problems = []
    for source in chapters(notebooks):
        badge, install = expected_links(source, url, branch)
        for path in (source, source.with_suffix(".ipynb")):
            if not path.exists():
                continue
            text = path.read_text()
            problems += _problems(path, text, badge, install)
            if fix:
                fixed = BADGE_RE.sub(badge, text)
                fixed = INSTALL_RE.sub(lambda m: "git+" + install, fixed)
                if fixed != text:
                    path.write_text(fixed)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", action="store_true", help="rewrite wrong links in place")
    args = parser.parse_args(argv)
    if args.fix:
        fixed = check(fix=True)
        print(f"rewrote links in {len({p.split(':')[0] for p in fixed})} file(s)" if fixed else "nothing to fix")
    problems = check()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"all Colab links match book/_config.yml ({len(chapters())} chapters)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
