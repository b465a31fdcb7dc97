"""Checkpoints and run folders under fault injection (issue 15, "Checkpoints and files").

Every fault ends in one of two ways, never a third: the run resumes (from the damaged
checkpoint if the fault did not change it, else from the previous one, with a warning)
and ends bit for bit where an uninterrupted run does; or a clear CheckpointError /
RunFolderInUse, with the previous checkpoint left in place. Tiny MLP, 192 samples:
the whole file runs in seconds.

The first part has one test per item of the issue; the second is the campaign (edits,
truncations and byte flips of each file, foreign folders, symlinks, concurrent writers).
"""
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustops.train import CrossEntropy, Trainer, load_checkpoint, load_weights, save_checkpoint
from robustops.train.checkpoint import CheckpointError, checkpoint_folders

ROOT = pathlib.Path(__file__).resolve().parents[2]
# 192 samples / 32 = 6 steps per epoch, 2 epochs; checkpoints at steps 4, 6 (epoch end), 8
# and 12. The "killed" run stops during step 11: step-8 (newest) and step-6 are on disk.
KW = dict(batch_size=32, epochs=2, lr=0.05, checkpoint_every=4, progress=False, log_every=1, seed=0)
NEWEST, PREVIOUS = 8, 6


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(192, 1, 8, 8, generator=g), torch.randint(0, 10, (192,), generator=g))


DATA = _data()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: tiny matrices, and no spinning against other processes on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(seed=0, hidden=16):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class _Killed(Exception):
    pass


class _DiesAt(CrossEntropy):
    """CrossEntropy that 'kills' the run when asked for step `n`."""

    def __init__(self, n):
        super().__init__()
        self.n, self.calls = n, 0

    def compute(self, model, x, y, replay=0):
        self.calls += 1
        if self.calls == self.n:
            raise _Killed
        return super().compute(model, x, y, replay=replay)


def _trainer(out, model=None, **kw):
    return Trainer(model if model is not None else _mlp(seed=7), kw.pop("objective", CrossEntropy()),
                   DATA, out_dir=out, **{**KW, **kw})


