"""Tables 1-3: same seed, same tables; provenance headers; the paper's rows labelled as such."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from hffne_lib.checkpoint import CODE_REVISION
from hffne_lib.config import get_config, software_note
from hffne_lib.experiments import experiments, prepare, train_experiments
from hffne_lib.paper import REPORTED
from hffne_lib.fitting import FitSettings
from hffne_lib.tables import (COARSE_ROW, FITTED_ROW, MEASURED_SPLITS, STAND_IN_NOTE, TABLE3_FINAL_ROW, build_tables,
                              provenance, write_tables)
from hffne_lib.train import EXIT_TIME_BUDGET

# one thread: the jobs=2 run below has one per worker, and on CPU the thread count moves the last digits
TINY = dict(coarse_iters=4, coarse_milestones=(1, 2, 3), refine_iters=2, checkpoint_every=2, log_every=1, cpu_threads=1)


def _reproduce(data_root, results_root, jobs=1):
    cfg, run_dir = prepare("ci", data_root, results_root, **TINY)
    train_experiments(cfg, run_dir, progress=False, jobs=jobs)
    fitting = FitSettings(steps=3)
    tables = build_tables(cfg, run_dir, progress=False, fitting=fitting)
    folder = results_root / "tables"
    write_tables(tables, folder, provenance(cfg, run_dir, seconds=1.0, fitting=fitting))
    return tables, folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    # the second trains its refinement runs on two worker processes: the same numbers
    return _reproduce(data, tmp_path_factory.mktemp("first")), _reproduce(data, tmp_path_factory.mktemp("second"), jobs=2)


def _without_wall_time(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# wall time"))


def test_same_seed_gives_identical_csvs(two_runs):
    (_, first), (_, second) = two_runs
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"table1.csv", "table2.md", "table3.tex", "wild.csv"} <= set(names)
    for name in names:
        assert _without_wall_time((first / name).read_text()) == _without_wall_time((second / name).read_text()), name


def test_provenance_header_and_labels(two_runs):
    (tables, folder), _ = two_runs
    csv = (folder / "table1.csv").read_text()
    for key in ("git revision", "preset: ci", "measured on: cpu", f"software: {software_note()}",
                "data manifest hash", "VGG19 weights", "fitted: test-time fitting (beyond the paper): steps=3,",
                "wall time"):
        assert f"# {key}" in csv
    assert "STAND-IN" in csv  # no ImageNet VGG19 on these machines, and the table says so
    table1 = pd.read_csv(folder / "table1.csv", comment="#", index_col=0)
    table1 = table1[table1["source"].str.startswith("measured")]             # not the paper's rows of those names
    assert (table1.loc[["Ours-unpaired", "Ours-paired"], "source"].str.endswith(STAND_IN_NOTE)).all()   # each row too
    assert not table1.loc[[COARSE_ROW, FITTED_ROW], "source"].str.contains("VGG19").any()             # no VGG19 in them
    wild = pd.read_csv(folder / "wild.csv", comment="#", index_col=[0, 1])
    wild_md = (folder / "wild.md").read_text().split("\n\n", 1)[1].splitlines()
    assert [cell.strip() for cell in wild_md[0].split("|")[1:4]] == ["run", "region", "source"]
    assert [cell.strip() for cell in wild_md[2].split("|")[1:3]] == list(wild.index[0])   # not a tuple
    assert wild.loc["A1", "source"].str.endswith(STAND_IN_NOTE).all() and STAND_IN_NOTE in (folder / "wild.tex").read_text()
    trained_at = next(line for line in csv.splitlines() if line.startswith("# checkpoints trained at: "))
    revision, runs = trained_at.removeprefix("# checkpoints trained at: ").split(": ", 1)
    assert revision == CODE_REVISION and ";" not in runs  # one session trained every checkpoint here
    assert {"coarse/latest.pt", "coarse/iter_0000001.pt", "A1", "Ours-paired"} <= set(runs.split(", "))
    frame = pd.read_csv(folder / "table3.csv", comment="#", index_col=0)
    reported = frame[frame["source"].str.startswith(REPORTED)]
    measured = frame[frame["source"].str.startswith("measured")]
    assert len(reported) == 7 and reported.loc[TABLE3_FINAL_ROW].iloc[1] == pytest.approx(11.3)
    assert {COARSE_ROW, "Iter1k (exemplar at 1 it.)", "Iter50k (exemplar at 2 it.)", "A1", "A2", "w/o modulation",
            "AdaIN", f"{TABLE3_FINAL_ROW} (final exemplar, 4 it.)"} == set(measured.index)
    tex = (folder / "table3.tex").read_text()
    assert tex.startswith("% git revision") and "lab\\_test" in tex and "\\textless" in tex and "NaN" not in tex
    assert "<NA>" not in (folder / "table3.md").read_text() and "nan" not in (folder / "table3.md").read_text()


def test_table3_coarse_row_is_the_final_exemplar(two_runs):
    (tables, _), _ = two_runs
    table1, table3 = (t[t["source"].str.startswith("measured")] for t in (tables["table1"], tables["table3"]))
    assert table3.loc[COARSE_ROW, "mean"] == table1.loc[COARSE_ROW, "mean"]
    final = f"{TABLE3_FINAL_ROW} (final exemplar, 4 it.)"
    assert table3.loc[final, "mean"] == table1.loc["Ours-paired", "mean"]
    assert table3.loc["Iter1k (exemplar at 1 it.)", "mean"] != table3.loc[final, "mean"]


def test_the_fitted_row_is_the_paired_runs_exemplar_fitted_in_tables_1_2_and_wild_only(two_runs):
    (tables, _), _ = two_runs
    for key in ("table1", "table2"):
        measured = tables[key][tables[key]["source"].str.startswith("measured")]
        assert list(measured.index[:2]) == [COARSE_ROW, FITTED_ROW]
        assert measured.loc[FITTED_ROW, "mean"] != measured.loc[COARSE_ROW, "mean"]
        assert measured.loc[FITTED_ROW, "images"] == measured.loc[COARSE_ROW, "images"]
    assert FITTED_ROW not in tables["table3"].index
    wild = tables["wild"]
    fitted, paired = wild.xs(FITTED_ROW, level="run"), wild.xs("Ours-paired", level="run")
    assert (fitted["coarse mean"] == paired["coarse mean"]).all()     # one exemplar, two second stages
    assert (fitted["refined mean"] != paired["refined mean"]).all()
    assert wild.index.get_level_values("run")[-1] == FITTED_ROW


def test_wild_table_covers_every_experiment(two_runs):
    (tables, _), _ = two_runs
    wild = tables["wild"]
    cfg, _ = prepare("ci", "data", "results", **TINY)
    assert set(wild.index.get_level_values("run")) == set(experiments(cfg)) | {FITTED_ROW}
    assert set(wild.index.get_level_values("region")) == {"face", "detail", "fine"}
    fine = wild.xs("fine", level="region")
    assert (fine["detail-free truth mean"] > 0).all() and fine["detail-free truth mean"].nunique() == 1
    assert (wild["refined - coarse"] == wild["refined mean"] - wild["coarse mean"]).all()


def test_experiments_command_trains_the_named_runs_where_the_notebooks_look(tmp_path, capsys):
    from hffne_lib.experiments import main
    args = ["--preset", "ci", "--data-root", str(tmp_path / "data"), "--results-root", str(tmp_path / "results"),
            "--no-progress", "--set", *[f"{k}={v}" for k, v in TINY.items()]]
    assert main([*args, "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "refiner_A1" in "\n".join(listed)
    stage_columns = {line.index(" refiner") for line in listed}  # every stage name starts in one column
    assert len(stage_columns) == 1, listed
    assert main([*args, "--runs", "A1"]) == 0
    assert f"A1: {tmp_path / 'results' / 'runs' / 'ci' / 'refiner_A1' / 'latest.pt'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "results" / "runs" / "ci").iterdir()) == ["coarse", "refiner_A1"]
    assert main([*args, "--runs", "A1", "A2", "--max-minutes", "0"]) == EXIT_TIME_BUDGET   # A1 is done already
    assert "refiner_A2 stopped at iteration 1 of 2" in capsys.readouterr().err
    assert main([*args, "--runs", "A2", "AdaIN", "--jobs", "2", "--max-minutes", "0"]) == EXIT_TIME_BUDGET
    printed = capsys.readouterr()   # each worker's run stopped and saved; the budget is the exit code
    assert "refiner_A2 stopped at iteration 2 of 2" not in printed.out and "stopped at iteration 1 of 2" in printed.err
    assert (tmp_path / "results" / "runs" / "ci" / "refiner_adain" / "latest.pt").is_file()
    with pytest.raises(SystemExit) as bad:
        main([*args, "--jobs", "0"])
    assert bad.value.code == 2 and "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main([*args, "--runs", "A4"])
    assert bad.value.code == 2 and "unknown run 'A4'; --list names them" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main([*args, "--set", "coarse_relight=2"])
    assert bad.value.code == 2 and "coarse_relight is a fraction" in capsys.readouterr().err
    for setting, message in (("device=cpu", "set device with --device, not --set"),
                             ("data_root=x", "set data_root with --data-root, not --set"),
                             ("coarse_milestones=(1,)", "Table 3's exemplar study needs two coarse_milestones"),
                             ("coarse_milestones=(1,9)", "exemplar_iteration 9 is not a coarse checkpoint this run "
                                                         "keeps")):
        with pytest.raises(SystemExit) as bad:
            main([*args, "--set", setting])
        err = capsys.readouterr().err
        assert bad.value.code == 2 and err.startswith(f"hffne_lib.experiments: {message}") and err.count("\n") == 1
    fresh = ["--preset", "ci", "--data-root", str(tmp_path / "new_data"), "--results-root", str(tmp_path / "new"),
             "--no-progress", "--device", "nodevice"]
    assert main(fresh) == 1                        # before the benchmark is built, in one line
    assert capsys.readouterr().err == "hffne_lib.experiments: unknown device 'nodevice': use cpu, cuda or cuda:N\n"
    assert not (tmp_path / "new_data").exists() and not (tmp_path / "new").exists()


def test_the_notebooks_runs_name_their_benchmark_from_any_working_directory(tmp_path, monkeypatch):
    """Notebooks run in notebooks/ with data_root "../data": a relative path in the checkpoints
    sent `python -m hffne_lib.evaluate results/runs/<preset>`, run from the root, to a wrong folder."""
    monkeypatch.chdir(tmp_path)
    cfg, run_dir = prepare("ci", "../data", "../results")
    assert cfg.data_root == str(tmp_path.parent / "data" / "synthetic_ci") and run_dir == Path("../results/runs/ci")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "manifest.json").write_text("{}")          # a benchmark folder named directly
    assert prepare("ci", "bench")[0].data_root == str(tmp_path / "bench")


def test_reproduce_refuses_fewer_than_one_job(capsys):
    from hffne_lib.reproduce import main
    with pytest.raises(SystemExit) as bad:
        main(["--jobs", "0"])
    assert bad.value.code == 2 and "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_reproduce_refuses_an_unknown_preset_or_notebook_and_names_a_failing_notebook(tmp_path, monkeypatch, capsys):
    import sys
    import types

    import papermill

    from hffne_lib.reproduce import main
    for args, message in ((["--preset", "fast"], "invalid choice: 'fast'"),
                          (["--only", "07"], "--only 07 matches no notebook; they are 00_data_prep.ipynb, ")):
        with pytest.raises(SystemExit) as bad:
            main([*args, "--out", str(tmp_path)])
        assert bad.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "notebooks").exists()

    def fail(source, target, **kw):
        raise papermill.PapermillExecutionError(3, 4, "prepare(preset)", "KeyError", "'unknown preset'\nmore", [])
    fake = types.SimpleNamespace(execute_notebook=fail, inspect_notebook=papermill.inspect_notebook,
                                 PapermillExecutionError=papermill.PapermillExecutionError)
    monkeypatch.setitem(sys.modules, "papermill", fake)
    assert main(["--out", str(tmp_path), "--only", "01"]) == 1
    assert capsys.readouterr().err == (f"hffne_lib.reproduce: 01_coarse_training.ipynb failed in cell [4] with KeyError: "
                                       f"'unknown preset' (traceback in {tmp_path / 'notebooks' / 'smoke' / '01_coarse_training.ipynb'})\n")


def test_reproduce_hands_each_notebook_its_parameters(tmp_path, monkeypatch):
    import sys
    import types

    import papermill

    from hffne_lib.reproduce import main, notebooks
    calls = []
    fake = types.SimpleNamespace(execute_notebook=lambda source, target, **kw: calls.append((source, kw["parameters"])),
                                 inspect_notebook=papermill.inspect_notebook)
    monkeypatch.setitem(sys.modules, "papermill", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)    # a GPU machine, as far as the check goes
    assert main(["--preset", "gpu", "--device", "cuda", "--out", str(tmp_path), "--only", "03"]) == 0
    assert calls == [(str(notebooks()[3]), {"preset": "gpu", "device": "cuda", "results_root": str(tmp_path)})]
    main(["--out", str(tmp_path), "--jobs", "3", "--data-root", str(tmp_path / "shm"), "--only", "00", "03"])
    assert [Path(source).name[:2] for source, _ in calls[1:]] == ["00", "03"]
    assert calls[1][1] == {"preset": "smoke", "data_root": str(tmp_path / "shm")}   # only what 00 declares
    assert calls[-1][1] == {"preset": "smoke", "results_root": str(tmp_path), "jobs": 3,   # the preset's device
                            "data_root": str(tmp_path / "shm")}


def fake_papermill(monkeypatch, execute):
    """papermill with ``execute`` for execute_notebook (inspect_notebook is the real one)."""
    import sys
    import types

    import papermill
    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(
        execute_notebook=execute, inspect_notebook=papermill.inspect_notebook,
        PapermillExecutionError=papermill.PapermillExecutionError))


def test_reproduce_refuses_a_device_or_vgg19_weights_it_cannot_have_before_any_notebook_runs(tmp_path, monkeypatch,
                                                                                           capsys):
    """make reproduce PRESET=gpu on a CPU machine built the 4 GB gpu data before notebook 01 found no
    CUDA; a wrong HFFNE_VGG19_WEIGHTS was found in notebook 02, after the coarse stage had trained."""
    from hffne_lib.reproduce import main
    from hffne_lib.vgg import VGG19_ENV

    ran = []
    fake_papermill(monkeypatch, lambda source, target, **kw: ran.append(Path(source).name))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    assert main(["--preset", "gpu", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("hffne_lib.reproduce: device 'cuda' asked for but CUDA is not available "
                                       "here; use cpu\n")
    monkeypatch.setenv(VGG19_ENV, "weights/vgg19.pth")
    assert main(["--preset", "ci", "--out", str(tmp_path), "--only", "01", "02"]) == 2
    assert capsys.readouterr().err == (f"hffne_lib.reproduce: VGG19 weights not found at {tmp_path / 'weights/vgg19.pth'} "
                                       f"(set by {VGG19_ENV}); fix the path or unset it to fall back to the hub cache\n")
    assert ran == [] and not (tmp_path / "notebooks").exists()
    assert main(["--preset", "gpu", "--out", str(tmp_path), "--only", "00"]) == 0   # the data build needs neither
    assert ran == ["00_data_prep.ipynb"]


def test_reproduce_hands_the_notebooks_relative_paths_of_the_environment_as_absolute_ones(tmp_path, monkeypatch):
    """The kernels run in notebooks/: HFFNE_VGG19_WEIGHTS=weights/vgg19.pth was looked for there."""
    from hffne_lib.data.sfm import SFM_ENV
    from hffne_lib.figures import REAL_FACES_ENV
    from hffne_lib.reproduce import NOTEBOOK_DIR, PATH_VARIABLES, main
    from hffne_lib.vgg import VGG19_ENV

    assert set(PATH_VARIABLES) == {VGG19_ENV, SFM_ENV, REAL_FACES_ENV}
    seen = []
    fake_papermill(monkeypatch, lambda source, target, **kw: seen.append(
        (kw["cwd"], {name: os.environ.get(name) for name in PATH_VARIABLES})))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "vgg19.pth").write_bytes(b"")      # the check before the notebooks looks for the file
    monkeypatch.setenv(VGG19_ENV, "weights/vgg19.pth")
    monkeypatch.setenv(SFM_ENV, "/elsewhere/sfm.npz")
    monkeypatch.setenv(REAL_FACES_ENV, "faces")
    assert main(["--preset", "ci", "--out", str(tmp_path), "--only", "00", "04"]) == 0
    assert seen == 2 * [(str(NOTEBOOK_DIR), {VGG19_ENV: str(tmp_path / "weights" / "vgg19.pth"),
                                             SFM_ENV: "/elsewhere/sfm.npz", REAL_FACES_ENV: str(tmp_path / "faces")})]
    assert (os.environ[VGG19_ENV], os.environ[REAL_FACES_ENV]) == ("weights/vgg19.pth", "faces")   # as they were


def test_reproduce_names_a_dead_kernel_and_an_unknown_one_in_one_line(tmp_path, monkeypatch, capsys):
    from jupyter_client.kernelspec import find_kernel_specs
    from nbclient.exceptions import DeadKernelError

    from hffne_lib.reproduce import main

    assert main(["--preset", "ci", "--only", "00", "--kernel", "no_such_kernel", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hffne_lib.reproduce: no Jupyter kernel named 'no_such_kernel' to run 00_data_prep.ipynb; "
                          "give --kernel one of: ") and err.count("\n") == 1
    assert all(name in err for name in find_kernel_specs())

    def die(source, target, **kw):
        raise DeadKernelError("Kernel died")
    fake_papermill(monkeypatch, die)
    assert main(["--preset", "ci", "--only", "01", "--out", str(tmp_path)]) == 1
    target = tmp_path / "notebooks" / "ci" / "01_coarse_training.ipynb"
    assert capsys.readouterr().err == (f"hffne_lib.reproduce: 01_coarse_training.ipynb: its kernel died, most likely out "
                                       f"of memory (try a smaller preset or fewer --jobs); {target} shows how far it got, "
                                       f"and the same command resumes\n")


def test_notebook_02s_runs_are_named_after_their_settings_and_share_the_tables_folder_when_they_are_a_row():
    from hffne_lib.experiments import refinement_stage

    row_settings = [("refiner", {}), ("refiner_A1", {"refiner__architecture": "A1"}),
                    ("refiner_unpaired", {"paired": False}), ("refiner_iter_early", {"exemplar_iteration": 6}),
                    ("refiner", {"eval_every": 3, "log_every": 7})]     # resumable changes do not count,
    assert refinement_stage(get_config("cpu", refine_iters=3000)) == "refiner_refine_iters-3000"   # but the length
    for stage, overrides in row_settings:
        assert refinement_stage(get_config("cpu", **overrides)) == stage
    assert refinement_stage(get_config("cpu", seed=1)) == "refiner_seed-1"
    assert refinement_stage(get_config("cpu", shading_weight=3.0, refine_splits=("wild_train",))) == \
        "refiner_refine_splits-wild_train_shading_weight-3.0"
    # A1 with a shading term is no row: its own folder, not A1's (which it could not resume)
    assert refinement_stage(get_config("cpu", refiner__architecture="A1", shading_weight=3.0)) == \
        "refiner_refiner__architecture-A1_shading_weight-3.0"


def test_a_split_read_elsewhere_replaces_that_split_alone_and_is_named_in_the_provenance():
    cfg = get_config("ci", data_root="/bench", split_roots=("wild_train=/photos",))
    moved = cfg.with_split_roots(["scans=/florence"])
    assert [moved.root_of(s) for s in ("scans", "wild_train", "lab_test")] == ["/florence", "/photos", "/bench"]
    assert moved.split_roots_note(MEASURED_SPLITS) == {"splits read elsewhere": "scans=/florence"}
    assert cfg.split_roots_note(MEASURED_SPLITS) == {} and cfg.split_roots == ("wild_train=/photos",)
    assert cfg.with_split_roots(["wild_train=/other"]).split_roots == ("wild_train=/other",)
    with pytest.raises(ValueError, match="'split=folder' entries"):
        cfg.with_split_roots(["scans"])
