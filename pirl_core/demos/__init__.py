"""Scripted demonstrations on LIBERO, recorded as a LeRobot dataset (docs/design.md, "Demonstrations")."""
