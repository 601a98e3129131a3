"""The README's Python examples run as written, on the bundled model."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_the_readmes_python_examples_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    scope: dict = {}
    for block in blocks:  # later blocks use what earlier ones made, as a reader would
        exec(compile(block, str(README), "exec"), scope)
    assert scope["result"].before.prob != scope["result"].after.prob  # the ablation did something
    assert scope["heads"].target.foil_id == scope["lyon"] and scope["graph"].edges
    assert scope["forked"].parent_id == scope["trace"].id
    assert "llmvis-data" in (tmp_path / "forked.html").read_text(encoding="utf-8")
    assert capsys.readouterr().out.strip()
