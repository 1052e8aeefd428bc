"""What every benchmark figure shares: the `Figure` record, and the model and engines they measure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.catalog.catalog import load_catalog
from app.catalog.library import ModelLibrary
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.engines.worker import ModelSpec, WorkerEngine
from app.paths import default_paths
from app.settings import Settings, physical_cores

N_CTX = 2048


@dataclass
class Figure:
    name: str
    value: float
    target: float
    better: str  # "higher" or "lower"
    unit: str
    detail: dict[str, float]
    error: str = ""  # why the figure could not be measured

    @classmethod
    def failed(cls, name: str, error: str) -> Figure:
        return cls(name, float("nan"), float("nan"), "higher", "", {}, error)

    @property
    def ok(self) -> bool:
        if self.error:
            return False
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


def model_path() -> Path:
    library = ModelLibrary(default_paths().ensure(), load_catalog())
    return library.ensure(library.get(Settings().model_id))


def make_engine(path: Path) -> LlamaCppEngine:
    """The engine in this process (the figures that compare Hearth's own loop with llama-cpp-python's)."""
    return LlamaCppEngine(path, model_id="bench", n_ctx=N_CTX, n_threads=physical_cores())


def make_worker(path: Path) -> WorkerEngine:
    """The engine as the app runs it: the model in a worker process."""
    return WorkerEngine(ModelSpec(path, "bench", n_ctx=N_CTX, n_threads=physical_cores()))
