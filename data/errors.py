"""The one exception type for bad input to the `data` package."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input: the message says what is wrong, where (file, line) and how to fix it.

    `path` and `line` (1-based, the header is line 1) are kept as attributes so that callers
    and tests can read them without parsing the message.
    """

    def __init__(
        self,
        what: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.path = Path(path) if path is not None else None
        self.line = line
        self.fix = fix
        where = ""
        if self.path is not None:
            where = f"{self.path}, line {line}: " if line is not None else f"{self.path}: "
        message = f"{where}{what}"
        if fix:
            message += f"\nFix: {fix}"
        super().__init__(message)

    def __reduce__(self):
        # The keyword-only constructor would otherwise break pickling (e.g. in pytest-xdist).
        return (_rebuild, (self.what, self.path, self.line, self.fix))


def _rebuild(what: str, path: Path | None, line: int | None, fix: str | None) -> DataError:
    return DataError(what, path=path, line=line, fix=fix)
