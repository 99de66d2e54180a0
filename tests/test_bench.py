"""The speed benchmark runs end to end on CPU at a tiny size and its two paths agree."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from hffne_lib import bench
from hffne_lib.coarse import CoarseConfig
from hffne_lib.refiner import RefinerConfig

TINY = dict(coarse=CoarseConfig(base_width=8, depth=6), refiner=RefinerConfig(base_width=8, code_dim=64))


def test_authors_path_costs_what_the_release_computes():
    authors, fast = bench.BenchPath(True, **TINY), bench.BenchPath(False, **TINY)
    assert len(authors.perceptual.vgg.features) == 37 and not authors.perceptual.vgg.exit_early
    assert len(fast.perceptual.vgg.features) == 4  # up to relu1_2 only
    assert authors.refiner.decoder.ups[0].mix.implementation == "grouped"
    assert fast.refiner.decoder.ups[0].mix.implementation == "batched"
    assert all(p.requires_grad for p in authors.refiner.vgg.parameters())  # the release trains it


def test_benchmark_runs_and_paths_agree(tmp_path):
    result = bench.run("cpu", size=64, train_batch=2, batches=(1, 2), warmup=1, iters=1, compile_fast=False, **TINY)
    assert result["agreement"]["fp32_mean_deg"] < 0.5
    assert result["training"]["authors"]["iterations_per_s"] > 0 and result["training"]["speedup"] > 0
    assert set(result["inference"]) == {"batch_1", "batch_2"}
    assert result["inference"]["batch_1"]["optimised"]["latency_ms"] > 0
    assert "training_compiled" not in result and "inference_compiled" not in result
    ops = {name: [op["op"] for op in result["profile"][name]["top_ops"]]
           for name in ("training_step", "inference_batch_1")}
    assert any("backward" in op for op in ops["training_step"])       # the step's backward pass was seen
    assert not any("backward" in op for op in ops["inference_batch_1"])
    assert any(op.startswith("aten::") and "conv" in op for op in ops["inference_batch_1"])
    json.dumps(result)  # serialisable as written by main()


def test_a_training_step_takes_a_compiled_refiner():
    """torch.compile's wrapper forwards len(), so bool() of a compiled Refiner raises: the step must
    not test the module it is given for truth (it did, and the H200's compiled timing would have
    fallen back). The eager backend compiles in seconds; the step's loss is the uncompiled one."""
    path = bench.BenchPath(False, **TINY)
    twin = copy.deepcopy(path)
    gray = torch.rand(2, 1, 64, 64)
    rgb = gray.expand(-1, 3, -1, -1).contiguous()
    losses = [bench.training_step(p, torch.optim.Adam(p.refiner.parameters(), 1e-4), gray, rgb, False, refiner)
              for p, refiner in ((path, torch.compile(path.refiner, backend="eager")), (twin, None))]
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-5)


def test_a_cpu_run_keeps_the_optimised_path_in_fp32():
    """bf16 autocast is the optimised path's on CUDA only: an AVX2 CPU runs bf16 convolutions
    through a reference kernel tens of times slower, which would time a slow-down as the speed-up."""
    fast = bench.BenchPath(False, **TINY).eval()
    with torch.no_grad():
        assert bench._inference_fn(fast, True, None)(torch.rand(1, 1, 64, 64)).dtype == torch.float32
    cuda = torch.device("cuda")
    assert bench.uses_cuda_optimisations(cuda, True) and not bench.uses_cuda_optimisations(cuda, False)


def test_training_is_timed_in_train_mode_after_the_agreement_put_both_paths_in_eval_mode(monkeypatch):
    modes = []
    step = bench.training_step
    monkeypatch.setattr(bench, "training_step", lambda path, *a, **k: modes.append(path.refiner.training) or step(path, *a, **k))
    bench.run("cpu", size=64, train_batch=2, batches=(1,), warmup=1, iters=1, compile_fast=False, **TINY)
    assert len(modes) > 4 and all(modes)  # authors and optimised (one warm-up and one timed step each), the profile


