"""README's Python example ("### From Python") runs as shown and prints what it says."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example(monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert capsys.readouterr().out.split() == ["8", "32", "topk", "4"]
    assert ns["codes"].shape == (1024, 32)
    assert ns["m"].shape == (1024, 32) and (ns["m"].getnnz(axis=1) <= 2).all()
    assert ns["x_hat"].shape == (1024, 8)
