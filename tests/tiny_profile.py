"""The tests' own LIBERO profile (a tiny random X-VLA on libero_10): see tests/profiles/libero_tiny.toml."""

from pathlib import Path

LIBERO_TINY = str(Path(__file__).resolve().parent / "profiles" / "libero_tiny.toml")
