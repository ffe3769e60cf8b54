"""The offline tokenizer pirl's π0/π0.5 read their prompt with (PaliGemma's cannot be downloaded here).

π0.5's prompt is ``"Task: <instruction>, State: <8 integers in 0..255>;\\nAction: "`` (LeRobot's
``Pi05PrepareStateTokenizerProcessorStep``), π0's the instruction alone. So pirl ships a word-level
tokenizer over every LIBERO instruction word, the prompt's words and punctuation and the 256 state
bins (``pirl_core/assets/tokenizer/pi_libero_wordlevel``), with PaliGemma's special ids
(``<pad>``=0, ``<eos>``=1, ``<bos>``=2, ``<unk>``=3) and its template (``<bos>`` first, no
``<eos>``). A real checkpoint's own tokenizer files are used when it carries them.

Rebuild with ``python -m pirl_core.policies.pi.tokenizer [OUT_DIR]``; ``tests/test_pi_family.py``
checks that a rebuild equals the shipped copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pirl_core.policies.xvla.tokenizer import save_wordlevel, words_of
from pirl_core.source import ASSETS_DIR

PI_TOKENIZER_DIR = ASSETS_DIR / "tokenizer" / "pi_libero_wordlevel"
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<eos>", "<bos>", "<unk>")
PROMPT_TEMPLATE = "Task: {task}, State: {state};\nAction: "  # LeRobot 0.4.4's π0.5 prompt
STATE_BINS = 256


def prompt_words() -> list[str]:
    """The words of the π0.5 prompt around the instruction, and every state bin LeRobot can write:
    0-255, and -1 for a state below its lower bound (LeRobot digitises without clipping; ``-1``
    splits into ``-`` and ``1``), so no state ever reaches the model as ``<unk>``."""
    bins = " ".join(str(i) for i in range(-1, STATE_BINS))
    return words_of(PROMPT_TEMPLATE.format(task="", state=bins))


def build_pi_tokenizer(instructions: Iterable[str], out_dir: Path) -> Path:
    """Write the word-level ``PreTrainedTokenizerFast`` for ``instructions`` plus the prompt's words."""
    texts = [*instructions, " ".join(prompt_words())]
    return save_wordlevel(
        texts,
        out_dir,
        specials=SPECIAL_TOKENS,
        template=("<bos> $A", "<bos> $A $B"),
        template_tokens=("<bos>",),
        names={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    )


if __name__ == "__main__":  # pragma: no cover - maintenance command
    from pirl_core.policies.xvla.tokenizer import rebuild_main
    from pirl_core.process_env import configure_process

    configure_process()  # reading LIBERO's instructions imports robosuite
    raise SystemExit(rebuild_main(build_pi_tokenizer, PI_TOKENIZER_DIR))
