"""A child's output: capped scrollback, follow/pause, find with highlighted matches.

Why not Textual's ``Log`` or ``RichLog``: ``RichLog`` renders every write (too slow at
thousands of lines per second), and ``Log`` has no way to highlight search matches and spawns
a width-measuring thread per write. This is the same line-API idea (only visible lines are
rendered, each into a cached ``Strip``) over a bounded ``deque``: appending is O(new lines),
the oldest lines fall off, and when the view is paused it stays on the same text while old
lines are evicted underneath it. Lines arrive already stripped of ANSI escapes (see
``supervisor.strip_ansi``), which sidesteps escape-sequence corruption (Textual #3506).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_ERROR_WORDS = ("error", "traceback", "exception", "failed")
_NOTICE_WORDS = ("[learner] ready", "[learner] done", "connected", "checkpoint")


class OutputLog(ScrollView, can_focus=True):
    """Scrollback of at most ``max_lines`` lines."""

    COMPONENT_CLASSES = {
        "output-log--match",
        "output-log--current",
        "output-log--error",
        "output-log--notice",
    }

    follow: reactive[bool] = reactive(True)

    class FollowChanged(Message):
        def __init__(self, log: OutputLog, follow: bool) -> None:
            super().__init__()
            self.log = log
            self.follow = follow

    def __init__(self, max_lines: int = 2000, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max_lines
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.evicted = 0  # lines that fell off the front (absolute index of lines[0])
        self.received = 0
        self._width = 0
        self._cache: LRUCache[int, Strip] = LRUCache(1024)
        self.search = ""
        self.current_match: int | None = None  # absolute line index

    # ------------------------------------------------------------------ content
    def append(self, lines: Iterable[str]) -> int:
        """Add lines (already ANSI-stripped); returns how many were added."""
        new = [
            _CONTROL.sub("", line.expandtabs()) if "\t" in line or _CONTROL.search(line) else line
            for line in lines
        ]
        if not new:
            return 0
        before = len(self.lines)
        self.lines.extend(new)
        dropped = max(0, before + len(new) - self.max_lines)
        self.received += len(new)
        if dropped:
            self.evicted += dropped
            self._cache.clear()
        width = max(cell_len(line) if not line.isascii() else len(line) for line in new)
        self._width = max(self._width, width)
        self.virtual_size = Size(self._width, len(self.lines))
        if self.follow:
            # Deferred to after the refresh: the new virtual size must be laid out first.
            self.scroll_end(animate=False, x_axis=False)
        elif dropped:
            # Keep the paused view on the same text while old lines leave the buffer.
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
        self.refresh()
        return len(new)

    def clear(self) -> None:
        self.lines.clear()
        self.evicted = 0
        self._width = 0
        self._cache.clear()
        self.current_match = None
        self.virtual_size = Size(0, 0)
        self.refresh()

    @property
    def line_count(self) -> int:
        return len(self.lines)

    # ------------------------------------------------------------------ follow
    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, x_axis=False)
        self.post_message(self.FollowChanged(self, follow))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self.is_vertical_scroll_end:
            self.follow = True

    # ------------------------------------------------------------------ find
    def set_search(self, term: str) -> int:
        """Highlight ``term`` (case-insensitive); returns the number of matching lines."""
        self.search = term
        self.current_match = None
        self._cache.clear()
        self.refresh()
        return len(self.matches())

    def matches(self) -> list[int]:
        """Absolute indices of lines containing the search term."""
        if not self.search:
            return []
        needle = self.search.lower()
        return [self.evicted + i for i, line in enumerate(self.lines) if needle in line.lower()]

    def find_next(self, forward: bool = True) -> int | None:
        """Move to the next (or previous) matching line, wrapping; pauses follow."""
        found = self.matches()
        if not found:
            self.current_match = None
            return None
        if self.current_match is not None and self.current_match >= self.evicted:
            anchor = self.current_match
        else:
            anchor = self.evicted + int(self.scroll_y) + (-1 if forward else self.size.height)
        if forward:
            target = next((m for m in found if m > anchor), found[0])
        else:
            target = next((m for m in reversed(found) if m < anchor), found[-1])
        self.current_match = target
        self.follow = False
        self._cache.clear()
        rel = target - self.evicted
        self.scroll_to(y=max(0, rel - self.size.height // 2), animate=False, immediate=True)
        self.refresh()
        return target

    def match_position(self) -> tuple[int, int]:
        """(1-based index of the current match, number of matches)."""
        found = self.matches()
        if self.current_match is None or self.current_match not in found:
            return 0, len(found)
        return found.index(self.current_match) + 1, len(found)

    # ------------------------------------------------------------------ rendering
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base_style = self.rich_style
        if index >= len(self.lines) or index < 0:
            return Strip.blank(width, base_style)
        absolute = self.evicted + index
        strip = self._cache.get(absolute)
        if strip is None:
            strip = self._render_text(self.lines[index], absolute, base_style)
            self._cache[absolute] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, base_style)

    def _render_text(self, line: str, absolute: int, base_style: Style) -> Strip:
        text = Text(line, no_wrap=True, end="")
        text.stylize(base_style)
        lowered = line.lower()
        if any(word in lowered for word in _ERROR_WORDS):
            text.stylize(self.get_component_rich_style("output-log--error", partial=True))
        elif any(word in lowered for word in _NOTICE_WORDS):
            text.stylize(self.get_component_rich_style("output-log--notice", partial=True))
        if self.search:
            needle = self.search.lower()
            style_name = "output-log--current" if absolute == self.current_match else "output-log--match"
            style = self.get_component_rich_style(style_name, partial=True)
            start = lowered.find(needle)
            while start >= 0:
                text.stylize(style, start, start + len(needle))
                start = lowered.find(needle, start + max(1, len(needle)))
        return Strip(text.render(self.app.console), text.cell_len)
