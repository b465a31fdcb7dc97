"""`robustops gpu-check`: check an install end to end in one command (goal: under 8 minutes
on one GPU), with a pass/fail line and the time of every stage.

Stages, each a fresh Python process (so the check sees what a user's script sees, and one
crashing stage cannot take the others down), its output in ``<out>/<stage>.log``:

1. ``install``: torch sees the device; which robustops backends run on it (CUDA form:
   the op library's CUDA kernels or Triton must be there, Triton compiled, not
   interpreted).
2. ``tests``: every ``cuda``-marked test (``python -m pytest -m cuda tests``). CUDA form:
   TRITON_INTERPRET is removed from the environment, so the Triton kernels are compiled
   for the GPU (tests/conftest.py turns the interpreter on only without a GPU), and at
   least one test must pass. CPU form: the same selection, which skips without a GPU:
   what it checks is that the GPU tests still import and collect.
3. ``bench``: ``robustops bench --quick --device <device>`` (CUDA: every section with
   CUDA cases, synchronised timing; CPU: the pgd_step section), JSON in ``<out>``.
4. ``quickstart``: ``robustops quickstart --size tiny --device <device>`` (every family).

The CPU form (``--device cpu``) runs in CI (.ci/run) so that the command itself cannot rot.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch

STAGES = ("install", "tests", "bench", "quickstart")
# The budget for the whole CUDA form on one GPU.
GOAL_SECONDS = 8 * 60
# Sections of `robustops bench` with CUDA cases (the rest compare with CPU libraries).
CUDA_BENCH_SECTIONS = ("pgd_step", "part_moments", "vone", "attributions")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: a command run in `cwd`, its environment changed by `env` (None unsets)."""

    name: str
    argv: List[str]
    timeout: float
    env: Dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
    cwd: Optional[str] = None
    # CUDA form of the tests stage: a run in which no test passed (all skipped) is a failure.
    need_passed: bool = False
    skip_reason: Optional[str] = None  # set: the stage cannot run here, and why


@dataclasses.dataclass
class StageResult:
    """What one stage did: status PASS | FAIL | SKIP, seconds, and a one-line detail."""

    name: str
    status: str
    seconds: float
    detail: str
    log: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"


def source_root() -> pathlib.Path:
    """The folder holding the robustops package (a source checkout also has tests/ there)."""
    return pathlib.Path(__file__).resolve().parent.parent


def plan(device: torch.device, out: pathlib.Path, only: Optional[Sequence[str]] = None
         ) -> List[Stage]:
    """The stages of the check for `device` ('cpu' or 'cuda[:i]'), writing under `out`."""
    py, dev = sys.executable, str(device)
    cuda = device.type == "cuda"
    # CUDA form: the Triton kernels compiled for the GPU, never interpreted.
    env: Dict[str, Optional[str]] = {"TRITON_INTERPRET": None} if cuda else {}
    root = source_root()
    tests = root / "tests"
    sections = CUDA_BENCH_SECTIONS if cuda else ("pgd_step",)
    stages = [
        Stage("install", [py, "-m", "robustops.gpu_check", "--install-report", dev], 120, env),
        Stage("tests", [py, "-m", "pytest", "-m", "cuda", str(tests), "-q", "-rs",
                        "-p", "no:cacheprovider"], 300, env, cwd=str(root), need_passed=cuda,
              skip_reason=None if tests.is_dir() else
              f"no tests/ folder beside the package ({root}): installed from a wheel; the GPU "
              "tests ship with a source checkout (pip install -e .)"),
        Stage("bench", [py, "-m", "robustops", "bench", "--quick", "--device", dev,
                        *[a for s in sections for a in ("--only", s)],
                        "--json", str(out / "bench.json")], 300, env),
        Stage("quickstart", [py, "-m", "robustops", "quickstart", "--size", "tiny",
                             "--device", dev, "--out", str(out / "quickstart"),
                             "--no-progress"], 420, env),
    ]
    if only:
        bad = sorted(set(only) - set(STAGES))
        if bad:
            raise ValueError(f"unknown stage {', '.join(bad)}: choose from {', '.join(STAGES)}")
        stages = [s for s in stages if s.name in only]
    return stages


