"""Where Hearth keeps its data.

One folder holds everything a user owns: the database, settings, model weights, logs.
`HEARTH_HOME` moves it (tests use this so they never touch a real profile);
otherwise it is the platform's user data folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.errors import DataDirError


def data_home() -> Path:
    override = os.environ.get("HEARTH_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("Hearth", appauthor=False, roaming=True))


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "hearth.db"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def images(self) -> Path:
        """Attached pictures, stored by content (see `app.core.images.ImageStore`)."""
        return self.root / "images"

    @property
    def downloads(self) -> Path:
        """Partial downloads live here until verified, then move atomically into `models`."""
        return self.root / "models" / ".partial"

    def ensure(self) -> DataPaths:
        """Create the folders and prove the root is writable, or raise a clear error."""
        try:
            for folder in (self.root, self.models, self.logs, self.downloads, self.images):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise DataDirError(
                f"Hearth cannot write to its data folder {self.root} ({exc.strerror or exc}).",
                "Free up space or fix the folder's permissions, or set HEARTH_HOME to a writable folder.",
            ) from exc
        return self


def default_paths() -> DataPaths:
    return DataPaths(data_home())
