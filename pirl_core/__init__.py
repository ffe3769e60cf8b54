"""pirl engine."""
