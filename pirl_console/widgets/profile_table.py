"""The table of profiles on the menu screen (one row per ``profiles/*.toml``)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from pirl_console.profiles import COLUMNS, ProfileRow


class ProfileTable(DataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_by_name: dict[str, ProfileRow] = {}

    def load(self, rows: list[ProfileRow], selected: str | None = None) -> None:
        self.clear(columns=True)
        self.add_columns(*COLUMNS)
        self.rows_by_name = {r.name: r for r in rows}
        for row in rows:
            cells: list[str | Text] = list(row.cells())
            if row.config is None:
                cells = [Text(c, style="#e05050") for c in cells]
            self.add_row(*cells, key=row.name)
        if selected is not None and selected in self.rows_by_name:
            self.move_cursor(row=self.get_row_index(selected))

    @property
    def selected_name(self) -> str | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return None if key.value is None else str(key.value)
