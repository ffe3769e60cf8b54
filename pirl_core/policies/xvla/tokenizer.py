"""The tiny, offline tokenizer the smoke profile's X-VLA reads its instruction with.

Why: the real X-VLA uses ``facebook/bart-large`` (50k BPE tokens, downloaded from the hub). The
smoke profile must never touch the network, yet should take exactly the same code path, i.e.
LeRobot's ``TokenizerProcessorStep`` calling ``AutoTokenizer.from_pretrained(path)``. So pirl
ships a word-level tokenizer whose vocabulary is every word of every LIBERO task instruction
(``pirl_core/assets/tokenizer/libero_wordlevel``), saved as a ``PreTrainedTokenizerFast``
directory. It is BART-compatible where it matters: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3
(the ids Florence-2's BART config assumes) and the ``<s> ... </s>`` template.

The shipped files are a deterministic function of the instruction texts. Rebuild them with
``python -m pirl_core.policies.xvla.tokenizer [OUT_DIR]`` (reads the instructions from the installed
``libero`` package); ``tests/test_xvla_tokenizer.py`` checks that a rebuild matches the shipped copy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from pirl_core.source import ASSETS_DIR

TOKENIZER_DIR = ASSETS_DIR / "tokenizer" / "libero_wordlevel"

# BART's special-token ids (facebook/bart-large): Florence-2's language config assumes them.
SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# The suites whose instructions make up the vocabulary (the ones pirl's config accepts).
LIBERO_VOCAB_SUITES: tuple[str, ...] = (
    "libero_spatial",
    "libero_object",
    "libero_goal",
    "libero_10",
    "libero_90",
)


def libero_instructions(suites: Iterable[str] = LIBERO_VOCAB_SUITES) -> list[str]:
    """Every task instruction of ``suites``, read from the installed ``libero`` package (no render)."""
    from libero.libero import benchmark

    bench = benchmark.get_benchmark_dict()
    texts: list[str] = []
    for name in suites:
        suite = bench[name]()
        texts.extend(task.language for task in suite.tasks)
    return texts


def words_of(text: str) -> list[str]:
    """The same split the saved tokenizer applies (lowercase, then ``\\w+|[^\\w\\s]+``)."""
    from tokenizers.pre_tokenizers import Whitespace

    return [w for w, _ in Whitespace().pre_tokenize_str(text.lower())]


def save_wordlevel(
    texts: Iterable[str],
    out_dir: Path,
    *,
    specials: tuple[str, ...],
    template: tuple[str, str],
    template_tokens: tuple[str, ...],
    names: dict[str, str],
) -> Path:
    """Write a word-level ``PreTrainedTokenizerFast`` whose vocabulary is ``specials`` followed by
    the sorted set of words of ``texts``; ``template`` = (single, pair) post-processing, with
    ``template_tokens`` the specials it names; ``names`` the special-token roles. Deterministic."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in texts for w in words_of(text)} - set(specials))
    vocab = {tok: i for i, tok in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=names["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=template[0], pair=template[1], special_tokens=[(t, vocab[t]) for t in template_tokens]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, **names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    # transformers writes a few fields that vary across versions; keep only what loading needs so
    # the shipped files are stable.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    keep = {*names, "model_max_length", "tokenizer_class"}
    cfg = {k: v for k, v in sorted(cfg.items()) if k in keep}
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out_dir


def build_wordlevel_tokenizer(instructions: Iterable[str], out_dir: Path) -> Path:
    """Write a BART-compatible word-level ``PreTrainedTokenizerFast`` for ``instructions``.

    Deterministic: the vocabulary is the special tokens followed by the sorted set of words.
    """
    return save_wordlevel(
        instructions,
        out_dir,
        specials=SPECIAL_TOKENS,
        template=("<s> $A </s>", "<s> $A </s> </s> $B </s>"),
        template_tokens=("<s>", "</s>"),
        names={
            "bos_token": "<s>",
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
        },
    )


def tokenizer_vocab_size(path: str | Path) -> int:
    """Largest id + 1 of a saved tokenizer (the model's embedding table must be at least this big)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    return len(tok)


def rebuild_main(build, default_dir: Path, argv: list[str] | None = None) -> int:
    """``python -m <tokenizer module> [OUT_DIR]``: rebuild a shipped LIBERO tokenizer with
    ``build(instructions, out_dir)``."""
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else default_dir
    build(libero_instructions(), out)
    print(f"wrote {out} ({tokenizer_vocab_size(out)} tokens)")
    return 0


if __name__ == "__main__":  # pragma: no cover - maintenance command
    from pirl_core.process_env import configure_process

    configure_process()  # reading LIBERO's instructions imports robosuite
    raise SystemExit(rebuild_main(build_wordlevel_tokenizer, TOKENIZER_DIR))