def test_a_failing_compiler_costs_its_speed_up_not_the_run(monkeypatch):
    """torch.compile that breaks at the first call (as a missing toolchain does): the optimised path
    is timed uncompiled, the error is recorded, and each finished section was handed out."""
    import torch

    def broken_compile(fn, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("inductor exploded\nsecond line of the trace")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    sections = []
    result = bench.run("cpu", size=64, train_batch=2, batches=(1,), warmup=1, iters=1, compile_fast=True,
                       on_section=lambda partial: sections.append(list(partial)), **TINY)
    for timed in (result["training_compiled"]["optimised"], result["inference_compiled"]["batch_1"]["optimised"]):
        assert timed["compiled"] is False and timed["compile_error"] == "RuntimeError: inductor exploded"
        assert timed.get("iterations_per_s", timed.get("images_per_s")) > 0
    assert result["training_compiled"]["speedup"] > 0 and result["inference_compiled"]["batch_1"]["speedup"] > 0
    assert not any("compile_error" in result[section][key] for section in ("training", "inference")
                   for key in ("authors", "optimised", "batch_1") if key in result[section])
    assert [s[-1] for s in sections] == ["agreement", "training", "inference", "input", "profile",
                                         "inference_compiled", "training_compiled"]


def test_input_rate_is_measured_on_a_built_benchmark(tmp_path):
    from hffne_lib.data import build_benchmark
    from test_data_benchmark import TINY as TINY_DATA

    build_benchmark(tmp_path, TINY_DATA, progress=False)
    rate = bench.bench_input(32, batch=2, data_root=str(tmp_path), iters=3, workers=0)
    assert rate["samples_per_s"] > 0 and rate["resolution"] == 32
    assert bench.bench_input(32, 2, None, 3, 0)["samples_per_s"] is None
    # refused before any timing (it looped for ever on a split smaller than a batch)
    with pytest.raises(ValueError, match=r"its wild_train split holds \d+ items, fewer than one batch of 1000000"):
        bench.check_arguments(256, 1, 1, 0, str(tmp_path), train_batch=10**6)
    lab_only = tmp_path / "lab_only"     # as prepared Photoface data: lab splits only
    lab_only.mkdir()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["splits"]["wild_train"]
    (lab_only / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"lab_only holds no 'wild_train' split"):
        bench.check_arguments(256, 1, 1, 0, str(lab_only))


def test_the_profile_names_the_op_that_takes_the_time():
    import torch

    big, small = torch.rand(384, 384), torch.rand(8, 8)

    def work():
        for _ in range(4):
            big @ big
        small + 1

    profiled = bench.profile_calls(work, torch.device("cpu"), warmup=1, calls=2)
    top = profiled["top_ops"][0]
    assert top["op"] == "aten::mm" and top["calls"] == 4
    assert top["ms"] > 0 and profiled["wall_ms"] > 0
    assert next(op for op in profiled["top_ops"] if op["op"] == "aten::add")["calls"] == 1
    assert profiled["self_time_of"] == "host" and profiled["device_busy_fraction"] is None


def test_a_device_that_is_not_there_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("gpu", "unknown device 'gpu'"), ("cuda", "CUDA is not available here")):
        with pytest.raises(SystemExit) as bad:
            bench.main(["--device", device, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert bad.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--size", "128"], "--size must be a multiple of 256 (the paper's coarse U-Net halves it 8 times), got 128"),
    (["--iters", "0"], "--iters and --warmup must be at least 1, --workers 0 or more; got 0, 10, 4"),
    (["--data-root", "nowhere"], "no benchmark at nowhere: build it first"),
])
def test_settings_the_timing_would_trip_over_are_refused_before_it_starts(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as bad:
        bench.main(["--device", "cpu", "--out", str(tmp_path / "out"), *arguments])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and err.startswith(f"python -m hffne_lib.bench: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_resumed_benchmark_keeps_what_it_measured_and_measures_the_rest():
    cut_short = []

    def stop_after_training(partial):
        if "training" in partial:
            cut_short.append(dict(partial))
            raise KeyboardInterrupt  # as a time limit stops it
    with pytest.raises(KeyboardInterrupt):
        bench.run("cpu", size=64, train_batch=2, batches=(1,), warmup=1, iters=1, compile_fast=False,
                  on_section=stop_after_training, **TINY)
    earlier = cut_short[0]
    assert list(earlier)[-2:] == ["agreement", "training"]
    resumed = bench.run("cpu", size=64, train_batch=2, batches=(1,), warmup=1, iters=1, compile_fast=False,
                        earlier=earlier, **TINY)
    assert resumed["agreement"] is earlier["agreement"] and resumed["training"] is earlier["training"]
    assert {"inference", "input", "profile"} <= set(resumed)
    with pytest.raises(bench.HeaderMismatch, match="differs in resolution, settings \\(64, "):
        bench.run("cpu", size=128, train_batch=2, batches=(1, 2), warmup=1, iters=1, compile_fast=False,
                  earlier=earlier, **TINY)


def test_an_earlier_result_is_kept_unless_resumed_or_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    path = out / f"{bench.device_label(torch.device('cpu'))}.json"
    header = bench.run_header(torch.device("cpu"), 512, 8, (1, 32), 10, 50, True, "reduce-overhead", None, 4)  # main's
    earlier = {**header, "agreement": {"fp32_mean_deg": 0.0}}
    path.write_text(json.dumps(earlier))
    for arguments, message in ((["--size", "512"], "exists (--resume finishes it, --overwrite replaces it)"),
                               (["--resume"], "differs in resolution (512)"),
                               (["--size", "512", "--iters", "3", "--resume"], "differs in settings")):
        with pytest.raises(SystemExit) as bad:
            bench.main(["--device", "cpu", "--out", str(out), *arguments])
        err = capsys.readouterr().err
        assert bad.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert json.loads(path.read_text()) == earlier
    path.write_text("{ cut off")
    with pytest.raises(SystemExit) as bad:
        bench.main(["--device", "cpu", "--out", str(out), "--resume"])
    assert bad.value.code == 2 and "not a readable benchmark result" in capsys.readouterr().err
