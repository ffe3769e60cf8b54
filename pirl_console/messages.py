"""Typed messages between the console's parts, one dataclass each (posting's ``messages.py``).

Why in one module: a reader sees every event the UI reacts to in one place, and a worker, the
run controller or a screen can post one without importing the widget that handles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from textual.message import Message

from pirl_console.checkpoint_source import CheckpointEntry, ValidationResult
from pirl_console.procstats import TreeStats
from pirl_console.run_request import RunRequest

Severity = Literal["information", "warning", "error"]


@dataclass
class ChildChanged(Message):
    """A child changed state (started, ready, running, stopping, exited)."""

    name: str


@dataclass
class StatsSampled(Message):
    stats: dict[str, TreeStats | None]


@dataclass
class TelemetryRead(Message):
    records: list[dict[str, Any]]


@dataclass
class Notice(Message):
    """Something the researcher should see now (a toast)."""

    text: str
    severity: Severity = "information"
    title: str = ""
    timeout: float = 5.0


@dataclass
class MismatchFound(Message):
    """The learner refused a resume (exit 3): the differing fields, from its JSON report."""

    result: ValidationResult
    reason: str


@dataclass
class RunRequested(Message):
    """Run this request: replaces the current run screen's run, or opens one from the menu."""

    request: RunRequest


@dataclass
class CheckpointsListed(Message):
    entries: list[CheckpointEntry]
    metrics: dict[int, dict[str, Any]]
    error: str | None


@dataclass
class CheckpointValidated(Message):
    result: ValidationResult
    then_resume: bool


@dataclass
class ResumeChecked(Message):
    result: ValidationResult
