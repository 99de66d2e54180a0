"""The benchmark on disk: manifest, idempotence, resume, refusal to overwrite, the Dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hffne_lib.data import (BENCHMARK_PRESETS, SPLITS, BenchmarkConfig, FaceNormalDataset, build_benchmark,
                            manifest_hash)
from hffne_lib.data.benchmark import GENERATOR_VERSION
from hffne_lib.data.dataset import preview_grid
from hffne_lib.data.shards import TMP_SUFFIX, open_shard, write_shard
from hffne_lib.data.synthetic import LIGHT_FIELDS

TINY = BenchmarkConfig(size=32, lab_identities=5, lab_captures=2, wild_identities=5, wild_samples=2,
                       scan_identities=3, shard_size=3)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.iterdir())}


def _copy(root: Path, copy: Path) -> Path:
    """A file-by-file copy of a benchmark folder."""
    copy.mkdir()
    for p in root.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    return copy


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bench") / "tiny"
    return root, build_benchmark(root, TINY, progress=False)


def test_manifest_counts_hashes_and_splits(built):
    root, manifest = built
    assert set(manifest["splits"]) == set(SPLITS)
    assert manifest["settings"]["size"] == 32 and manifest["settings"]["geometry"] == "procedural"
    assert manifest["splits"]["lab_test"]["samples"] == 2 and manifest["splits"]["lab_train"]["samples"] == 8
    assert manifest["splits"]["scans"]["samples"] == 3
    ids = [set(manifest["splits"][s]["identities"]) for s in SPLITS]
    assert sum(len(i) for i in ids) == len(set().union(*ids))          # no identity in two splits
    files = sorted(p.name for p in root.iterdir())
    shards = sorted(s["file"] for e in manifest["splits"].values() for s in e["shards"])
    assert files == sorted(shards + ["manifest.json"])
    assert len(manifest["splits"]["lab_train"]["shards"]) == 3          # 8 captures in shards of 3
    assert manifest_hash(root) == manifest_hash(str(root)) and len(manifest_hash(root)) == 64


def test_second_build_does_nothing(built):
    root, manifest = built
    before = _snapshot(root)
    assert build_benchmark(root, TINY, progress=False) == manifest
    assert _snapshot(root) == before


def test_other_settings_are_refused_without_touching_files(built):
    root, _ = built
    before = _snapshot(root)
    with pytest.raises(ValueError, match="other settings.*size: 32 -> 48") as error:
        build_benchmark(root, BenchmarkConfig(**{**TINY.__dict__, "size": 48}), progress=False)
    assert "\n" not in str(error.value)
    assert _snapshot(root) == before


def _interrupted_copy(root: Path, manifest: dict, target: Path) -> Path:
    """A copy of a built benchmark as a killed build leaves it: no manifest yet, settings recorded."""
    copy = _copy(root, target)
    (copy / "manifest.json").unlink()
    (copy / "build.json").write_text(json.dumps(manifest["settings"]))
    return copy


def test_killed_build_resumes_to_the_same_bytes(built, tmp_path):
    root, manifest = built
    copy = _interrupted_copy(root, manifest, tmp_path / "copy")   # and one shard half-written, one missing
    victim = manifest["splits"]["wild_train"]["shards"][1]["file"]
    (copy / victim).rename(copy / (victim + TMP_SUFFIX))
    (copy / (victim + TMP_SUFFIX)).write_bytes(b"PK\x03\x04 half a shard")
    kept = manifest["splits"]["lab_train"]["shards"][0]["file"]
    kept_mtime = (copy / kept).stat().st_mtime_ns
    resumed = build_benchmark(copy, TINY, progress=False)
    assert resumed == manifest                                          # same shards, same sha256
    assert (copy / kept).stat().st_mtime_ns == kept_mtime               # finished shards not redone
    assert not list(copy.glob("*" + TMP_SUFFIX)) and not (copy / "build.json").exists()
    assert manifest_hash(copy) == manifest_hash(root)


def test_foreign_folder_and_missing_benchmark_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no benchmark"):
        build_benchmark(tmp_path, TINY, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match=r"build it first with python -m hffne_lib\.data --preset PRESET "
                                                 r"--root \S+nowhere \(PRESET: .* ci, cpu, gpu, paper\) or .*00_data_prep"):
        FaceNormalDataset(tmp_path / "nowhere", "lab_train")
    with pytest.raises(FileNotFoundError):
        manifest_hash(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown split"):
        FaceNormalDataset(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown benchmark preset"):
        build_benchmark(tmp_path / "x", "huge", progress=False)


@pytest.mark.parametrize("split", SPLITS)
def test_dataset_items(built, split):
    root, manifest = built
    data = FaceNormalDataset(root, split, verify=True)
    views = 4 if split.startswith("lab") else 1
    assert len(data) == manifest["splits"][split]["samples"] * views
    loader = torch.utils.data.DataLoader(data, batch_size=len(data))
    batch = next(iter(loader))
    n = len(data)
    for key, channels in (("gray", 1), ("rgb", 3), ("normal", 3), ("normal_exact", 3), ("mask", 1),
                          ("detail_mask", 1), ("albedo", 3), ("gray_albedo", 1), ("shading", 1)):
        assert batch[key].shape == (n, channels, 32, 32) and batch[key].dtype == torch.float32, key
    assert batch["light"].shape[0] == n and batch["identity"].shape == (n,)
    assert 0 <= batch["gray"].min() and batch["gray"].max() <= 1 and batch["gray"].std() > 0.05
    mask = batch["mask"].bool()
    for key in ("normal", "normal_exact"):
        length = batch[key].norm(dim=1, keepdim=True)
        assert (length[mask] - 1).abs().max() < 2e-3 and (length[~mask] == 0).all(), key
    assert set(batch["identity"].tolist()) == set(manifest["splits"][split]["identities"])
    # without a highlight the grey image is its grey albedo times its shading, up to noise and 8 bits
    plain = batch["light"][:, LIGHT_FIELDS.index("specular")] == 0
    assert plain.any()
    rendered = batch["gray_albedo"] * batch["shading"]
    assert ((batch["gray"] - rendered).abs() * mask)[plain].sum() / mask[plain].sum() < 0.02
    if views == 4:      # four items per capture: same normals, each under its own light
        assert torch.equal(batch["normal"][0], batch["normal"][3]) and not torch.equal(batch["gray"][0], batch["gray"][1])
        assert not torch.equal(batch["normal"], batch["normal_exact"])
    else:
        assert torch.equal(batch["normal"], batch["normal_exact"])
    assert preview_grid(data, 2).shape == (64, 5 * 32, 3)


def test_shards_round_trip_and_memory_map(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float16).reshape(3, 4), "b": np.ones((2, 1, 5, 5), bool),
              "c": np.array([7, 8], np.int64)}
    digest = write_shard(tmp_path / "s.npz", arrays)
    assert digest == write_shard(tmp_path / "t.npz", arrays)                 # reproducible bytes
    mapped = open_shard(tmp_path / "s.npz")
    loaded = np.load(tmp_path / "s.npz")
    for key, value in arrays.items():
        assert isinstance(mapped[key], np.memmap) and np.array_equal(mapped[key], value)
        assert np.array_equal(loaded[key], value)


def test_presets_are_named_and_sized():
    assert {"ci", "cpu", "gpu", "paper"} <= set(BENCHMARK_PRESETS)
    sizes = {k: BENCHMARK_PRESETS[k].size for k in ("ci", "cpu", "gpu", "paper")}
    assert sizes == {"ci": 64, "cpu": 128, "gpu": 256, "paper": 256}
    paper = BENCHMARK_PRESETS["paper"]
    assert 2000 < paper.lab_identities * paper.lab_captures * 4 * paper.test_fraction < 3000   # ~2.5k test pairs
    assert paper.scan_identities == 53


def test_parallel_build_writes_the_same_bytes(built, tmp_path):
    root, manifest = built
    assert build_benchmark(tmp_path / "parallel", TINY, progress=False, workers=2) == manifest
    assert manifest_hash(tmp_path / "parallel") == manifest_hash(root)


def test_command_line_builds_and_refuses_other_data(tmp_path, capsys):
    from hffne_lib.data.__main__ import main

    target = tmp_path / "ci"
    assert main(["--preset", "ci", "--root", str(target), "--workers", "1", "--no-progress"]) == 0
    assert f"{target}: manifest sha256 {manifest_hash(target)}" in capsys.readouterr().out
    before = _snapshot(target)
    assert main(["--preset", "cpu", "--root", str(target), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "other settings" in error and "size: 64 -> 128" in error
    assert _snapshot(target) == before
    with pytest.raises(SystemExit) as usage:
        main(["--preset", "ci", "--root", str(tmp_path / "x"), "--workers", "0"])
    assert usage.value.code == 2 and not (tmp_path / "x").exists()
    capsys.readouterr()
    (tmp_path / "notes.txt").write_text("the user's notes")
    for root in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "bench"):      # a file in the way
        assert main(["--preset", "ci", "--root", str(root), "--no-progress"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("python -m hffne_lib.data: ") and error.count("\n") == 1, error
    assert (tmp_path / "notes.txt").read_text() == "the user's notes"


def test_a_benchmark_of_another_generator_version_is_refused(built, tmp_path):
    root, manifest = built
    old = _copy(root, tmp_path / "old")
    stale = {**manifest, "settings": {**manifest["settings"], "generator_version": 1}}
    (old / "manifest.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError, match=rf"other settings \(generator_version: 1 -> {GENERATOR_VERSION}\)"):
        build_benchmark(old, TINY, progress=False)


def test_a_shard_a_crash_left_unreadable_is_rendered_again_on_resume(built, tmp_path):
    root, manifest = built
    copy = _interrupted_copy(root, manifest, tmp_path / "copy")
    victim = manifest["splits"]["lab_test"]["shards"][0]["file"]
    (copy / victim).write_bytes(b"")                          # renamed into place but never written out
    assert build_benchmark(copy, TINY, progress=False) == manifest


def test_a_second_build_of_a_folder_waits_for_the_first(tmp_path, capsys):
    import threading
    import time

    from hffne_lib.data.benchmark import build_lock

    entered = threading.Event()

    def second() -> None:
        with build_lock(tmp_path / "bench"):
            entered.set()
    with build_lock(tmp_path / "bench"):
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.3)
        assert not entered.is_set()                           # held off while the first builds
    waiting.join(timeout=5)
    assert entered.is_set() and "another process is building it; waiting" in capsys.readouterr().err


def test_command_line_prepares_photos_as_a_training_split(tmp_path, capsys):
    from hffne_lib.data import make_identity, render_sample
    from hffne_lib.data.__main__ import main
    from hffne_lib.data.images import save_image

    photos = tmp_path / "photos"
    photos.mkdir()
    save_image(photos / "a.png", render_sample(make_identity(0, "wild", 0, 64), "wild", 0, 0, 64)["rgb"].permute(1, 2, 0).numpy())
    with pytest.raises(SystemExit) as usage:
        main(["--photos", str(photos)])
    assert usage.value.code == 2 and "--photos needs --root" in capsys.readouterr().err
    target = tmp_path / "wild"
    assert main(["--photos", str(photos), "--aligned", "--size", "32", "--root", str(target), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"--set \"split_roots=('wild_train={target}',)\"" in out and "wild_train" in out
    assert FaceNormalDataset(target, "wild_train")[0]["rgb"].shape == (3, 32, 32)
    assert main(["--photos", str(tmp_path / "nowhere"), "--root", str(tmp_path / "w2"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"python -m hffne_lib.data: {tmp_path / 'nowhere'}: no such folder\n"
