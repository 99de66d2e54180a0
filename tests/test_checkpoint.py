"""Checkpoints: provenance, weights_only loading, atomic writes, one-line errors, resume guard."""
from __future__ import annotations

import pytest
import torch

from hffne_lib.checkpoint import CheckpointError, git_revision, load_checkpoint, load_coarse, load_refiner, save_checkpoint
from hffne_lib.config import ExperimentConfig, with_overrides
from hffne_lib.pipeline import NormalEstimator
from hffne_lib.predict import load_estimator
from hffne_lib.train import check_resumable, check_same_inputs, finish_coarse, train_coarse, train_refiner
from test_train import RandomFaces, tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of both stages (refiner A3, random stand-in VGG)."""
    root = tmp_path_factory.mktemp("run")
    cfg = tiny(coarse_iters=3, refine_iters=2, seed=7)
    coarse = train_coarse(cfg, root, dataset=RandomFaces(), progress=False)
    refiner = train_refiner(cfg, root, dataset=RandomFaces(), progress=False)
    return cfg, root, coarse, refiner


def test_checkpoint_carries_provenance_and_loads_weights_only(run):
    cfg, _, coarse, refiner = run
    saved = torch.load(refiner, weights_only=True)
    assert saved["kind"] == "refiner" and saved["iteration"] == 2 and saved["seed"] == 7
    assert saved["config"] == cfg.to_dict() and saved["resolution"] == 64
    assert saved["git_revision"] == git_revision() != ""
    assert saved["manifest_hash"].startswith("unknown")  # a dataset passed in has no manifest
    assert saved["vgg_weight_source"].startswith("random-init (STAND-IN")
    assert saved["exemplar"] == {"path": str(coarse), "iteration": 3}
    assert set(saved["optimizers"]) == {"refiner"} and isinstance(saved["rng"]["torch"], torch.Tensor)
    assert not list(refiner.parent.glob("*.tmp"))  # atomic: the temporary file was renamed away


def test_revision_is_the_imported_codes_even_if_the_checkout_moves_on(monkeypatch):
    """A long run records the revision it started with, not whatever is checked out at save time."""
    import hffne_lib.checkpoint as checkpoint
    before = checkpoint.make_payload("coarse", 1, tiny(), {}, {}, "m", "v")["git_revision"]
    monkeypatch.setattr(checkpoint, "git_revision", lambda repo=None: "edited-since")
    assert checkpoint.make_payload("coarse", 2, tiny(), {}, {}, "m", "v")["git_revision"] == before == checkpoint.CODE_REVISION


def test_estimator_from_checkpoints_matches_the_saved_weights(run):
    _, _, coarse, refiner = run
    estimator = NormalEstimator.from_checkpoints(coarse, refiner)
    saved = load_checkpoint(refiner, "refiner")["models"]["refiner"]
    assert all(torch.equal(v, saved[k]) for k, v in estimator.refiner.state_dict().items())
    assert estimator.provenance["vgg_weights"].startswith("random-init")
    out = estimator(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 3, 64, 64) and torch.allclose(out.norm(dim=1), torch.ones(2, 64, 64), atol=1e-4)


def test_wrong_kind_resolution_and_garbage_give_one_line_errors(run, tmp_path):
    _, _, coarse, refiner = run
    with pytest.raises(CheckpointError, match="is a refiner checkpoint, expected a coarse one") as error:
        load_coarse(refiner)
    assert "\n" not in str(error.value) and str(refiner) in str(error.value)
    with pytest.raises(CheckpointError, match="is a coarse checkpoint, expected a refiner one"):
        load_refiner(coarse)
    with pytest.raises(CheckpointError, match="trained at 64 px, expected 128 px"):
        load_coarse(coarse, resolution=128)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_coarse(garbage)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a hffne training checkpoint"):
        load_coarse(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_coarse(tmp_path / "missing.pt")


def test_resume_refuses_a_changed_config_but_allows_a_longer_run(run):
    _, root, _, _ = run
    with pytest.raises(CheckpointError, match="cannot resume, config field 'refine_lr'"):
        train_refiner(tiny(coarse_iters=3, refine_iters=2, seed=7, refine_lr=1e-3), root,
                      dataset=RandomFaces(), progress=False)
    longer = train_refiner(tiny(coarse_iters=3, refine_iters=3, seed=7), root, dataset=RandomFaces(), progress=False)
    assert load_checkpoint(longer, "refiner")["iteration"] == 3


def test_a_longer_run_is_refused_where_the_curl_warm_up_would_stretch_under_it(tmp_path):
    """integrability_warmup ramps over a fraction of refine_iters: resumed longer, the ramp would
    restart lower than the weights were trained with, and the run would not be the uninterrupted one."""
    cfg = tiny(coarse_iters=2, refine_iters=2, seed=3, integrability_weight=0.1, integrability_warmup=0.5)
    train_coarse(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    train_refiner(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    with pytest.raises(CheckpointError, match=r"refiner/latest.pt: cannot resume with refine_iters=4 \(was 2\): "
                                              r"integrability_warmup ramps over a fraction of refine_iters"):
        train_refiner(with_overrides(cfg, refine_iters=4), tmp_path, dataset=RandomFaces(), progress=False)
    assert load_checkpoint(tmp_path / "refiner" / "latest.pt", "refiner")["iteration"] == 2


def test_a_coarse_stage_resumes_under_any_refinement_settings_and_a_refiner_only_on_its_exemplars(tmp_path):
    """Notebook 02 run first with A1 used to leave a coarse stage notebook 03 refused to resume; a
    refiner resumed after its coarse stage trained on went on from other exemplars, silently."""
    cfg = tiny(coarse_iters=2, refine_iters=2, seed=3)
    train_coarse(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    train_refiner(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    other = tiny(coarse_iters=3, refine_iters=2, seed=3, shading_weight=3.0, refiner__architecture="A1", paired=False)
    assert load_checkpoint(train_coarse(other, tmp_path, dataset=RandomFaces(), progress=False), "coarse")["iteration"] == 3
    with pytest.raises(CheckpointError, match="cannot resume, config field 'coarse_lr'"):
        train_coarse(tiny(coarse_iters=4, coarse_lr=1e-3, seed=3), tmp_path, dataset=RandomFaces(), progress=False)
    with pytest.raises(CheckpointError, match=r"refiner/latest.pt: cannot resume: it learnt from the exemplars of "
                                              r"coarse iteration 2, and that coarse checkpoint is at iteration 3 now"):
        train_refiner(tiny(coarse_iters=3, refine_iters=3, seed=3), tmp_path, dataset=RandomFaces(), progress=False)
    with pytest.raises(CheckpointError, match="learnt from the exemplars of coarse iteration 2, and "):
        load_estimator([tmp_path / "refiner"])                       # nor is it paired with them for inference
    estimator = load_estimator([tmp_path / "coarse" / "latest.pt", tmp_path / "refiner" / "latest.pt"])
    assert (estimator.provenance["coarse_iteration"], estimator.provenance["refiner_iteration"]) == (3, 2)  # asked for


def test_a_run_does_not_resume_on_another_benchmark(tmp_path):
    path = tmp_path / "latest.pt"
    with pytest.raises(CheckpointError, match=r"latest.pt: cannot resume on another benchmark \(trained on manifest "
                                              r"aaaaaaaaaaaa, the data root holds bbbbbbbbbbbb\)"):
        check_same_inputs({"manifest_hash": "a" * 64}, path, "b" * 64, None)
    check_same_inputs({"manifest_hash": "a" * 64}, path, "a" * 64, None)
    check_same_inputs({"manifest_hash": "unknown (dataset passed in)"}, path, "b" * 64, None)   # nothing to compare


def test_a_checkpoint_from_before_a_new_option_resumes_with_it_off_and_only_off(tmp_path):
    """Fields the config gained after a checkpoint was written count at their defaults."""
    cfg = tiny()
    saved = cfg.to_dict()
    del saved["integrability_warmup"], saved["refiner"]["residual"]
    check_resumable(saved, cfg, tmp_path / "latest.pt", "refiner")
    with pytest.raises(CheckpointError, match="cannot resume, config field 'integrability_warmup' was 0.0, now 0.5"):
        check_resumable(saved, tiny(integrability_warmup=0.5), tmp_path / "latest.pt", "refiner")
    with pytest.raises(CheckpointError, match="cannot resume, config field 'refiner'"):
        check_resumable(saved, tiny(refiner__residual=True), tmp_path / "latest.pt", "refiner")
    with pytest.raises(CheckpointError, match="latest.pt: cannot resume, its config does not fit this version"):
        check_resumable({**saved, "an_option_since_removed": 1}, cfg, tmp_path / "latest.pt", "refiner")


def test_a_checkpoint_with_options_removed_since_still_loads_for_inference(run, tmp_path):
    """Only the network settings are needed to rebuild a network; a training option the code has
    dropped is ignored when reading, while unknown network settings get a one-line error."""
    _, _, coarse, refiner = run
    saved = torch.load(refiner, weights_only=True)
    saved["config"]["an_option_since_removed"] = True
    torch.save(saved, tmp_path / "old.pt")
    loaded, _ = load_refiner(tmp_path / "old.pt")
    assert all(torch.equal(v, saved["models"]["refiner"][k]) for k, v in loaded.state_dict().items())
    assert ExperimentConfig.from_saved(saved["config"]).seed == 7
    saved["config"]["refiner"]["a_layer_since_removed"] = 3
    torch.save(saved, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="odd.pt: its refiner settings do not fit this version of the code "
                                              ".*use the revision that wrote it"):
        load_refiner(tmp_path / "odd.pt")


def test_revision_outside_git_comes_from_the_environment(tmp_path, monkeypatch):
    """A copy of the tree without .git (e.g. sent to a GPU machine) names its revision by setting."""
    monkeypatch.delenv("HFFNE_GIT_REVISION", raising=False)
    assert git_revision(tmp_path) == "unknown"
    monkeypatch.setenv("HFFNE_GIT_REVISION", "abc1234")
    assert git_revision(tmp_path) == "abc1234"


def test_a_reproduction_rewriting_tracked_results_does_not_make_the_code_dirty(tmp_path):
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    for path in ("hffne_lib/a.py", "results/tables/smoke/table1.csv"):
        (tmp_path / path).parent.mkdir(parents=True)
        (tmp_path / path).write_text("1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    clean = git_revision(tmp_path)
    (tmp_path / "results/tables/smoke/table1.csv").write_text("2\n")     # what make reproduce does
    assert git_revision(tmp_path) == clean and not clean.endswith("-dirty")
    (tmp_path / "hffne_lib/a.py").write_text("2\n")
    assert git_revision(tmp_path) == f"{clean}-dirty"


def test_a_refiner_learns_only_from_the_coarse_stage_its_config_describes(tmp_path):
    """Notebook 01 with coarse_warp then notebook 02 without it trained Ours-paired on warped exemplars
    under a config that said none; a coarse stage cut short gave its refiner other exemplars than the
    final ones the tables name."""
    train_coarse(tiny(coarse_iters=2, coarse_warp=0.5), tmp_path, dataset=RandomFaces(), progress=False)
    with pytest.raises(CheckpointError, match=r"coarse/latest.pt: the coarse stage was trained with coarse_warp=0.5, "
                                              r"this refinement's config says 0.0"):
        train_refiner(tiny(coarse_iters=2), tmp_path, dataset=RandomFaces(), progress=False)
    with pytest.raises(CheckpointError, match=r"the coarse stage is at iteration 2, not coarse_iters=5; finish it first"):
        train_refiner(tiny(coarse_iters=5, coarse_warp=0.5), tmp_path, dataset=RandomFaces(), progress=False)
    refiner = train_refiner(tiny(coarse_iters=2, refine_iters=1, coarse_warp=0.5, seed=4), tmp_path,
                            dataset=RandomFaces(), progress=False)              # another seed is the refiner's own
    assert load_checkpoint(refiner, "refiner")["exemplar"]["iteration"] == 2


def test_notebook_02_finishes_a_coarse_stage_cut_short_and_takes_a_finished_one_of_another_seed(tmp_path):
    """Notebook 02 trained the coarse stage only when it had no checkpoint at all: one cut short at
    iteration 1 of 2 was then refused by its refiner. A finished one is left alone (no resume check),
    so a refiner of another seed learns from it as before."""
    cut_short = train_coarse(tiny(coarse_iters=2, checkpoint_every=1), tmp_path, dataset=RandomFaces(), progress=False, stop_after=1)
    assert load_checkpoint(cut_short, "coarse")["iteration"] == 1
    assert finish_coarse(tiny(coarse_iters=2), tmp_path, dataset=RandomFaces(), progress=False) == cut_short
    assert load_checkpoint(cut_short, "coarse")["iteration"] == 2
    with pytest.raises(CheckpointError, match="cannot resume, config field 'seed' was 0, now 4"):
        train_coarse(tiny(coarse_iters=2, seed=4), tmp_path, dataset=RandomFaces(), progress=False)
    other_seed = tiny(coarse_iters=2, refine_iters=1, seed=4)
    assert finish_coarse(other_seed, tmp_path, dataset=RandomFaces(), progress=False) == cut_short
    refiner = train_refiner(other_seed, tmp_path, dataset=RandomFaces(), progress=False)
    assert load_checkpoint(refiner, "refiner")["exemplar"]["iteration"] == 2


def test_a_checkpoint_write_that_fails_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "latest.pt", {"iteration": 1})

    def disk_full(obj, file):
        open(file, "wb").write(b"half of it")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"iteration": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"iteration": 1}
