"""Figures of the engine in its own process, for `hearth bench`.

- decode_ratio: tokens/s through `WorkerEngine` (the model in Hearth's worker process, text over a
  pipe) ÷ bare llama-cpp-python in a process of its own, same GGUF, threads and context;
- restart_first_token_s: the worker killed mid-reply → the next reply's first token, against the
  model's load time + 0.5 s;
- app_rss_mb: the app's own resident memory with the window open and the model loaded (in its worker);
- build_speed_ratio: this engine build's decode tokens/s ÷ another build's (the native build, by
  default), each in its own process on the same model, when `./dev.sh bench` built one
  (`HEARTH_BENCH_ENGINES="name=LIBDIR,…"`, each LIBDIR a llama-cpp-python `lib` folder).

`python -m app.bench.engine bare MODEL THREADS PROMPT_FILE` is the bare side: llama-cpp-python
alone, timing `Llama.generate` token to token each time it reads a line.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.bench.common import Figure
from app.core.conversation import ChatMessage
from app.settings import GenerationSettings, physical_cores

N_CTX = 2048
MAX_TOKENS = 192
STORY = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
MESSAGES = [ChatMessage("system", "You are a storyteller."), ChatMessage("user", STORY)]
ENGINES_ENV = "HEARTH_BENCH_ENGINES"


def _worker(path: Path) -> Any:
    from app.engines.worker import ModelSpec, WorkerEngine

    return WorkerEngine(ModelSpec(path, "bench", n_ctx=N_CTX, n_threads=physical_cores()))


class BareProcess:
    """llama-cpp-python alone in a child process (`lib`: another build's libraries, or this one's)."""

    def __init__(self, path: Path, prompt_file: Path, lib: Path | None = None) -> None:
        env = dict(os.environ)
        if lib is not None:
            env["LLAMA_CPP_LIB_PATH"] = str(lib)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "app.bench.engine", "bare", str(path), str(physical_cores()), str(prompt_file)]
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, env=env, text=True
        )
        self.ready_line = self._line()

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            name = signal.Signals(-code).name if code < 0 else f"status {code}"
            self.errors.seek(0)
            said = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"the bare llama-cpp-python process died ({name}){': ' + said[-1] if said else ''}")
        return line.strip()

    def decode_tps(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.errors.close()


def _prompt_file(engine: Any, folder: Path) -> Path:
    """The exact token ids Hearth's worker sends, for the bare side to decode from."""
    path = folder / "bench-prompt.txt"
    path.write_text(" ".join(str(t) for t in engine.tokenize_prompt(MESSAGES)))
    return path


def _worker_tps(engine: Any) -> float:
    """Tokens after the first ÷ the time from the first piece of text to the last, as they reach this
    process (the worker sends several tokens' text together when they come quickly)."""
    settings = GenerationSettings(temperature=0.0, max_tokens=MAX_TOKENS, seed=1)
    for _ in engine.stream(MESSAGES, settings):
        pass
    return float(engine.last_stats.tokens_per_s)


def bench_decode(path: Path, folder: Path, rounds: int = 9) -> Any:
    """The worker's stream against llama-cpp-python alone in its own process, rounds interleaved."""

    engine = _worker(path)
    bare = BareProcess(path, _prompt_file(engine, folder))
    hearth: list[float] = []
    alone: list[float] = []
    try:
        for n in range(rounds):
            pair = [(_worker_tps, engine, hearth), (BareProcess.decode_tps, bare, alone)]
            for measure, target, results in pair if n % 2 == 0 else pair[::-1]:  # who goes first alternates
                results.append(measure(target))  # type: ignore[operator]
    finally:
        engine.close()
        bare.close()
    ratios = [h / b for h, b in zip(hearth, alone, strict=True) if b > 0]
    detail = {"worker_tok_s": statistics.median(hearth), "bare_process_tok_s": statistics.median(alone)}
    return Figure("decode_ratio", statistics.median(ratios), 0.97, "higher", "×", detail)


