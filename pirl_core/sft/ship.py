"""``python -m pirl_core.sft.ship SRC DST``: a copy of an SFT checkpoint small enough to commit.

Why: ``smoke`` starts from an SFT checkpoint that lives in the repository (issue 12), and a
repository should not carry more bytes than the policy needs. The copy stores floating-point
weights as float16 (half of float32's bytes); LeRobot's ``from_pretrained`` loads them into the
float32 model the config builds (``load_state_dict`` casts), so nothing else changes: same
config, processors, tokenizer copy and ``sft_info.json`` (plus ``weights_dtype`` and the source's
name). float16 keeps ~3 significant digits; the parameters of an SFT X-VLA are all well inside
its range (checked here: a value beyond it is refused rather than turned into inf).
Exit 2: SRC is not an SFT checkpoint or DST exists and is not empty (left untouched).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from pirl_core.argparse_base import UsageParser
from pirl_core.checkpoints import model_card
from pirl_core.cli import run_main
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.sft.checkpoint import SFT_INFO

WEIGHTS = "model.safetensors"
FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def halve(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 tensors -> float16 (others unchanged); refuses values float16 cannot hold."""
    out = {}
    for name, tensor in state.items():
        if tensor.dtype == torch.float32:
            peak = float(tensor.abs().max()) if tensor.numel() else 0.0
            if peak > FLOAT16_MAX:
                raise ConfigError("SRC", name, f"parameters within float16's range (|x| <= {FLOAT16_MAX:g})")
            tensor = tensor.to(torch.float16)
        out[name] = tensor.contiguous()
    return out


def ship(src: Path, dst: Path) -> int:
    """Write the float16 copy of ``src`` to ``dst``; returns the weight file's size in bytes."""
    from safetensors.torch import load_file, save_file

    if not (src / WEIGHTS).is_file() or not (src / SFT_INFO).is_file():
        raise ConfigError("SRC", str(src), f"an SFT checkpoint directory (holding {WEIGHTS} and {SFT_INFO})")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConfigError("DST", str(dst), "a new or empty directory", hint="nothing was written")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".tmp-{dst.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(WEIGHTS))
    save_file(halve(load_file(str(src / WEIGHTS))), str(tmp / WEIGHTS), metadata={"format": "pt"})
    info = json.loads((src / SFT_INFO).read_text())
    info.update(weights_dtype="float16", shipped_from=src.name)
    (tmp / SFT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True, allow_nan=True) + "\n")
    model_card.write(tmp)  # the card names the weights' dtype
    if dst.exists():  # empty (anything else was refused above)
        dst.rmdir()
    os.replace(tmp, dst)
    return (dst / WEIGHTS).stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(
        prog="python -m pirl_core.sft.ship", description=__doc__.split("\n\n")[0], usage_on_error=False
    )
    p.add_argument("src", help="SFT checkpoint directory (python -m pirl_core.sft --out)")
    p.add_argument("dst", help="directory to create (must not exist or be empty)")
    args = p.parse_args(argv)
    size = ship(Path(args.src), Path(args.dst))
    print(f"shipped {args.src} -> {args.dst}: {WEIGHTS} {size / 2**20:.1f} MiB (float16)")
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
