"""Speed benchmark: the authors-equivalent path against the project's optimised path, one run.

    python -m hffne_lib.bench --device cuda --out results/benchmarks

(a) authors-equivalent: fp32, per-sample grouped-conv modulation, VGG19 run through pool5 in the
    encoder and the perceptual loss (their vgg19.forward computes every layer), the encoder's VGG
    trained (their script re-enables its gradients). Both paths run the coarse U-Net without dropout.
(b) optimised, the same maths: bf16 autocast, channels_last and a fused Adam (on CUDA:
    ``uses_cuda_optimisations``), the batched modulated convolution, VGG stopped at the last layer
    used (the classifier is never built), torch.compile, CUDA graphs for inference (torch.compile
    mode "reduce-overhead").
Timed: the refinement training step (batch 8) and full inference (coarse + encoder + decoder,
batch 1 and 32): iterations or images per second, latency (each call waited for on its own, median),
GPU memory (the peak, and what was resident before: weights of both paths), ratio (b)/(a);
the input pipeline's rate beside the step rate; agreement of (b) with (a) (mean angular
difference in fp32, and in bf16); where (b)'s time goes (``profile``: the device's busy share of
a training step and of a batch-1 inference, its launches per call, the ops with the most self
time). Sections, in order: agreement, training and inference (both paths uncompiled), input,
profile, then inference_compiled and training_compiled ((b) under torch.compile: compiling takes
the longest, so a run cut short keeps the rest; each batch size compiles afresh, for a fixed shape;
``first_call_s`` is the first call's time, the compilation included).
Both paths are timed under PyTorch's default TF32 settings (cuDNN convolutions TF32, matmuls not), as
the authors' code runs; the agreement is measured in strict fp32. Results go to
<out>/<device name>.json, rewritten as each section ends.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from .coarse import CoarseConfig, UNetGenerator
from .config import checked_device, device_name
from .files import write_text_atomically
from .losses import PerceptualLoss, reconstruction_loss
from .metrics import angular_error
from .refiner import Refiner, RefinerConfig
from .train import bf16_autocast, to_channels_last
from .vgg import VGG19Features

if TYPE_CHECKING:
    from .data import FaceNormalDataset

#: The refinement training step's batch, the authors' (issue #8's targets are at batch 8).
TRAIN_BATCH = 8


class BenchPath(nn.Module):
    """One benchmarked path: the coarse U-Net, the refiner and the perceptual loss."""

    def __init__(self, authors: bool, coarse: CoarseConfig, refiner: RefinerConfig, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.authors = authors
        self.coarse = UNetGenerator(1, coarse.base_width, coarse.depth, test_time_dropout=False).eval()
        modulation = "grouped" if authors else "batched"
        self.refiner = Refiner(RefinerConfig(**{**refiner.__dict__, "modulation": modulation,
                                                "train_encoder_vgg": True}))
        if authors:  # their encoder VGG computes every layer to pool5
            full = VGG19Features("pool5", exit_early=False)
            full.load_state_dict(self.refiner.vgg.state_dict(), strict=False)
            self.refiner.normal_encoder.vgg = full.requires_grad_(True)
        self.perceptual = PerceptualLoss(VGG19Features("pool5", exit_early=False) if authors else VGG19Features("relu1_2"))


def _copy_weights(src: BenchPath, dst: BenchPath) -> None:
    """Give (b) exactly (a)'s weights (the VGG trunks share their common layers)."""
    dst.coarse.load_state_dict(src.coarse.state_dict())
    dst.refiner.load_state_dict(src.refiner.state_dict(), strict=False)
    dst.perceptual.load_state_dict(src.perceptual.state_dict(), strict=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _latency(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Median seconds of one call of ``fn`` waited for on its own (after ``_timed``'s warm-up):
    the latency one request sees, where ``_timed`` measures a stream of calls."""
    times = []
    for _ in range(calls):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed_compiled(make_fn: Callable[[bool], Callable[[], object]], device: torch.device, warmup: int,
                    iters: int, compiled: bool) -> tuple[Callable[[], object], float, dict]:
    """``_timed(make_fn(compiled))``; when compiling fails (it happens at the first call), the
    uncompiled ``make_fn(False)`` is timed instead and the failure recorded, so one broken compiler
    costs that speed-up, not the whole benchmark. Each compiled timing starts from an empty
    compile cache (a cache made for another batch size would recompile with a dynamic batch).
    -> (the function timed, seconds per call, notes for the result: ``first_call_s``, the compiled
    function's first call, compilation included)."""
    notes = {"compiled": False}
    if compiled:
        torch._dynamo.reset()
        try:
            fn = make_fn(True)
            start = time.perf_counter()
            fn()
            _sync(device)
            first_call = time.perf_counter() - start
            return fn, _timed(fn, device, warmup, iters), {"compiled": True, "first_call_s": first_call}
        except Exception as err:  # noqa: BLE001 - any compiler failure: fall back and say why
            torch._dynamo.reset()
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            notes["compile_error"] = reason[:300]
    fn = make_fn(False)
    return fn, _timed(fn, device, warmup, iters), notes


def training_step(path: BenchPath, optimizer: torch.optim.Optimizer, gray: torch.Tensor, rgb: torch.Tensor,
                  bf16: bool, refiner: nn.Module | None = None) -> torch.Tensor:
    """One refinement iteration (eq. 10): exemplar under no_grad, refine, losses, Adam step."""
    refiner = path.refiner if refiner is None else refiner   # not `or`: a compiled module's bool() raises
    with torch.no_grad(), bf16_autocast(gray.device, bf16):
        exemplar = path.coarse(gray).float()
    with bf16_autocast(gray.device, bf16):
        refined = refiner(gray, exemplar).float()
        loss = reconstruction_loss(refined, exemplar) + path.perceptual(refined, rgb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _memory(device: torch.device, resident: float | None) -> dict:
    """GPU memory (MiB) of a timing: its peak and what was resident when it began (None off CUDA)."""
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return {"peak_memory_mib": peak, "resident_memory_mib": resident}


def _reset_peak(device: torch.device) -> float | None:
    """Start a peak-memory measurement; returns the MiB resident now (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / 2 ** 20


def uses_cuda_optimisations(device: torch.device, optimised: bool) -> bool:
    """Whether a path runs under bf16 autocast, in channels_last and with a fused Adam: the optimised
    one, on CUDA. A CPU without bf16 units (AVX2) computes bf16 convolutions with a reference kernel
    tens of times slower than fp32, so there the optimised path stays fp32 and a CPU run times the
    other optimisations alone."""
    return optimised and device.type == "cuda"


def _prepare(path: BenchPath, device: torch.device, optimised: bool) -> BenchPath:
    path = path.to(device)
    if uses_cuda_optimisations(device, optimised):
        path = to_channels_last(path)
    return path


def _gray_batch(batch: int, size: int, device: torch.device, optimised: bool) -> torch.Tensor:
    """Random grey images, B x 1 x size x size, channels_last for the optimised path on CUDA."""
    gray = torch.rand(batch, 1, size, size, device=device)
    return gray.contiguous(memory_format=torch.channels_last) if uses_cuda_optimisations(device, optimised) else gray


def _training_inputs(path: BenchPath, device: torch.device, batch: int, size: int,
                     optimised: bool) -> tuple[torch.Tensor, torch.Tensor, torch.optim.Optimizer]:
    """Put the refiner in train mode; a grey batch (B x 1 x size x size), its RGB copy and an Adam
    over the refiner's trained parameters (fused on CUDA for the optimised path)."""
    path.refiner.train()
    gray = _gray_batch(batch, size, device, optimised)
    rgb = gray.expand(-1, 3, -1, -1).contiguous()
    params = [p for p in path.refiner.parameters() if p.requires_grad]
    return gray, rgb, torch.optim.Adam(params, 1e-4, (0.9, 0.99), fused=uses_cuda_optimisations(device, optimised))


def _training_rate(path: BenchPath, device: torch.device, batch: int, size: int, warmup: int, iters: int,
                   optimised: bool, compiled: bool) -> dict:
    """Refinement training iterations per second of one path (``compiled``: its refiner under
    torch.compile), with its peak GPU memory. The refiner trains in train mode (the exemplar's
    U-Net stays in eval mode, as in hffne_lib.train)."""
    gray, rgb, optimizer = _training_inputs(path, device, batch, size, optimised)

    def step(compile_now: bool):
        refiner = torch.compile(path.refiner, dynamic=False) if compile_now else path.refiner
        return lambda: training_step(path, optimizer, gray, rgb, uses_cuda_optimisations(device, optimised), refiner)
    resident = _reset_peak(device)
    _, seconds, notes = _timed_compiled(step, device, warmup, iters, compiled)
    memory = _memory(device, resident)
    optimizer.zero_grad(set_to_none=True)   # no gradients left resident in the timings after this one
    return {"iterations_per_s": 1.0 / seconds, **memory, **notes}


def bench_training(authors: BenchPath, fast: BenchPath, device: torch.device, batch: int, size: int,
                   warmup: int, iters: int) -> dict:
    """Refinement training iterations per second of both paths, uncompiled, and their ratio."""
    results = {name: _training_rate(path, device, batch, size, warmup, iters, name == "optimised", False)
               for name, path in (("authors", authors), ("optimised", fast))}
    results["speedup"] = results["optimised"]["iterations_per_s"] / results["authors"]["iterations_per_s"]
    return results


def bench_training_compiled(fast: BenchPath, device: torch.device, batch: int, size: int, warmup: int, iters: int,
                            authors_rate: float) -> dict:
    """The optimised training step under torch.compile, and its ratio to ``authors_rate`` (it/s)."""
    timed = _training_rate(fast, device, batch, size, warmup, iters, True, True)
    return {"optimised": timed, "speedup": timed["iterations_per_s"] / authors_rate}


def _inference_fn(path: BenchPath, optimised: bool, compile_mode: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def infer(gray: torch.Tensor) -> torch.Tensor:
        with bf16_autocast(gray.device, uses_cuda_optimisations(gray.device, optimised)):
            return path.refiner(gray, path.coarse(gray))
    return torch.compile(infer, mode=compile_mode, dynamic=False) if compile_mode else infer


@torch.no_grad()
def _inference_rate(path: BenchPath, device: torch.device, batch: int, size: int, warmup: int, iters: int,
                    optimised: bool, compile_mode: str | None) -> dict:
    """Images per second (a stream of batches), latency (one batch waited for on its own, median of
    ``iters``) and GPU memory of one path's full inference (``compile_mode``: under torch.compile in
    that mode; None: uncompiled)."""
    path.eval()
    gray = _gray_batch(batch, size, device, optimised)

    def call(compile_now: bool):
        fn = _inference_fn(path, optimised, compile_mode if compile_now else None)
        return lambda: fn(gray)
    resident = _reset_peak(device)
    timed, seconds, notes = _timed_compiled(call, device, warmup, iters, compile_mode is not None)
    latency = _latency(timed, device, iters)
    return {"images_per_s": batch / seconds, "latency_ms": 1000 * latency, **_memory(device, resident), **notes}


def bench_inference(authors: BenchPath, fast: BenchPath, device: torch.device, batches: tuple[int, ...], size: int,
                    warmup: int, iters: int) -> dict:
    """Full inference of both paths, uncompiled, for each batch size, and their ratio."""
    results = {}
    for batch in batches:
        row = {name: _inference_rate(path, device, batch, size, warmup, iters, name == "optimised", None)
               for name, path in (("authors", authors), ("optimised", fast))}
        row["speedup"] = row["optimised"]["images_per_s"] / row["authors"]["images_per_s"]
        results[f"batch_{batch}"] = row
    return results


def bench_inference_compiled(fast: BenchPath, device: torch.device, batches: tuple[int, ...], size: int, warmup: int,
                             iters: int, compile_mode: str, authors_rates: dict[str, float]) -> dict:
    """The optimised inference under torch.compile(mode=compile_mode) for each batch size, and its
    ratio to ``authors_rates`` ("batch_<n>" -> images/s)."""
    results = {}
    for batch in batches:
        timed = _inference_rate(fast, device, batch, size, warmup, iters, True, compile_mode)
        results[f"batch_{batch}"] = {"optimised": timed,
                                     "speedup": timed["images_per_s"] / authors_rates[f"batch_{batch}"]}
    return results


def profile_calls(fn: Callable[[], object], device: torch.device, warmup: int = 3, calls: int = 5,
                  top: int = 12) -> dict:
    """Where the time of ``fn`` goes, per call: its wall time (ms, timed without the profiler);
    on CUDA the device's busy time (kernels and copies, ms), its share of the wall time (well below
    1: the host cannot launch fast enough, which CUDA graphs address) and the device activities
    launched; the ``top`` ops by self time (device time on CUDA, host time elsewhere; ms and calls).
    A profiler that fails, or sees no device activity on CUDA (no CUPTI), is recorded as such: it
    is a diagnosis, it must not cost the benchmark its later sections."""
    wall_ms = 1000 * _timed(fn, device, warmup, calls)
    on_cuda = device.type == "cuda"
    try:
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])) as prof:
            for _ in range(calls):
                fn()
            _sync(device)
        activity = [event for event in prof.events() if event.device_type != DeviceType.CPU]
        ops = [op for op in prof.key_averages() if op.device_type == DeviceType.CPU and not op.is_user_annotation]
    except Exception as err:  # noqa: BLE001 - see the docstring
        return {"wall_ms": wall_ms, "profile_error": f"{type(err).__name__}: {err}"[:300]}
    device_time = on_cuda and bool(activity)

    def self_us(op) -> float:
        return op.self_device_time_total if device_time else op.self_cpu_time_total
    ops.sort(key=self_us, reverse=True)
    busy_ms = sum(event.self_device_time_total for event in activity) / 1000 / calls if device_time else None
    return {"wall_ms": wall_ms, "device_busy_ms": busy_ms,
            "device_busy_fraction": busy_ms / wall_ms if device_time else None,
            "device_activities": len(activity) / calls if device_time else None,
            "self_time_of": "device" if device_time else "host",
            **({"note": "the profiler recorded no device activity (is CUPTI installed?)"}
               if on_cuda and not device_time else {}),
            "top_ops": [{"op": op.key, "ms": self_us(op) / 1000 / calls, "calls": op.count / calls}
                        for op in ops[:top]]}


def bench_profile(fast: BenchPath, device: torch.device, batch: int, size: int, warmup: int, calls: int) -> dict:
    """``profile_calls`` of the optimised path, uncompiled: one training step (batch ``batch``)
    and one batch-1 inference (the latency target)."""
    gray, rgb, optimizer = _training_inputs(fast, device, batch, size, True)
    bf16 = uses_cuda_optimisations(device, True)
    training = profile_calls(lambda: training_step(fast, optimizer, gray, rgb, bf16), device, warmup, calls)
    fast.eval()
    single = _gray_batch(1, size, device, True)
    infer = _inference_fn(fast, True, None)
    with torch.no_grad():
        inference = profile_calls(lambda: infer(single), device, warmup, calls)
    return {"training_step": training, "inference_batch_1": inference}


@torch.no_grad()
def agreement(authors: BenchPath, fast: BenchPath, device: torch.device, size: int, batch: int = 4) -> dict:
    """Mean angular difference (degrees) of (b) against (a): strict fp32 (TF32 off for the
    comparison) and bf16 autocast."""
    authors.eval(), fast.eval()
    gray = torch.rand(batch, 1, size, size, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        reference = authors.refiner(gray, authors.coarse(gray)).float()
        fp32 = fast.refiner(gray, fast.coarse(gray)).float()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    bf16 = uses_cuda_optimisations(device, True)
    with bf16_autocast(device, bf16):
        low = fast.refiner(gray, fast.coarse(gray)).float()
    return {"fp32_mean_deg": angular_error(fp32, reference).mean().item(),
            "bf16_mean_deg": angular_error(low, reference).mean().item() if bf16 else None}


def bench_input(size: int, batch: int, data_root: str | None, iters: int, workers: int) -> dict:
    """Samples per second the data pipeline delivers (the synthetic benchmark's reader), timed from
    the first batch on: starting the workers is a once-per-run cost, not a rate."""
    if data_root is None:
        return {"samples_per_s": None, "note": "no --data-root given"}
    from torch.utils.data import DataLoader

    dataset = input_split(data_root, batch)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    count, start, done = -batch, None, False
    while not done:
        for items in loader:
            start = start or time.perf_counter()
            count += items["gray"].shape[0]
            if count >= iters * batch:
                done = True
                break
    return {"samples_per_s": count / (time.perf_counter() - start), "workers": workers,
            "resolution": int(dataset[0]["gray"].shape[-1])}


def input_split(data_root: str, batch: int) -> "FaceNormalDataset":
    """The split ``bench_input`` reads, wild_train (a FaceNormalDataset); one-line ValueError where the
    folder has none (prepared Photoface data) or fewer items than one ``batch``, FileNotFoundError
    where it holds no benchmark."""
    from .data import FaceNormalDataset

    dataset = FaceNormalDataset(data_root, "wild_train")
    if len(dataset) < batch:
        raise ValueError(f"{data_root}: its wild_train split holds {len(dataset)} items, fewer than one batch of "
                         f"{batch}, so the input rate cannot be timed; give a larger benchmark as --data-root")
    return dataset


def device_label(device: torch.device) -> str:
    """``config.device_name`` as a file name, e.g. NVIDIA_H200 or x86_64."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", device_name(device)).strip("_") or "cpu"


def run_header(device: torch.device, size: int, train_batch: int, batches: tuple[int, ...], warmup: int,
               iters: int, compile_fast: bool, compile_mode: str | None, data_root: str | None, workers: int) -> dict:
    """What a result of ``run`` with these arguments depends on besides the code: device, torch,
    resolution, settings (a resumed benchmark must match it; the input section's data too)."""
    return {"device": device_label(device), "torch": torch.__version__, "resolution": size,
            "settings": {"train_batch": train_batch, "batches": list(batches), "warmup": warmup, "iters": iters,
                         "compile": compile_fast, "compile_mode": compile_mode, "data_root": data_root,
                         "workers": workers,
                         "tf32": "PyTorch's defaults: cuDNN convolutions TF32, matmuls fp32 (agreement: strict fp32)",
                         "vgg_weights": "random (speed does not depend on the weights)"}}


class HeaderMismatch(ValueError):
    """An earlier result handed to ``run`` was made under another header (``run_header``)."""


def check_resumable(earlier: dict, header: dict) -> None:
    """One-line HeaderMismatch when an earlier result (``earlier``) was made under another ``header``."""
    differs = [key for key in header if earlier.get(key) != header[key]]
    if differs:
        raise HeaderMismatch(f"the earlier benchmark there differs in {', '.join(differs)} "
                         f"({', '.join(f'{earlier.get(key)!r}' for key in differs)}); use another --out or --overwrite")


def run(device: str = "cuda", size: int = 256, train_batch: int = TRAIN_BATCH, batches: tuple[int, ...] = (1, 32),
        warmup: int = 10, iters: int = 50, compile_fast: bool = True, compile_mode: str | None = "reduce-overhead",
        data_root: str | None = None, workers: int = 4, coarse: CoarseConfig | None = None,
        refiner: RefinerConfig | None = None, on_section: Callable[[dict], None] | None = None,
        earlier: dict | None = None) -> dict:
    """The whole benchmark; returns the result dict (also what main() writes as JSON).
    ``on_section`` is called with the result so far after each section (main() writes it, so a
    run cut short keeps what it measured). ``earlier``: such a result, cut short, with the same
    header (else HeaderMismatch, before anything is built): its sections are kept and only the
    missing ones measured."""
    dev = torch.device(device)
    header = run_header(dev, size, train_batch, batches, warmup, iters, compile_fast, compile_mode, data_root, workers)
    if earlier is not None:
        check_resumable(earlier, header)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # PyTorch's defaults, under which the authors' code runs (and ours: it asks for no more)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    coarse, refiner = coarse or CoarseConfig(), refiner or RefinerConfig()
    authors, fast = BenchPath(True, coarse, refiner), BenchPath(False, coarse, refiner)
    _copy_weights(authors, fast)
    authors, fast = _prepare(authors, dev, False), _prepare(fast, dev, True)
    result = {**header, **(earlier or {})}
    # compiling takes the longest: those sections come last, so a run cut short keeps the others
    sections = {
        "agreement": lambda: agreement(authors, fast, dev, size),
        "training": lambda: bench_training(authors, fast, dev, train_batch, size, warmup, iters),
        "inference": lambda: bench_inference(authors, fast, dev, batches, size, warmup, iters),
        "input": lambda: bench_input(size, train_batch, data_root, iters, workers),
        "profile": lambda: bench_profile(fast, dev, train_batch, size, min(warmup, 3), min(iters, 5)),
    }
    # inference first: its batch-1 latency is the target that most needs CUDA graphs, and a run cut
    # short by a time limit (scripts/gpu_check.sh gives the benchmark 150 s) keeps what came first
    if compile_fast and compile_mode is not None:
        sections["inference_compiled"] = lambda: bench_inference_compiled(
            fast, dev, batches, size, warmup, iters, compile_mode,
            {key: row["authors"]["images_per_s"] for key, row in result["inference"].items()})
    if compile_fast:  # the training step's refiner
        sections["training_compiled"] = lambda: bench_training_compiled(
            fast, dev, train_batch, size, warmup, iters, result["training"]["authors"]["iterations_per_s"])
    for name, measure in sections.items():
        if name in result:   # measured by the run resumed
            continue
        result[name] = measure()
        if on_section is not None:
            on_section(result)
    return result


def check_arguments(size: int, iters: int, warmup: int, workers: int, data_root: str | None,
                    train_batch: int = TRAIN_BATCH) -> None:
    """One-line ValueError (FileNotFoundError for a missing benchmark) for settings the timing would
    trip over only minutes in: a side the paper's coarse U-Net cannot halve down to 1 px, no timed
    iterations, negative counts, a data root without a batch of ``input_split``."""

    side = 2 ** CoarseConfig().depth
    if size < side or size % side:
        raise ValueError(f"--size must be a multiple of {side} (the paper's coarse U-Net halves it "
                         f"{CoarseConfig().depth} times), got {size}")
    if iters < 1 or warmup < 1 or workers < 0:
        raise ValueError(f"--iters and --warmup must be at least 1, --workers 0 or more; got {iters}, {warmup}, {workers}")
    if data_root is not None:
        input_split(data_root, train_batch)


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.bench``; returns 0, or exits with code 2 and one line for a bad setting."""
    parser = argparse.ArgumentParser(prog="python -m hffne_lib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--data-root", help="a built benchmark folder, to time the input pipeline")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--resume", action="store_true",
                        help="an earlier run's JSON in --out (same settings): keep its sections, measure the rest")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's JSON in --out")
    args = parser.parse_args(argv)
    earlier = None
    try:
        device = checked_device(args.device)
        check_arguments(args.size, args.iters, args.warmup, args.workers, args.data_root)
        path = args.out / f"{device_label(device)}.json"
        if path.exists() and not args.overwrite:
            if not args.resume:
                raise ValueError(f"{path} exists (--resume finishes it, --overwrite replaces it)")
            try:
                earlier = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}: not a readable benchmark result ({err}); use --overwrite") from None
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"{parser.prog}: {err}\n")
    args.out.mkdir(parents=True, exist_ok=True)

    def write(partial: dict) -> None:
        write_text_atomically(path, json.dumps(partial, indent=2) + "\n")
        print(f"[bench] {next(reversed(partial))} done", flush=True)
    try:
        result = run(args.device, args.size, warmup=args.warmup, iters=args.iters, compile_fast=not args.no_compile,
                     data_root=args.data_root, workers=args.workers, on_section=write, earlier=earlier)
    except HeaderMismatch as err:   # raised before anything is measured or written
        parser.exit(2, f"{parser.prog}: {err}\n")
    print(json.dumps(result, indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
