"""Where a pretrained X-VLA and its tokenizer are on this machine: never a download.

``policy.size = "pretrained"`` must never reach the network: weights and tokenizer are looked up
in a local directory or the local Hugging Face cache only, and a miss raises
:class:`~pirl_core.errors.ConfigError` (exit 2) naming the command that fetches them. Relative
paths also resolve against pirl's source tree, so profiles can name the checkpoint pirl ships.
"""

from __future__ import annotations

from pathlib import Path

from pirl_core.errors import ConfigError
from pirl_core.source import REPO_ROOT


def _fetch_hint(repo: str) -> str:
    return f"fetch it first with: huggingface-cli download {repo}"


def local_checkpoint_dir(path_text: str) -> Path:
    """``path_text`` as given, or, when it is relative and missing there, relative to pirl's source
    tree: profiles name the SFT checkpoint pirl ships (``pirl_core/assets/...``) and must work from
    any working directory."""
    path = Path(path_text).expanduser()
    if not path.is_absolute() and not path.is_dir() and (REPO_ROOT / path).is_dir():
        return REPO_ROOT / path
    return path


def resolve_local_snapshot(repo_or_dir: str, required: tuple[str, ...], field: str) -> Path:
    """A local directory, or the cached snapshot of a hub repo id. Never downloads."""
    path = local_checkpoint_dir(repo_or_dir)
    if path.is_dir():
        missing = [f for f in required if not (path / f).is_file()]
        if missing:
            raise ConfigError(
                field, repo_or_dir, f"a directory holding {list(required)}", hint=f"missing {missing}"
            )
        return path
    if path.is_absolute() or repo_or_dir.startswith((".", "~")) or repo_or_dir.count("/") > 1:
        # a filesystem path that is not there: never a hub repo id (those are "owner/name")
        raise ConfigError(field, repo_or_dir, f"an existing directory holding {list(required)}")
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(repo_or_dir, local_files_only=True, allow_patterns=list(required)))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OfflineModeIsEnabled...
        raise ConfigError(
            field,
            repo_or_dir,
            "weights present in the local Hugging Face cache",
            hint=_fetch_hint(repo_or_dir),
        ) from exc
    missing = [f for f in required if not (snap / f).is_file()]
    if missing:
        raise ConfigError(
            field, repo_or_dir, f"a cached snapshot holding {list(required)}", hint=_fetch_hint(repo_or_dir)
        )
    return snap


def resolve_local_tokenizer(name_or_dir: str) -> str:
    """A tokenizer directory, or the cached snapshot of a hub tokenizer. Never downloads."""
    if Path(name_or_dir).expanduser().is_dir():
        return str(Path(name_or_dir).expanduser())
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(name_or_dir, local_files_only=True)
    except Exception as exc:
        raise ConfigError(
            "policy.tokenizer",
            name_or_dir,
            "a tokenizer in the local Hugging Face cache",
            hint=_fetch_hint(name_or_dir),
        ) from exc
    return name_or_dir


def checkpoint_tokenizer(snap: Path, tokenizer_name: str) -> str:
    """A relative ``tokenizer_name`` that names a directory inside the checkpoint (what pirl writes:
    :data:`pirl_core.policies.xvla.portable.TOKENIZER_SUBDIR`) resolves against the checkpoint, so
    the checkpoint is portable; anything else (a hub id, an absolute path) is returned unchanged."""
    inside = snap / tokenizer_name
    if not Path(tokenizer_name).is_absolute() and inside.is_dir():
        return str(inside)
    return tokenizer_name