def _metrics(out):
    records = [json.loads(x) for x in (pathlib.Path(out) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("seconds", None)
    return records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(reference: an uninterrupted run, killed: a run stopped during step 11)."""
    base = tmp_path_factory.mktemp("runs")
    ref, killed = base / "ref", base / "killed"
    _trainer(ref, model=_mlp()).fit()
    with pytest.raises(_Killed):
        _trainer(killed, model=_mlp(), objective=_DiesAt(NEWEST + 3)).fit()
    assert [s for s, _ in checkpoint_folders(killed / "checkpoints")] == [NEWEST, PREVIOUS]
    return ref, killed


@pytest.fixture
def run(runs, tmp_path):
    """A fresh copy of the killed run's folder."""
    out = tmp_path / "run"
    shutil.copytree(runs[1], out, symlinks=True)
    return out


def _step(out, n):
    return out / "checkpoints" / f"step-{n:08d}"


def _recompute_checksum(folder):
    """Rewrite state.json's own checksum after an edit (a forged, consistent edit), so that
    the checks behind the checksum are reached. A no-op for checkpoints without one."""
    path = folder / "state.json"
    doc = json.loads(path.read_text())
    if "checksum" in doc:
        body = {k: v for k, v in doc.items() if k != "checksum"}
        doc["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                    ensure_ascii=True).encode()).hexdigest()
    path.write_text(json.dumps(doc))


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _finish(out, ref, expect_step):
    """Resume `out`, check it starts at `expect_step` (warning iff it fell back), train to
    the end: weights and metrics must equal the uninterrupted run's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer(out)
    fell_back = [w for w in caught if "previous checkpoint" in str(w.message)]
    assert trainer.global_step == expect_step
    assert bool(fell_back) == (expect_step != NEWEST), [str(w.message) for w in caught]
    if expect_step == PREVIOUS:  # the previous checkpoint is there, and intact
        assert load_checkpoint(_step(out, PREVIOUS))["global_step"] == PREVIOUS
    trainer.fit()
    assert _same_weights(load_weights(out / "model.safetensors"), load_weights(ref / "model.safetensors"))
    assert _metrics(out) == _metrics(ref)
    assert [s for s, _ in checkpoint_folders(out / "checkpoints")] == [12, NEWEST]
    return trainer


def _refused(out, match, **kw):
    """A clear CheckpointError; both checkpoints left as they were."""
    before = {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=match):
        _trainer(out, **kw)
    assert before == {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}


# ============================================================ the items, one test each

VALID_EDITS = {  # each keeps state.json valid JSON and changes what the run would do
    "global_step+3": ('["global_step", 8]', '["global_step", 11]'),
    "epoch+1": ('["epoch", 1]', '["epoch", 2]'),
    "weight_decay": ('["weight_decay", 0.0005]', '["weight_decay", 0.5]'),
    "momentum": ('["momentum", 0.9]', '["momentum", 0.5]'),
    "nesterov": ('["nesterov", true]', '["nesterov", false]'),
}


@pytest.mark.parametrize("edit", sorted(VALID_EDITS))
def test_valid_json_edits_of_state_json_are_detected(run, runs, edit):
    """state.json is covered by a checksum: an edit that is still valid JSON no longer
    resumes silently (it used to, and changed the final weights)."""
    path = _step(run, NEWEST) / "state.json"
    old, new = VALID_EDITS[edit]
    text = path.read_text()
    assert text.count(old) == 1, (edit, old)
    path.write_text(text.replace(old, new))
    with pytest.raises(CheckpointError, match="corrupt or was edited"):
        load_checkpoint(_step(run, NEWEST))
    _finish(run, runs[0], PREVIOUS)


@pytest.mark.parametrize("damage", ["global_step_key", "no_model", "no_optimizer", "unknown_dtype",
                                    "epoch_is_text", "model_is_list", "window_garbage", "rng_missing",
                                    "model_of_another_net", "bad_tensor_reference"])
def test_damaged_state_raises_checkpoint_error_and_falls_back(run, runs, damage):
    """Damage behind a valid checksum (a consistent forgery, or a checkpoint of another
    model) is still a CheckpointError and the previous checkpoint is used: no KeyError,
    AttributeError or TypeError traceback blocks the resume."""
    folder = _step(run, NEWEST)
    if damage == "model_of_another_net":
        state = load_checkpoint(folder)
        state["model"] = _mlp(hidden=12).state_dict()
        save_checkpoint(state, folder)
    else:
        path = folder / "state.json"
        text = path.read_text()
        new = {
            "global_step_key": lambda t: t.replace('["global_step"', '["globalAstep"'),
            "no_model": lambda t: t.replace('["model"', '["modeX"'),
            "no_optimizer": lambda t: t.replace('["optimizer"', '["optimizeX"'),
            "unknown_dtype": lambda t: t.replace('["world", 1]', '["world", {"__dtype__": "load"}]'),
            "epoch_is_text": lambda t: t.replace('["epoch", 1]', '["epoch", "1"]'),
            "model_is_list": lambda t: t.replace('["model", {"__dict__"', '["model", {"__list__"'),
            "window_garbage": lambda t: t.replace('["count", 0]', '["count", 0.5]'),
            "rng_missing": lambda t: t.replace('["rng"', '["rnX"'),
            "bad_tensor_reference": lambda t: t.replace('{"__tensor__": "rng"}', '{"__tensor__": "nope"}'),
        }[damage](text)
        assert new != text, damage
        path.write_text(new)
        _recompute_checksum(folder)
    _finish(run, runs[0], PREVIOUS)  # the resume caught a CheckpointError, warned, fell back


@pytest.mark.parametrize("name", ["load", "save", "nn", "manual_seed", "__builtins__", "float32.x", 3, None])
def test_dtype_tag_accepts_only_dtype_names(tmp_path, name):
    folder = save_checkpoint({"d": torch.float16, "t": torch.ones(1)}, tmp_path / "c")
    path = folder / "state.json"
    path.write_text(path.read_text().replace('"float16"', json.dumps(name)))
    _recompute_checksum(folder)
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(folder)


def test_dtype_tag_round_trips_every_dtype(tmp_path):
    dtypes = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
              torch.int64, torch.bool, torch.complex64]
    back = load_checkpoint(save_checkpoint({"d": dtypes}, tmp_path / "c"))
    assert back["d"] == dtypes


def _flip(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_final_weights_carry_a_checksum_and_a_flipped_byte_is_refused(runs, tmp_path):
    src = runs[0] / "model.safetensors"
    from safetensors import safe_open
    with safe_open(str(src), framework="pt") as f:
        assert "robustops.sha256" in f.metadata()
    path = tmp_path / "model.safetensors"
    shutil.copy(src, path)
    _flip(path, path.stat().st_size - 5)  # a byte of the last tensor's data
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)


def test_eval_on_weights_with_a_flipped_data_byte_fails_clearly(runs, tmp_path, capsys):
    """`robustops eval` used to exit 0 and print a table for such weights."""
    pytest.importorskip("sklearn")
    from robustops import cli
    from robustops.config import load
    from robustops.config import build_dataset, build_model

    cfg = load(None, [("data", "dataset", "digits", "--dataset")])
    _, meta = build_dataset(cfg, "test")
    path = tmp_path / "model.safetensors"
    from robustops.train import save_weights
    torch.manual_seed(0)
    save_weights(build_model(cfg, meta).state_dict(), path)
    _flip(path, path.stat().st_size - 3, bit=6)
    args = ["eval", "--dataset", "digits", "--weights", str(path), "--samples", "16", "--steps", "1"]
    try:
        rc = cli.main(args)
    except CheckpointError as exc:  # main() does not yet turn it into a one-line error
        assert "corrupt" in str(exc)
    else:
        assert rc != 0 and "corrupt" in capsys.readouterr().err
    assert "worst case" not in capsys.readouterr().out


_HOLDER = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); "
           "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid %d on test' % os.getpid()); "
           "print('locked', flush=True); time.sleep(120)")


@contextlib.contextmanager
def _lock_held_by_another_process(folder):
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder / ".lock")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_a_second_run_on_one_folder_is_refused_and_a_killed_runs_lock_is_not(run, runs):
    from robustops.train.checkpoint import RunFolderInUse

    metrics = (run / "metrics.jsonl").read_bytes()
    with _lock_held_by_another_process(run) as holder:
        with pytest.raises(RunFolderInUse, match=rf"in use by another run \(pid {holder.pid} on test\)"):
            _trainer(run)
        assert (run / "metrics.jsonl").read_bytes() == metrics  # not even trimmed
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (run / ".lock").exists()  # the killed holder's lock file is left: no matter
    _finish(run, runs[0], NEWEST)


def test_two_trainers_of_one_process_do_not_write_one_folder(run, runs):
    """While one Trainer trains, a second (here: built from its eval_fn) is refused; once
    the first is done the folder is free again."""
    from robustops.train.checkpoint import RunFolderInUse

    seen = []

    def eval_fn(model):
        with pytest.raises(RunFolderInUse, match="another Trainer of this process"):
            _trainer(run)
        seen.append(1)
        return {}

    first = _trainer(run, eval_fn=eval_fn)
    idle = _trainer(run)  # takes the folder over from `first`, which is not training
    del idle
    first.fit()
    assert seen == [1]
    _trainer(run, epochs=3).close()


class _Pauses(CrossEntropy):
    """CrossEntropy that, at its first step, says so and waits to be released."""

    def __init__(self):
        super().__init__()
        self.inside, self.go = threading.Event(), threading.Event()

    def compute(self, model, x, y, replay=0):
        if not self.inside.is_set():
            self.inside.set()
            assert self.go.wait(60)
        return super().compute(model, x, y, replay=replay)


def test_a_trainer_started_while_another_thread_trains_is_refused(run, runs):
    from robustops.train.checkpoint import RunFolderInUse

    objective = _Pauses()
    first = _trainer(run, objective=objective)
    errors = []
    thread = threading.Thread(target=lambda: first.fit())
    thread.start()
    try:
        assert objective.inside.wait(60)
        with pytest.raises(RunFolderInUse, match="another Trainer of this process"):
            _trainer(run)
    finally:
        objective.go.set()
        thread.join(60)
    assert not thread.is_alive()
    assert _same_weights(load_weights(run / "model.safetensors"), load_weights(runs[0] / "model.safetensors"))
    assert _metrics(run) == _metrics(runs[0])


_TINY_CLI_RUN = ["--dataset", "digits", "--objective", "ce", "--epochs", "1", "--batch-size", "256",
                 "--checkpoint-every", "2", "--eval-samples", "16", "--eval-steps", "1"]


def test_planted_symlink_at_the_cli_config_temporary_is_not_followed(tmp_path):
    """`robustops train` wrote config.toml through out/config.toml.tmp, a planted link."""
    pytest.importorskip("sklearn")
    from robustops import cli

    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    (out / "config.toml.tmp").symlink_to(victim)
    assert cli.main(["train", *_TINY_CLI_RUN, "--out", str(out)]) == 0
    assert victim.read_text() == "precious"
    assert not (out / "config.toml").is_symlink() and "[data]" in (out / "config.toml").read_text()


def test_planted_symlink_at_the_metrics_temporary_is_not_followed(run, runs, tmp_path):
    """Resuming rewrote metrics.jsonl through out/metrics.tmp, followed if a link."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / "metrics.tmp").symlink_to(victim)
    _finish(run, runs[0], NEWEST)
    assert victim.read_text() == "precious"


def test_leftover_temporaries_of_a_killed_save_are_removed_on_start(run, runs):
    root = run / "checkpoints"
    shutil.copytree(_step(run, NEWEST), root / ".step-00000009.k2j4l1.tmp")  # a save cut short
    (root / ".step-00000010.abc.tmp").mkdir()
    (root / ".step-00000010.abc.tmp" / "tensors.safetensors").write_bytes(b"\0" * 10)
    (run / ".model.safetensors.x1y2.tmp").write_bytes(b"half a file")
    _finish(run, runs[0], NEWEST)
    assert not list(run.rglob("*.tmp"))


def test_a_resave_cut_between_its_renames_is_restored(run, runs):
    """Re-saving step-N moves the old folder to .step-N.old first: killed right then, the
    next start moves it back."""
    os.replace(_step(run, NEWEST), run / "checkpoints" / f".step-{NEWEST:08d}.old")
    _finish(run, runs[0], NEWEST)
    assert not list((run / "checkpoints").glob(".*"))


# ============================================================ the campaign

def _state_flip_offsets(path, n=24):
    size = path.stat().st_size
    text = path.read_bytes()
    marked = [text.find(b'"global_step"') + 3, text.find(b'"checksum"') + 15, text.find(b'"sha256"') + 12,
              text.find(b'"format"') + 10, text.find(b'weight_decay') + 15, 0, size - 1]
    return sorted(set(marked + [round(i * (size - 1) / (n - 1)) for i in range(n)]))


def _tensor_flip_offsets(path, n=16):
    size = path.stat().st_size
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    head = [0, 3, 7, 9, header // 2, header - 1]
    return sorted(set(head + [header + round(i * (size - header - 1) / (n - 1)) for i in range(n)]))


def _outcome(out, ref):
    """Resume and finish `out`: the run must either end identical to `ref` (from the newest
    checkpoint, or from the previous one with a warning), or stop with a CheckpointError that
    leaves the checkpoints as they were. Returns 'identical' | 'fallback' | 'error'."""
    before = {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer = _trainer(out)
        except CheckpointError:
            assert before == {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
            return "error"
    warned = any("previous checkpoint" in str(w.message) for w in caught)
    assert trainer.global_step in (NEWEST, PREVIOUS)
    assert warned == (trainer.global_step == PREVIOUS)
    trainer.fit()
    assert _same_weights(load_weights(out / "model.safetensors"), load_weights(ref / "model.safetensors"))
    assert _metrics(out) == _metrics(ref)
    return "fallback" if warned else "identical"


def _flip_cases():
    # offsets are computed from the module's killed run; ids name file and offset
    return [("state.json", i) for i in range(31)] + [("tensors.safetensors", i) for i in range(22)]


@pytest.mark.parametrize("which,index", _flip_cases(), ids=lambda v: str(v))
def test_byte_flip_in_a_checkpoint_file(run, runs, which, index):
    path = _step(run, NEWEST) / which
    offsets = (_state_flip_offsets if which == "state.json" else _tensor_flip_offsets)(path)
    if index >= len(offsets):
        pytest.skip("fewer distinct offsets in this file")
    _flip(path, offsets[index], bit=index % 8)
    # A changed byte is noticed, except one that leaves state.json's content the same
    # (e.g. "1e-05" -> "1E-05"): then the run resumes from it, identically.
    assert _outcome(run, runs[0]) in (("fallback", "identical") if which == "state.json" else ("fallback",))


@pytest.mark.parametrize("which", ["state.json", "tensors.safetensors"])
@pytest.mark.parametrize("keep", [0, 1, 8, 0.5, -1])
def test_truncated_checkpoint_file(run, runs, which, keep):
    path = _step(run, NEWEST) / which
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    assert _outcome(run, runs[0]) == "fallback"


@pytest.mark.parametrize("fault", [
    "delete_state", "delete_tensors", "empty_folder", "swap_tensors_with_previous",
    "swap_state_with_previous", "previous_copied_over_newest", "state_is_a_folder",
    "tensors_symlink_to_previous", "folder_symlink_to_previous", "reformatted_json",
    "format_2", "foreign_checkpoint", "step_is_a_file", "garbage_folder_named_step",
    "newest_also_damaged_previous_too", "other_batch_size"])
def test_folder_level_faults(run, runs, fault):
    newest, previous = _step(run, NEWEST), _step(run, PREVIOUS)
    expect = "fallback"
    if fault == "delete_state":
        (newest / "state.json").unlink()
    elif fault == "delete_tensors":
        (newest / "tensors.safetensors").unlink()
    elif fault == "empty_folder":
        shutil.rmtree(newest)
        newest.mkdir()
    elif fault == "swap_tensors_with_previous":
        shutil.copy(previous / "tensors.safetensors", newest / "tensors.safetensors")
    elif fault == "swap_state_with_previous":
        shutil.copy(previous / "state.json", newest / "state.json")
    elif fault == "previous_copied_over_newest":  # a whole, consistent checkpoint of step 6
        shutil.rmtree(newest)
        shutil.copytree(previous, newest)
        expect = "identical-from-previous"
    elif fault == "state_is_a_folder":
        (newest / "state.json").unlink()
        (newest / "state.json").mkdir()
    elif fault == "tensors_symlink_to_previous":
        (newest / "tensors.safetensors").unlink()
        (newest / "tensors.safetensors").symlink_to(previous / "tensors.safetensors")
    elif fault == "folder_symlink_to_previous":
        shutil.rmtree(newest)
        newest.symlink_to(previous)
        expect = "identical-from-previous"
    elif fault == "reformatted_json":  # same content, other whitespace: not damage
        doc = json.loads((newest / "state.json").read_text())
        (newest / "state.json").write_text(json.dumps(doc, indent=2))
        expect = "identical"
    elif fault == "format_2":  # an older robustops's checkpoint (no checksum)
        doc = json.loads((newest / "state.json").read_text())
        doc["format"] = 2
        del doc["checksum"]
        (newest / "state.json").write_text(json.dumps(doc))
    elif fault == "foreign_checkpoint":
        shutil.rmtree(newest)
        save_checkpoint({"hello": torch.ones(2)}, newest)
    elif fault == "step_is_a_file":
        shutil.rmtree(newest)
        newest.write_text("not a folder")
        expect = "identical-from-previous"  # not a checkpoint folder: not considered
    elif fault == "garbage_folder_named_step":
        shutil.rmtree(newest)
        newest.mkdir()
        (newest / "state.json").write_text('{"format": 3, "state": 1}')
        (newest / "tensors.safetensors").write_bytes(os.urandom(100))
    elif fault == "newest_also_damaged_previous_too":
        _flip(newest / "tensors.safetensors", 100)
        _flip(previous / "state.json", 50)
        _refused(run, "no usable checkpoint")
        return
    elif fault == "other_batch_size":
        _refused(run, "no usable checkpoint.*steps per epoch", batch_size=16)
        return
    if expect == "identical-from-previous":  # nothing damaged to warn of: resumes at 6
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            trainer = _trainer(run)
        assert trainer.global_step == PREVIOUS
        trainer.fit()
        assert _same_weights(load_weights(run / "model.safetensors"),
                             load_weights(runs[0] / "model.safetensors"))
        assert _metrics(run) == _metrics(runs[0])
        return
    assert _outcome(run, runs[0]) == expect


@pytest.mark.parametrize("index", range(24))
def test_byte_flip_in_final_weights(runs, tmp_path, index):
    src = runs[0] / "model.safetensors"
    path = tmp_path / "model.safetensors"
    shutil.copy(src, path)
    size = path.stat().st_size
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    offsets = [0, 2, 7, 8, header // 3, header // 2, header - 40, header - 1] + \
        [header + round(i * (size - header - 1) / 15) for i in range(16)]
    _flip(path, offsets[index], bit=index % 8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "cannot be verified" would be an error here
            got = load_weights(path)
    except CheckpointError as exc:
        assert "corrupt" in str(exc)
        return
    assert _same_weights(got, load_weights(src))  # a header byte that changes nothing


@pytest.mark.parametrize("keep", [0, 7, 8, 100, 0.5, -1])
def test_truncated_final_weights(runs, tmp_path, keep):
    path = tmp_path / "model.safetensors"
    data = (runs[0] / "model.safetensors").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)


def test_out_dir_that_is_a_file_or_has_a_file_for_checkpoints(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        _trainer(tmp_path / "file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("x")
    with pytest.raises(CheckpointError, match="not a folder"):
        _trainer(tmp_path / "run")


def test_lock_file_planted_as_a_symlink_is_refused(tmp_path):
    from robustops.train.checkpoint import RunFolderInUse

    out, victim = tmp_path / "run", tmp_path / "victim"
    out.mkdir()
    victim.write_text("precious")
    (out / ".lock").symlink_to(victim)
    with pytest.raises(RunFolderInUse, match="symbolic link"):
        _trainer(out)
    assert victim.read_text() == "precious"


def test_planted_links_at_final_weights_and_old_folder_are_replaced_not_followed(run, runs, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (run / "model.safetensors").symlink_to(victim / "keep.txt")
    (run / "checkpoints" / f".step-{12:08d}.old").symlink_to(victim)
    _finish(run, runs[0], NEWEST)
    assert (victim / "keep.txt").read_text() == "precious"
    assert not (run / "model.safetensors").is_symlink()


def test_fresh_start_in_a_used_folder_starts_a_fresh_log(run, runs):
    """With its checkpoints deleted, a run folder's old metrics lines are not kept in front
    of the new run's (they used to be: duplicated steps)."""
    shutil.rmtree(run / "checkpoints")
    _trainer(run, model=_mlp()).fit()
    assert _metrics(run) == _metrics(runs[0])


def test_resume_false_replaces_the_old_runs_checkpoints(run, runs):
    """resume=False in a used folder: the old run's newer checkpoints must not be kept in
    place of the new run's (they were: the new step-4 was pruned as the oldest)."""
    trainer = _trainer(run, resume=False, epochs=1, checkpoint_every=100)
    assert trainer.global_step == 0
    trainer.fit()
    assert [s for s, _ in checkpoint_folders(run / "checkpoints")] == [6]
    assert load_checkpoint(_step(run, 6))["epoch"] == 1


def test_cli_train_on_a_folder_another_process_writes_is_refused(tmp_path, capsys):
    """`robustops train` into a folder another run holds: refused before it writes anything
    (two such runs used to both exit 0, with duplicate lines in metrics.jsonl)."""
    pytest.importorskip("sklearn")
    from robustops import cli
    from robustops.train.checkpoint import RunFolderInUse

    out = tmp_path / "run"
    with _lock_held_by_another_process(out) as holder:
        try:
            rc = cli.main(["train", *_TINY_CLI_RUN, "--out", str(out)])
        except RunFolderInUse as exc:  # main() does not yet turn it into a one-line error
            message = str(exc)
        else:
            assert rc != 0
            message = capsys.readouterr().err
    assert f"in use by another run (pid {holder.pid} on test)" in message
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


@pytest.mark.slow
def test_two_cli_processes_on_one_folder(tmp_path):
    """Two `robustops train` processes started together on one folder: one is refused with a
    clear message (or, if the first was done before the second started, the second resumes
    it); never duplicate metric lines. Slow: two interpreters import robustops."""
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-m", "robustops", "train", *_TINY_CLI_RUN, "--out", str(out)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert any(rc == 0 for rc, _, _ in results), results
    for rc, _, stderr in results:
        assert rc == 0 or "in use by another run" in stderr, stderr[-2000:]
    steps = [r["step"] for r in _metrics(out) if "eval" not in r]
    assert len(steps) == len(set(steps))
