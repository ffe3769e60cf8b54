"""pirl's shipped LIBERO tokenizer: offline, through AutoTokenizer.from_pretrained, BART-compatible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pirl_core.policies.xvla.tokenizer import (
    SPECIAL_TOKENS,
    TOKENIZER_DIR,
    build_wordlevel_tokenizer,
    libero_instructions,
)

REPO = Path(__file__).resolve().parents[1]


def test_loads_offline_through_autotokenizer() -> None:
    """A fresh interpreter with the hub disabled loads it the way LeRobot's TokenizerProcessorStep does."""
    code = (
        "from transformers import AutoTokenizer\n"
        "import huggingface_hub.constants as c\n"
        "assert c.HF_HUB_OFFLINE\n"
        f"t = AutoTokenizer.from_pretrained({str(TOKENIZER_DIR)!r})\n"
        "ids = t('put both the alphabet soup and the tomato sauce in the basket')['input_ids']\n"
        "print(t.bos_token_id, t.pad_token_id, t.eos_token_id, t.unk_token_id, ids[0], ids[-1], t.unk_token_id in ids)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    bos, pad, eos, unk, first, last, has_unk = out.stdout.split()
    # BART's special ids, which Florence-2's language config assumes.
    assert (int(bos), int(pad), int(eos), int(unk)) == (0, 1, 2, 3)
    assert (int(first), int(last)) == (0, 2)
    assert has_unk == "False"


def test_every_libero_instruction_is_in_vocabulary() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    texts = libero_instructions()
    assert len(texts) == 130  # spatial, object, goal, 10 (10 each) + libero_90
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert len(ids) <= 24, text  # the tiny X-VLA's tokenizer_max_length
    assert tok("Pick up the zebra")["input_ids"].count(tok.unk_token_id) == 1


def test_shipped_files_match_a_fresh_build(tmp_path: Path) -> None:
    """The shipped asset is a deterministic function of the LIBERO instructions."""
    built = build_wordlevel_tokenizer(libero_instructions(), tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert json.loads((built / name).read_text()) == json.loads((TOKENIZER_DIR / name).read_text()), name
    vocab = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text())["model"]["vocab"]
    assert [vocab[s] for s in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
