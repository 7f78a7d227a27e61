"""The README's Python examples run as written, and the matching example finds the truth."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README.md lost its python examples"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {})
    # The first example shuffles its centres by [3, 0, 4, 1, 2]; SVI must find that shuffle.
    assert "tensor([3, 0, 4, 1, 2])" in out.getvalue().splitlines()[0]
