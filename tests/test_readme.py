"""The README's code is real: its plugin example trains, and its commands are the ones CI runs."""

import re
import types
from pathlib import Path

import torch

from charforge.config import TrainConfig
from charforge.plugins import make_plugin_manager
from charforge.trainer import Trainer

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def _python_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    matching = [b for b in blocks if marker in b]
    assert len(matching) == 1, f"expected one README python block containing {marker!r}"
    return matching[0]


def test_readme_cell_plugin_trains_and_samples(tmp_path):
    module = types.ModuleType("readme_cells")
    exec(compile(_python_block("class TanhCell"), "README.md", "exec"), module.__dict__)
    pm = make_plugin_manager(extra=[module], block=["console"])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40)
    config = TrainConfig(corpus=str(corpus), cell="tanh-rnn", hidden_size=16, batch_size=2, seq_len=16,
                         steps=6, eval_every=3, sample_length=20, threads=1)
    trainer = Trainer(config, pm=pm, runs_root=tmp_path / "runs")
    first = trainer.model.layers[0].linear.weight.detach().clone()
    metrics = trainer.run()
    assert trainer.step == 6
    assert metrics["loss"] > 0 and not torch.equal(first, trainer.model.layers[0].linear.weight)
    assert (trainer.run_dir / "checkpoints" / "best.safetensors").exists()
    module.test_tanh_cell()  # the README's own test of it, on the kit


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci
    command = re.search(r"<!-- test-command -->\n```bash\n(.+)\n```", README)
    assert command and "pytest" in command.group(1)
