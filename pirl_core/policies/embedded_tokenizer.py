"""LeRobot's tokenizer step with the tokenizer files carried as step state: no path to resolve.

Why: LeRobot's ``TokenizerProcessorStep`` loads ``AutoTokenizer.from_pretrained(tokenizer_name)``
when it is constructed, and a relative name (a checkpoint's ``"tokenizer"``) resolves against the
working directory, so ``lerobot-eval --policy.path=DIR`` only worked run from ``DIR``. LeRobot's
pipeline loader has a place for data a step needs that is not config: a step's ``state_dict`` is
saved by ``save_pretrained`` as a ``.safetensors`` file next to the processor JSON, and
``from_pretrained`` loads it from the checkpoint directory itself (``_load_step_state``: "base_path
/ state_file") and hands it to ``load_state_dict``. This step stores the tokenizer's files there
(one uint8 tensor per file, keyed by file name; 16 KB for pirl's word-level tokenizer) and builds
the tokenizer from them, exactly as ``AutoTokenizer`` would from the directory.

The step is deliberately *not* registered in LeRobot's ``ProcessorStepRegistry``: LeRobot then
names it in the processor JSON by its import path (``"class":
"pirl_core.policies.embedded_tokenizer.EmbeddedTokenizerStep"``), which its loader imports itself
(``_resolve_step_class``, tier 2), so LeRobot's CLI tools find it wherever pirl is installed,
without a plugin, and a pipeline ``lerobot-train`` saves again keeps the same form (state included).
Processor files in the wild name that path (pirl's shipped checkpoint does), so this module stays
where it is (:data:`pirl_core.policies.xvla.portable.EMBEDDED_TOKENIZER_CLASS`). It is not X-VLA's:
any LeRobot policy with a tokenizer step can carry its tokenizer this way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lerobot.processor.tokenizer_processor import TokenizerProcessorStep

# Files of a saved tokenizer directory (transformers' names); anything else there is left behind.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def read_tokenizer_files(directory: Path) -> dict[str, torch.Tensor]:
    """The tokenizer files of ``directory`` as ``{file name: uint8 tensor of its bytes}``."""
    files = {}
    for name in TOKENIZER_FILES:
        path = Path(directory) / name
        if path.is_file():
            files[name] = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()
    if not files:
        raise ValueError(f"tokenizer directory {directory} holds none of {list(TOKENIZER_FILES)}")
    return files


def tokenizer_from_files(files: dict[str, torch.Tensor]):
    """``AutoTokenizer`` on a temporary directory holding ``files`` (the inverse of
    :func:`read_tokenizer_files`): the same tokenizer the original directory gives."""
    from transformers import AutoTokenizer

    unknown = sorted(set(files) - set(TOKENIZER_FILES))
    if unknown or not files:
        raise ValueError(
            f"embedded tokenizer state holds {sorted(files)}; expected tokenizer files among {list(TOKENIZER_FILES)}"
        )
    with tempfile.TemporaryDirectory(prefix="pirl-tokenizer-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data.to(torch.uint8).contiguous().numpy().tobytes())
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)


@dataclass
class EmbeddedTokenizerStep(TokenizerProcessorStep):
    """``TokenizerProcessorStep`` whose tokenizer comes from its state (see the module docstring).

    Built two ways: by pirl with ``tokenizer_dir`` (a tokenizer directory: its files become the
    state), or by LeRobot's loader from the JSON config (no tokenizer yet), then
    ``load_state_dict`` with the saved files. ``tokenizer_name`` is only a label kept in the JSON.
    """

    # Not LeRobot's registered name (inherited from the parent): save_pretrained then writes the
    # import path, so a pipeline saved again (lerobot-train) still loads this class with its state.
    _registry_name = None

    tokenizer_dir: str | None = None
    files: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer_dir is not None:
            self.load_state_dict(read_tokenizer_files(Path(self.tokenizer_dir)))
            self.tokenizer_dir = None
        # else: LeRobot's loader calls load_state_dict right after construction.

    def observation(self, observation):
        if self.input_tokenizer is None:
            raise RuntimeError(
                "EmbeddedTokenizerStep has no tokenizer: its state file (named by 'state_file' in the "
                "processor JSON) was not loaded; load the pipeline with LeRobot's from_pretrained"
            )
        return super().observation(observation)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.tokenizer_name is not None and Path(self.tokenizer_name).is_absolute():
            config["tokenizer_name"] = Path(self.tokenizer_name).name  # a label; never a machine path
        return config

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.files)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        files = {name: tensor.to(torch.uint8).clone() for name, tensor in state.items()}
        self.input_tokenizer = tokenizer_from_files(files)
        self.files = files
