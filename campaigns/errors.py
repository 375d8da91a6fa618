"""One exception family. The CLI turns any CampaignsError into one red line and exit 1."""

from __future__ import annotations


class CampaignsError(Exception):
    """Base of every error a marketer can act on; the message is shown as is."""

    exit_code = 1


class ConfigError(CampaignsError):
    """A config file, key or value is wrong."""


class InputError(CampaignsError):
    """Bad input: a file, a row, a field or an option."""


class NotFoundError(CampaignsError):
    """A named thing (contact, segment, campaign, template) does not exist."""


class ConflictError(CampaignsError):
    """The request clashes with what is stored (a duplicate name, a used token)."""


class RowError(InputError):
    """One bad row of an import: names the file's line and the field."""

    def __init__(self, line: int, field: str | None, message: str) -> None:
        self.line = line
        self.field = field
        # Values are echoed in messages; a newline inside a cell must not split the line.
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        self.reason = message
        where = f"line {line}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class ImportFailed(InputError):
    """An import found bad rows and wrote nothing (all-or-nothing per file)."""

    def __init__(self, path: str, errors: list[RowError], total_rows: int) -> None:
        self.path = path
        self.errors = errors
        self.total_rows = total_rows
        super().__init__(
            f"{path}: {len(errors):,} of {total_rows:,} rows are invalid; nothing was imported "
            "(fix them, or pass --skip-invalid to import the good rows)"
        )
