"""Every code block of README.md runs as written.

Each ```python and ```bash block is extracted and run, in README order, in one temporary
directory (later blocks may use files earlier ones wrote), python blocks with this
interpreter and bash blocks with ``bash -euo pipefail`` and this environment's ``matalign``
first on PATH. A block is skipped only when the README marks it, on the line(s) just above
its fence, with ``<!-- readme-test: skip (REASON) -->``: install commands, the test command
itself, and the demo study that ``.ci/run`` runs; the test checks that every skip gives a
reason and that no other kind of block exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")


def readme_blocks() -> list[dict]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        # the marker sits on the HTML-comment lines directly above the fence
        skip, k = None, start - 1
        while k >= 0 and lines[k].strip().startswith("<!--"):
            found = SKIP.search(lines[k])
            if found:
                skip = found.group(1).strip()
            k -= 1
        blocks.append({"lang": lang, "line": start + 1, "code": "\n".join(lines[start + 1:j]),
                       "skip": skip})
        i = j + 1
    return blocks


BLOCKS = readme_blocks()


def test_every_block_is_python_or_bash_and_every_skip_has_a_reason():
    assert BLOCKS, "no code blocks found in README.md"
    for b in BLOCKS:
        assert b["lang"] in ("python", "bash"), f"README.md:{b['line']}: ```{b['lang']}"
        if b["skip"] is not None:
            assert len(b["skip"]) > 10, f"README.md:{b['line']}: skip without a reason"
    # the two top commands are marked, and so is every block with a pip install
    for b in BLOCKS:
        if "pip install" in b["code"]:
            assert b["skip"], f"README.md:{b['line']}: an install command that is not marked"
    runnable = [b for b in BLOCKS if not b["skip"]]
    assert {b["lang"] for b in runnable} == {"python", "bash"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b['line']}-{b['lang']}" for b in BLOCKS])
def test_readme_block_runs(block, workdir):
    if block["skip"]:
        pytest.skip(block["skip"])
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    cmd = ([sys.executable, "-c", block["code"]] if block["lang"] == "python"
           else ["bash", "-euo", "pipefail", "-c", block["code"]])
    res = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=900)
    assert res.returncode == 0, (f"README.md:{block['line']} ({block['lang']}) failed with "
                                 f"{res.returncode}:\n{block['code']}\n--- stderr ---\n"
                                 f"{res.stderr[-4000:]}")
