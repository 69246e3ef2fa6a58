"""``evaluate curves``: the learning curve of a training run (TensorBoard scalars) as a picture."""

from __future__ import annotations

import argparse
from pathlib import Path


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a run's TensorBoard log: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = Path(run_dir) / "tensorboard"
    if not log_dir.is_dir():
        raise FileNotFoundError(f"{log_dir} does not exist: is {run_dir} a training run folder?")
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def plot_learning_curve(run_dir: str | Path, out: str | Path, title: str | None = None,
                        baselines: dict[str, float] | None = None) -> Path:
    """Training loss and test abs_rel against steps, with horizontal baseline lines; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(run_dir)
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    if "train/loss" in scalars:
        steps, values = zip(*scalars["train/loss"])
        ax_loss.plot(steps, values, lw=0.8, label="train loss")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("photometric + smoothness loss")
        ax_loss.legend()
    if "test/abs_rel" in scalars:
        steps, values = zip(*scalars["test/abs_rel"])
        ax_err.plot(steps, values, "o-", label="model (test split)")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax_err.axhline(value, ls="--", color=f"C{i + 1}", label=name)
    ax_err.set_xlabel("step")
    ax_err.set_ylabel("depth abs_rel (median-scaled)")
    ax_err.legend()
    fig.suptitle(title or Path(run_dir).name)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def add_curves_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("curves", help="plot a run's learning curve")
    parser.add_argument("--run", required=True, help="the training run folder (run.out_dir)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=ABS_REL",
                        help="a horizontal reference line, e.g. --baseline constant=0.45 (repeatable)")


def run_curves(args: argparse.Namespace) -> int:
    baselines = {}
    for text in args.baseline:
        name, _, value = text.partition("=")
        baselines[name] = float(value)
    print(plot_learning_curve(args.run, args.out, args.title, baselines))
    return 0