def _environment(changes: Dict[str, Optional[str]]) -> Dict[str, str]:
    env = dict(os.environ)
    # The stages import robustops from where this process found it (a checkout not
    # installed, PYTHONPATH), not from another copy on the path.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(source_root())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _pytest_summary(text: str) -> str:
    """pytest's last summary line ('3 passed, 2 skipped in 4.1s'), or ''."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip("= ").strip()
        if " in " in line and any(w in line for w in ("passed", "skipped", "failed", "error",
                                                      "deselected", "no tests ran")):
            return line
    return ""


def run_stage(stage: Stage, log_dir: pathlib.Path) -> StageResult:
    """Run one stage (killed with its process group after stage.timeout seconds)."""
    if stage.skip_reason:
        return StageResult(stage.name, "SKIP", 0.0, stage.skip_reason)
    log = log_dir / f"{stage.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write(f"$ {' '.join(stage.argv)}\n")
        f.flush()
        proc = subprocess.Popen(stage.argv, stdout=f, stderr=subprocess.STDOUT, cwd=stage.cwd,
                                env=_environment(stage.env), start_new_session=True)
        try:
            code: Optional[int] = proc.wait(timeout=stage.timeout)
        except subprocess.TimeoutExpired:
            # The whole group: pytest and the quickstart may have children of their own.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    summary = _pytest_summary(text) if stage.name == "tests" else ""
    if code is None:
        return StageResult(stage.name, "FAIL", seconds,
                           f"timed out after {stage.timeout:.0f} s", str(log))
    if code != 0:
        last = summary or next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
        return StageResult(stage.name, "FAIL", seconds, f"exit {code}: {last.strip()}"[:200],
                           str(log))
    if stage.need_passed and "passed" not in summary:
        return StageResult(stage.name, "FAIL", seconds,
                           f"no test passed ({summary or 'no summary'}): the GPU tests skipped; "
                           "see the skip reasons in the log", str(log))
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "ok")
    return StageResult(stage.name, "PASS", seconds, (summary or last)[:200], str(log))


def format_summary(results: Sequence[StageResult], device: torch.device, total: float) -> str:
    """The closing table: one line per stage, then the verdict and the total time."""
    width = max([len("stage")] + [len(r.name) for r in results])
    lines = [f"{'stage':<{width}}  result  seconds  detail"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {r.detail[:120]}"
              for r in results]
    table = "\n".join(lines)
    failed = [r.name for r in results if r.status == "FAIL"]
    verdict = (f"gpu-check ({device}): FAIL ({', '.join(failed)})" if failed
               else f"gpu-check ({device}): PASS")
    verdict += f" in {total:.0f} s"
    if device.type == "cuda" and total > GOAL_SECONDS:
        verdict += f" (over the {GOAL_SECONDS // 60}-minute goal)"
    return f"{table}\n{verdict}"


def run(device: str = "cuda", out: Optional[str] = None, only: Optional[Sequence[str]] = None,
        stages: Optional[Sequence[Stage]] = None, echo=print) -> int:
    """Run the check and print its summary; 0 when no stage failed, 1 otherwise.

    device: 'cuda[:i]' or 'cpu' (ValueError when torch sees no such device). out: a new
    or empty folder for the logs, the bench JSON and the quickstart run (default: a fresh
    temporary folder, kept). stages: replaces plan()'s (tests of the orchestration).
    """
    from .bench.timing import bench_device

    dev = bench_device(device)
    if out is None:
        folder = pathlib.Path(tempfile.mkdtemp(prefix="robustops-gpu-check-"))
    else:
        folder = pathlib.Path(out)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValueError(f"--out {folder}: not an empty folder (the quickstart stage would "
                             "resume the run there); name a new folder")
        folder.mkdir(parents=True, exist_ok=True)
    todo = list(stages) if stages is not None else plan(dev, folder, only)
    echo(f"robustops gpu-check on {dev}: {', '.join(s.name for s in todo)}; logs in {folder}",
         flush=True)
    results, t0 = [], time.perf_counter()
    for i, stage in enumerate(todo, 1):
        echo(f"[{i}/{len(todo)}] {stage.name}: {' '.join(stage.argv)}", flush=True)
        result = run_stage(stage, folder)
        results.append(result)
        echo(f"      {result.status} in {result.seconds:.1f} s: {result.detail}", flush=True)
        if result.status == "FAIL" and result.log:
            tail = pathlib.Path(result.log).read_text(errors="replace").splitlines()[-15:]
            echo("\n".join(f"      | {line}" for line in tail), flush=True)
    echo("", flush=True)
    echo(format_summary(results, dev, time.perf_counter() - t0), flush=True)
    return 0 if all(r.ok for r in results) else 1


def install_report(device: str) -> int:
    """The install stage (run in its own process): what torch and robustops see on `device`;
    exit 1 when robustops has no compiled kernels for it."""
    from . import backend
    from .bench.timing import device_name

    dev = torch.device(device)
    names = backend.available()
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), device {dev}: "
          f"{device_name(dev) if dev.type == 'cpu' or torch.cuda.is_available() else 'absent'}")
    print(f"robustops backends: {', '.join(names)}; "
          f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            print("FAIL: torch sees no CUDA GPU")
            return 1
        gpu = [n for n in ("cuda", "triton") if n in names]
        if not gpu or backend.triton_interpreted() and gpu == ["triton"]:
            print("FAIL: no GPU backend: the op library was built without CUDA (rebuild with "
                  "nvcc on the PATH, ROBUSTOPS_CUDA=1) and Triton is missing or interpreted")
            return 1
        missing = sorted({"cuda", "triton"} - set(gpu))
        print(f"GPU backends: {', '.join(gpu)}" + (f" (missing: {', '.join(missing)})"
                                                    if missing else ""))
    elif "cpp" not in names:
        print("FAIL: the C++ CPU kernels are not loaded (see the warning above)")
        return 1
    return 0


if __name__ == "__main__":  # the install stage: python -m robustops.gpu_check --install-report DEV
    if len(sys.argv) == 3 and sys.argv[1] == "--install-report":
        sys.exit(install_report(sys.argv[2]))
    print("usage: robustops gpu-check [--device cuda|cpu] (this module's own entry point only "
          "serves the install stage)", file=sys.stderr)
    sys.exit(2)