def bench_restart(path: Path, runs: int = 3) -> Any:
    """Kill the worker mid-reply; how long until the next reply's first token (the restart loads the model)."""
    from app.errors import EngineCrashed

    settings = GenerationSettings(temperature=0.0, max_tokens=MAX_TOKENS, seed=1)
    started = time.perf_counter()
    engine = _worker(path)
    load_s = time.perf_counter() - started
    firsts: list[float] = []
    try:
        for _ in range(runs):
            pid = engine.pid
            try:
                for n, _piece in enumerate(engine.stream(MESSAGES, settings)):
                    if n == 5:
                        os.kill(pid, signal.SIGKILL)
            except EngineCrashed:
                pass
            asked = time.perf_counter()
            for _piece in engine.stream(MESSAGES, settings):
                firsts.append(time.perf_counter() - asked)
                break
    finally:
        engine.close()
    value = statistics.median(firsts)
    return Figure(
        "restart_first_token_s", value, load_s + 0.5, "lower", "s", {"load_s": load_s, "worst_s": max(firsts)}
    )


def bench_app_rss(path: Path, folder: Path) -> Any:
    """The app's own memory, the window open and the model loaded in its worker (measured in a child)."""

    env = dict(os.environ, HEARTH_HOME=str(folder / "rss-home"))
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    code = "import sys; from app.ui.stall_probe import report_rss; report_rss(sys.argv[1])"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("rss ")]
    if not lines:
        raise RuntimeError(f"the window did not report its memory: {out.stderr.strip()[-300:]}")
    _, app_mb, worker_mb = lines[-1].split()
    return Figure("app_rss_mb", float(app_mb), 400.0, "lower", "MB", {"worker_rss_mb": float(worker_mb)})


def comparison_engines() -> dict[str, Path]:
    """Other builds of the engine to compare with, from `HEARTH_BENCH_ENGINES` ("name=LIBDIR,…")."""
    found = {}
    for item in os.environ.get(ENGINES_ENV, "").split(","):
        name, _, lib = item.partition("=")
        if name.strip() and lib.strip():
            found[name.strip()] = Path(lib.strip())
    return found


def bench_builds(path: Path, folder: Path, rounds: int = 8) -> list[Any]:
    """This build's decode speed against each other build's, side by side; a build that cannot run
    here (it traps) is reported as failed, with the signal."""

    others = comparison_engines()
    if not others:
        raise RuntimeError(f"no other engine build to compare with: `./dev.sh bench` builds one ({ENGINES_ENV})")
    engine = _worker(path)
    prompt = _prompt_file(engine, folder)
    engine.close()
    figures: list[Any] = []
    ours = BareProcess(path, prompt)
    try:
        for name, lib in others.items():
            try:
                other = BareProcess(path, prompt, lib)
                mine_tps: list[float] = []
                their_tps: list[float] = []
                for n in range(rounds):  # who goes first alternates
                    pair = [(ours, mine_tps), (other, their_tps)]
                    for process, results in pair if n % 2 == 0 else pair[::-1]:
                        results.append(process.decode_tps())
                other.close()
            except RuntimeError as exc:
                figures.append(Figure.failed(f"build_speed_ratio[{name}]", f"the {name} build: {exc}"))
                continue
            ratio = statistics.median(m / t for m, t in zip(mine_tps, their_tps, strict=True))
            detail = {"this_build_tok_s": statistics.median(mine_tps), f"{name}_tok_s": statistics.median(their_tps)}
            figures.append(Figure(f"build_speed_ratio[{name}]", ratio, 0.95, "higher", "×", detail))
    finally:
        ours.close()
    return figures


def _serve_bare(model: str, threads: int, prompt_file: str) -> None:
    """The bare side: load once, then decode from the same tokens for each "go" line."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=model, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, flash_attn=True, verbose=False
    )
    tokens = [int(t) for t in Path(prompt_file).read_text().split()]
    print("ready", flush=True)
    for _ in sys.stdin:
        stamps = []
        for n, token in enumerate(llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0)):
            stamps.append(time.perf_counter())
            if n + 1 >= MAX_TOKENS or llm.token_eos() == token:
                break
        print((len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else 0.0, flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    _serve_bare(sys.argv[2], int(sys.argv[3]), sys.argv[4])
