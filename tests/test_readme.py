"""The README's Python snippets run as written (in a temporary folder, tiny settings)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python code blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_python_blocks_are_found() -> None:
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


def test_readme_python_api_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    noisy, model = namespace["noisy"], namespace["model"]
    assert (tmp_path / "my-model" / "model.json").is_file()
    assert namespace["denoised"].shape == noisy.shape
    np.testing.assert_array_equal(namespace["denoised"], model.denoise(noisy))
    assert [s.shape for s in namespace["stages"]] == [noisy.shape, noisy.shape]
