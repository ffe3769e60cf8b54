"""pirl console."""
