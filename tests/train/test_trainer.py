"""The training loop: it learns, it resumes bit-for-bit after a kill, it runs data-parallel under torchrun."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from priordepth_core.data import FrameSamples, TumRgbdReader
from priordepth_core.train.checkpoint import load_checkpoint
from priordepth_core.train.config import load_config
from priordepth_core.train.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]

BASE = ["model.lite=true", "model.keypoint_lite=true", "model.descriptor_dim=32", "model.max_depth=20.0",
        "data.height=64", "data.width=96", "optim.batch_size=2", "optim.lr=1e-3", "run.log_every=1",
        "run.image_every=2", "run.eval_max_depth=20.0"]


def _write_config(tmp_path: Path, sequence: Path, out_dir: Path, extra=(), name: str = "tiny.yaml") -> Path:
    lines = ["name: tiny", "data:", "  kind: tum", f"  path: {sequence}", "  height: 64", "  width: 96",
             "model:", "  lite: true", "  keypoint_lite: true", "  descriptor_dim: 32", "  max_depth: 20.0",
             "optim:", "  batch_size: 2", "  lr: 1.0e-3", "run:", f"  out_dir: {out_dir}", "  log_every: 1"]
    path = tmp_path / name
    path.write_text("\n".join(lines + list(extra)) + "\n")
    return path


def _trainer(plane_sequence, out_dir, overrides=(), resume=False):
    config = load_config(overrides=[*BASE, f"run.out_dir={out_dir}", *overrides])
    dataset = FrameSamples(TumRgbdReader(plane_sequence), (64, 96), (-1, 1))
    return Trainer(config, resume=resume, train_set=dataset, test_set=dataset)


def _parameters(state):
    return {k: v for k, v in state.items() if v.is_floating_point()}


def test_fit_writes_checkpoints_logs_and_reduces_the_loss(plane_sequence, tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(plane_sequence, tmp_path / "run", ["optim.max_steps=15", "run.checkpoint_every=5"])
    first = trainer.train_step(next(iter(trainer._loader())))["loss"]
    trainer.step = 1
    history = trainer.fit()
    trainer.close()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 15 and "model" in state and "optimizer" in state
    assert (tmp_path / "run" / "config.json").is_file()
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    assert history and "abs_rel" in history[-1]
    last = trainer.train_step(next(iter(trainer._loader())))["loss"]
    assert last < first  # 15 steps on one textured plane must lower the photometric loss


def test_refuses_to_overwrite_and_to_resume_nothing(plane_sequence, tmp_path):
    trainer = _trainer(plane_sequence, tmp_path / "run", ["optim.max_steps=1", "run.eval_each_epoch=false"])
    trainer.fit()
    trainer.close()
    with pytest.raises(FileExistsError, match="--resume"):
        _trainer(plane_sequence, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _trainer(plane_sequence, tmp_path / "other", resume=True)


def test_resume_is_bit_for_bit(plane_sequence, tmp_path):
    overrides = ["optim.max_steps=6", "run.checkpoint_every=3", "run.eval_each_epoch=false", "pose.source=pnp",
                 "loss.keypoint_weight=1.0", "pose.top_k=64", "pose.ransac_hypotheses=32", "pose.min_inliers=8"]
    reference = _trainer(plane_sequence, tmp_path / "ref", overrides)
    reference.fit()
    reference.close()

    first = _trainer(plane_sequence, tmp_path / "cut", [*overrides[:-4], "optim.max_steps=3", *overrides[4:]])
    first.fit()
    first.close()
    resumed = _trainer(plane_sequence, tmp_path / "cut", overrides, resume=True)
    assert resumed.step == 3
    resumed.fit()
    resumed.close()

    ref_state = _parameters(load_checkpoint(tmp_path / "ref" / "last.pt")["model"])
    cut_state = _parameters(load_checkpoint(tmp_path / "cut" / "last.pt")["model"])
    assert ref_state.keys() == cut_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], cut_state[key]), key


def _cli(*args):
    return [sys.executable, "-m", "priordepth_core.train", *args]


def test_cli_kill_and_resume(plane_sequence, tmp_path):
    """SIGKILL the CLI after its first checkpoint; --resume then finishes exactly like an uninterrupted run."""
    out = tmp_path / "killed"
    config = _write_config(tmp_path, plane_sequence, out, ["  checkpoint_every: 2", "  eval_each_epoch: false"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_cli("--config", str(config), "--set", "optim.max_steps=1000"), cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (out / "last.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(out / "last.pt")["step"]
    assert killed_at >= 2

    target = killed_at + 2
    subprocess.run(_cli("--config", str(config), "--resume", "--set", f"optim.max_steps={target}"), cwd=REPO_ROOT,
                   env=env, check=True, capture_output=True)
    reference_out = tmp_path / "reference"
    reference_config = _write_config(tmp_path, plane_sequence, reference_out,
                                     ["  checkpoint_every: 2", "  eval_each_epoch: false"], name="reference.yaml")
    subprocess.run(_cli("--config", str(reference_config), "--set", f"optim.max_steps={target}"), cwd=REPO_ROOT,
                   env=env, check=True, capture_output=True)
    resumed = _parameters(load_checkpoint(out / "last.pt")["model"])
    reference = _parameters(load_checkpoint(reference_out / "last.pt")["model"])
    assert load_checkpoint(out / "last.pt")["step"] == target
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key


def test_cli_reports_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 1\n")
    result = subprocess.run(_cli("--config", str(bad)), cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown config key 'optim.lrr'; did you mean 'optim.lr'?" in result.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("run.checkpoint_every=0", "error: config value run.checkpoint_every must be >= 1, got 0\n"),
    ("run.checkpoint_evry=5",
     "error: unknown config key 'run.checkpoint_evry'; did you mean 'run.checkpoint_every'?\n"),
])
def test_cli_rejects_bad_override_in_one_line(tmp_path, override, message):
    config = _write_config(tmp_path, tmp_path, tmp_path / "run")
    result = subprocess.run(_cli("--config", str(config), "--set", override), cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr == message
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_data_parallel_two_cpu_processes(plane_sequence, tmp_path):
    out = tmp_path / "ddp"
    config = _write_config(tmp_path, plane_sequence, out, ["  eval_each_epoch: false"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "priordepth_core.train", "--config", str(config),
               "--set", "optim.max_steps=3"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in _parameters(state["model"]).values())


def _assert_clean_output(text: str) -> None:
    assert "Traceback" not in text and "weights_only=False" not in text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stop_signal_saves_a_resumable_run(plane_sequence, tmp_path, signum):
    """SIGTERM/SIGINT end training after the current step: a checkpoint of that step, no temporary file, exit 128+N."""
    out = tmp_path / "stopped"
    config = _write_config(tmp_path, plane_sequence, out, ["  checkpoint_every: 2", "  eval_each_epoch: false"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_cli("--config", str(config), "--set", "optim.max_steps=1000"), cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "last.pt").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    stopped_at = load_checkpoint(out / "last.pt")["step"]
    assert f"stopped by {signal.Signals(signum).name} at step {stopped_at}" in stderr and "--resume" in stderr
    _assert_clean_output(stderr)
    assert not list(out.glob(".*.tmp"))

    resumed = subprocess.run(_cli("--config", str(config), "--resume", "--set", f"optim.max_steps={stopped_at + 1}"),
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(out / "last.pt")["step"] == stopped_at + 1


def test_start_removes_only_its_own_stale_temporary_files(plane_sequence, tmp_path, caplog):
    trainer = _trainer(plane_sequence, tmp_path / "run", ["optim.max_steps=1", "run.eval_each_epoch=false"])
    trainer.fit()
    trainer.close()
    stale = [".last.pt.k3j_x9q1.tmp", ".epoch_001.pt.abc123.tmp", ".previous.pt.zz_9.tmp"]
    foreign = [".notes.tmp", "last.pt.tmp", ".mine.pt.abc123.tmp", "keep.tmp"]
    for name in stale + foreign:
        (tmp_path / "run" / name).write_bytes(b"partial")
    with caplog.at_level("WARNING"):
        _trainer(plane_sequence, tmp_path / "run", ["optim.max_steps=1"], resume=True).close()
    assert not [name for name in stale if (tmp_path / "run" / name).exists()]
    assert all((tmp_path / "run" / name).exists() for name in foreign)
    assert "removed 3 stale temporary checkpoint file(s)" in caplog.text and ".last.pt.k3j_x9q1.tmp" in caplog.text


def test_resume_falls_back_to_previous_when_last_is_truncated(plane_sequence, tmp_path):
    """A truncated last.pt: --resume says so, continues the newest intact checkpoint, and keeps the broken file."""
    out = tmp_path / "run"
    config = _write_config(tmp_path, plane_sequence, out, ["  checkpoint_every: 2", "  eval_each_epoch: false"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli("--config", str(config), "--set", "optim.max_steps=2"), cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True)
    previous_step = load_checkpoint(out / "last.pt")["step"]
    subprocess.run(_cli("--config", str(config), "--resume", "--set", "optim.max_steps=3"), cwd=REPO_ROOT, env=env,
                   check=True, capture_output=True)
    assert load_checkpoint(out / "previous.pt")["step"] == previous_step
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])

    result = subprocess.run(_cli("--config", str(config), "--resume", "--set", "optim.max_steps=4"), cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "last.pt is truncated or damaged" in result.stderr
    assert f"resuming from {out / 'previous.pt'} (step {previous_step})" in result.stderr
    _assert_clean_output(result.stderr)
    assert (out / "last.pt.damaged").read_bytes() == data[: len(data) // 2]
    assert load_checkpoint(out / "last.pt")["step"] == 4


def test_resume_of_random_bytes_names_the_problem(plane_sequence, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(os.urandom(4096))
    config = _write_config(tmp_path, plane_sequence, out)
    result = subprocess.run(_cli("--config", str(config), "--resume"), cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "last.pt is not a PriorDepth checkpoint or model: it is not a file written by torch.save" in result.stderr
    assert "no intact previous.pt or epoch_*.pt" in result.stderr
    _assert_clean_output(result.stderr)
    assert (out / "last.pt").stat().st_size == 4096


@pytest.mark.parametrize(("override", "message"), [
    ("model.pretrained_path", "pretrained ResNet weights {path} cannot be read (truncated, damaged or another format)"),
    ("model.keypoint_init", "checkpoint {path} is not a PriorDepth checkpoint or model"),
])
def test_cli_explains_unreadable_init_weights(plane_sequence, tmp_path, override, message):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(os.urandom(4096))
    config = _write_config(tmp_path, plane_sequence, tmp_path / "run")
    result = subprocess.run(_cli("--config", str(config), "--set", f"{override}={weights}", "--set", "pose.source=pnp"),
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message.format(path=weights) in result.stderr
    _assert_clean_output(result.stderr)
