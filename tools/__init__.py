"""Developer tools run from the checkout (``python -m tools.<name>``); not part of the shipped
packages ``pirl_core`` / ``pirl_console``."""
