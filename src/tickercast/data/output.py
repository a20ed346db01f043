"""Safe publication of generated files into a data root.

Writers stage every file in a hidden folder inside the output root, then :meth:`StagedOutput.commit`
compares each staged file with what is already there: identical files are left alone, new files are
moved in, and files whose content would change (or stale files a writer owns but no longer produces)
are only replaced with ``force``. Without it the commit refuses and names the files, so existing data
is never silently overwritten, and an interrupted run leaves no half-written output behind.
"""

from __future__ import annotations

import filecmp
import fnmatch
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tickercast.errors import UserError

STAGING_PREFIX = ".tickercast-staging-"


@dataclass
class WriteSummary:
    """What a data command wrote.

    Attributes:
        out_dir: The data root written to.
        files: Every file the command produced, relative to ``out_dir`` (new, replaced or unchanged).
        rows: Data rows per raw kind (``prices``, ``indices``, ``news``, ...).
        written: Files created or replaced in this run.
        unchanged: Files that already existed with identical content and were left alone.
        removed: Stale files owned by the writer that ``force`` deleted.

    """

    out_dir: Path
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return the one-line summary printed at the end of a data command."""
        counts = ", ".join(f"{n:,} {kind} rows" for kind, n in self.rows.items())
        parts = [f"{len(self.files)} files ({len(self.written)} written, {len(self.unchanged)} unchanged"]
        if self.removed:
            parts.append(f", {len(self.removed)} stale removed")
        return f"{''.join(parts)}) with {counts} under {self.out_dir}"


def _short_list(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown if len(paths) <= limit else f"{shown} and {len(paths) - limit} more"


class StagedOutput:
    """Stage files for a data root and publish them without clobbering different content.

    Use as a context manager; the staging folder is always removed on exit.

    Args:
        out_dir: The data root.
        owned: Glob patterns (relative to ``out_dir``) of files this writer owns: existing matches
            that the run does not produce again are stale and are removed on a forced commit.

    Raises:
        UserError: ``out_dir`` cannot be created or written.

    """

    def __init__(self, out_dir: Path, owned: tuple[str, ...] = ()) -> None:
        self.out_dir = Path(out_dir)
        self.owned = owned
        self._files: list[str] = []
        try:
            if self.out_dir.exists() and not self.out_dir.is_dir():
                raise UserError(f"--out {self.out_dir} exists and is not a folder")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        except OSError as exc:
            raise UserError(f"cannot write to --out {self.out_dir}: {exc.strerror or exc}") from None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, relative: str) -> Path:
        """Return the staging path for a file that will land at ``out_dir / relative``."""
        if relative in self._files:
            raise ValueError(f"{relative} staged twice")
        self._files.append(relative)
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _stale(self) -> list[str]:
        produced = set(self._files)
        stale = set()
        for pattern in self.owned:
            for existing in self.out_dir.glob(pattern):
                relative = existing.relative_to(self.out_dir).as_posix()
                if existing.is_file() and relative not in produced and fnmatch.fnmatch(relative, pattern):
                    stale.add(relative)
        return sorted(stale)

    def commit(self, rows: dict[str, int], force: bool = False) -> WriteSummary:
        """Publish the staged files.

        Args:
            rows: Data rows per raw kind, for the summary.
            force: Replace files whose content differs and delete stale owned files.

        Returns:
            What was written, left unchanged and removed.

        Raises:
            UserError: Some existing files would change and ``force`` is false; nothing is written.

        """
        summary = WriteSummary(out_dir=self.out_dir, files=list(self._files), rows=dict(rows))
        changed = []
        for relative in self._files:
            target = self.out_dir / relative
            if target.exists():
                if filecmp.cmp(self.staging / relative, target, shallow=False):
                    summary.unchanged.append(relative)
                else:
                    changed.append(relative)
        stale = self._stale()
        if (changed or stale) and not force:
            what = []
            if changed:
                what.append(f"{len(changed)} existing files would change ({_short_list(changed)})")
            if stale:
                what.append(f"{len(stale)} files from an earlier run would be stale ({_short_list(stale)})")
            raise UserError(
                f"refusing to overwrite data in {self.out_dir}: {'; '.join(what)}; "
                "use --force to replace them, or choose another --out"
            )
        try:
            for relative in self._files:
                if relative in summary.unchanged:
                    continue
                target = self.out_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging / relative, target)
                summary.written.append(relative)
            for relative in stale:
                (self.out_dir / relative).unlink()
                summary.removed.append(relative)
        except OSError as exc:
            raise UserError(f"cannot write to --out {self.out_dir}: {exc.strerror or exc}") from None
        return summary
