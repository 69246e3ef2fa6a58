"""Adding a dataset is one reader file and one registry line: a toy reader of a folder of PNGs, registered by name,
trains and samples through the same path as the built-in datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from priordepth_core.data import READERS, DatasetError, Frame, FrameReader, build_datasets, build_split
from priordepth_core.train.config import DataConfig, load_config
from priordepth_core.train.trainer import Trainer

NATIVE_HW = (128, 192)
K_NATIVE = np.array([[120.0, 0.0, 95.5], [0.0, 120.0, 63.5], [0.0, 0.0, 1.0]])


class PngFolderReader(FrameReader):
    """The whole reader file of a new dataset: ``<stamp>.png`` frames of one sequence and a ``K.txt``."""

    held_out_test = False

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / "K.txt").is_file():
            raise DatasetError(f"{folder / 'K.txt'}: intrinsics file does not exist")
        K = np.loadtxt(folder / "K.txt").reshape(3, 3)
        images = sorted(folder.glob("*.png"), key=lambda path: float(path.stem))
        frames = [Frame(sequence=folder.name, index=i, stamp=float(path.stem), image=path, K=K)
                  for i, path in enumerate(images)]
        super().__init__([frames], has_depth=False, has_poses=False, source=str(folder))

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        return [cls(data.path)]


@pytest.fixture
def png_folder(tmp_path):
    """Six frames of a smooth random texture sliding sideways, 10 Hz."""
    rng = np.random.default_rng(0)
    height, width = NATIVE_HW
    texture = cv2.resize(rng.random((height // 4, width // 2, 3)).astype(np.float32), (width * 2, height),
                         interpolation=cv2.INTER_CUBIC)
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    folder = tmp_path / "my_camera"
    folder.mkdir()
    for i in range(6):
        assert cv2.imwrite(str(folder / f"{100 + i / 10:.1f}.png"), texture[:, 4 * i:4 * i + width])
    np.savetxt(folder / "K.txt", K_NATIVE)
    return folder


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(READERS, "png_folder", PngFolderReader)  # the one registry line


def _data_config(folder: Path, **fields) -> DataConfig:
    # DataConfig's kind choices are fixed when the config module loads; the registry itself accepts any entry.
    return DataConfig(kind="png_folder", path=str(folder), height=64, width=96, **fields)


def test_a_registered_reader_yields_samples_of_the_contract(registered, png_folder):
    train, test = build_datasets(_data_config(png_folder, context_offsets=[-1, 2]))
    assert test is None  # held_out_test = False
    assert len(train) == 3  # frames 1..3 have both the -1 and the +2 context frame
    sample = train[1]
    assert set(sample) == {"image", "context", "context_offsets", "K", "stamp", "frame_index", "sequence"}
    assert sample["image"].shape == (3, 64, 96) and sample["context"].shape == (2, 3, 64, 96)
    assert sample["frame_index"] == 2 and sample["sequence"] == "my_camera"
    assert sample["stamp"] == pytest.approx(100.2)
    # K scaled with the image (pixel centres at integer coordinates): 192x128 -> 96x64 halves it.
    expected = [[60.0, 0, (95.5 + 0.5) / 2 - 0.5], [0, 60.0, (63.5 + 0.5) / 2 - 0.5], [0, 0, 1]]
    torch.testing.assert_close(sample["K"], torch.tensor(expected, dtype=torch.float32))
    native = cv2.cvtColor(cv2.imread(str(png_folder / "100.4.png")), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(native, (96, 64), interpolation=cv2.INTER_AREA)  # the +2 context of frame 2
    torch.testing.assert_close(sample["context"][1], torch.from_numpy(resized).permute(2, 0, 1).float() / 255)


def test_unknown_kinds_name_the_registered_ones(registered, png_folder):
    with pytest.raises(DatasetError, match=r"unknown data.kind 'png'; choose one of suite, tum, .*png_folder"):
        build_split(dataclasses.replace(_data_config(png_folder), kind="png"), "train")


def test_the_trainer_trains_on_a_registered_reader(registered, png_folder, tmp_path):
    config = load_config(overrides=["model.lite=true", "model.keypoint_lite=true", "model.descriptor_dim=32",
                                    "optim.batch_size=2", "optim.max_steps=2", "run.log_every=1",
                                    f"run.out_dir={tmp_path / 'run'}"])
    config = dataclasses.replace(config, data=_data_config(png_folder))
    trainer = Trainer(config)  # builds its datasets from config.data through the registry
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    assert trainer.test_set is None and len(trainer.train_set) == 4
    assert trainer.step == 2 and (tmp_path / "run" / "last.pt").is_file()
    assert history == [] or all(np.isfinite(v) for entry in history for v in entry.values()
                                if isinstance(v, float))


def test_whole_sequence_consumers_need_two_frames(png_folder):
    assert len(PngFolderReader(png_folder).single_sequence()) == 6
    for path in sorted(png_folder.glob("*.png"))[1:]:
        path.unlink()
    with pytest.raises(DatasetError, match=r"my_camera: needs at least 2 frames, found 1"):
        PngFolderReader(png_folder).single_sequence()
