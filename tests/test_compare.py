"""hffne_lib.compare and ``hffne compare``: agreement with reference maps, offset correction, figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hffne_lib.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, main
from hffne_lib.compare import (CORRECTED, NO_SKILL, PLAIN, Pair, compare_folders, compare_pairs,
                               comparison_figure, offset_corrected)
from hffne_lib.conventions import normalize, to_uint8_image


def sphere(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A hemisphere's normals (3 x size x size, zero outside) and its disc mask."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    x, y = (xs - size / 2) / (size / 2.2), -(ys - size / 2) / (size / 2.2)
    mask = x ** 2 + y ** 2 < 1
    z = np.sqrt(np.clip(1 - x ** 2 - y ** 2, 0, 1))
    normals = torch.from_numpy(np.stack([x, y, z]).astype(np.float32)) * torch.from_numpy(mask)
    return normals, mask


def write_pred(folder: Path, normals: torch.Tensor, mask: np.ndarray) -> None:
    """The photo-frame files ``hffne predict`` writes."""
    folder.mkdir(parents=True)
    np.save(folder / "image_normals.npy", normals.permute(1, 2, 0).numpy())
    Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "image_mask.png")


@pytest.fixture
def folders(tmp_path):
    """pred/, refs/ and photos/: "same" (the reference is ours, quantised), "biased" (ours with a
    constant offset, min-max rescaled as the authors' PNGs), "unmatched" (no prediction)."""
    normals, mask = sphere(48)
    shifted = normalize((normals + torch.tensor([0.2, -0.3, 0.0])[:, None, None])[None])[0]
    biased = to_uint8_image(shifted).astype(np.float32)
    biased = np.round((biased - biased.min()) / (biased.max() - biased.min()) * 255).astype(np.uint8)
    (tmp_path / "refs").mkdir()
    (tmp_path / "photos").mkdir()
    for name, ref in (("same", to_uint8_image(normals)), ("biased", biased), ("unmatched", biased)):
        Image.fromarray(ref).save(tmp_path / "refs" / f"{name}.png")
        Image.fromarray(np.full((48, 48, 3), 100, np.uint8)).save(tmp_path / "photos" / f"{name}.jpg")
        if name != "unmatched":
            write_pred(tmp_path / "pred" / name, normals, mask)
    return tmp_path


def test_agreement_with_and_without_offset_correction(folders):
    table, overall, pairs, problems = compare_folders(folders / "pred", folders / "refs")
    assert list(table.index) == ["biased", "same"] and problems == [f"unmatched.png: no prediction in {folders / 'pred' / 'unmatched'}"]
    assert table.loc["same", PLAIN] < 0.5 and table.loc["same", CORRECTED] < 0.5
    assert table.loc["biased", PLAIN] > 10 and table.loc["biased", CORRECTED] < table.loc["biased", PLAIN] / 2
    assert overall.loc[PLAIN, "mean"] == pytest.approx(table[PLAIN].mean())
    assert overall.loc[CORRECTED, "images"] == 2
    assert table.loc["same", NO_SKILL] > 20  # a hemisphere strays far from its mean direction
    assert overall.loc[NO_SKILL, "mean"] == pytest.approx(table[NO_SKILL].mean())
    figure = comparison_figure(pairs, table, folders / "photos")
    assert len(figure.axes) == 6


def test_offset_correction_matches_masked_means():
    normals, mask = sphere(32)
    theirs = normalize((normals + torch.tensor([0.1, 0.2, -0.1])[:, None, None])[None])[0]
    corrected = offset_corrected(theirs, normals, mask)
    inside = torch.from_numpy(mask)
    assert torch.allclose(corrected.norm(dim=0)[inside], torch.ones(int(mask.sum())), atol=1e-5)
    gap = lambda n: (n[:, inside].mean(1) - normals[:, inside].mean(1)).norm()  # noqa: E731
    assert gap(corrected) < gap(theirs) / 3  # renormalising after the shift moves the mean a little


def test_no_skill_floor_is_the_references_spread_about_its_mean():
    """A flat reference tilted 30 degrees: the offset-corrected constant normal matches it (floor ~0),
    while a hemisphere prediction, plain, is far from it."""
    normals, mask = sphere(32)
    tilt = torch.tensor([np.sin(np.pi / 6), 0.0, np.cos(np.pi / 6)], dtype=torch.float32)
    flat = tilt[:, None, None].expand_as(normals).clone()
    table, overall = compare_pairs([Pair("flat", normals, flat, mask)])
    assert table.loc["flat", NO_SKILL] < 0.01
    assert table.loc["flat", PLAIN] > 20 and list(overall.index) == [PLAIN, CORRECTED, NO_SKILL]


def test_cli_writes_tables_and_figure(folders, capsys):
    code = main(["compare", str(folders / "pred"), str(folders / "refs"), "--images", str(folders / "photos"),
                 "--out", str(folders / "report")])
    out = capsys.readouterr().out
    assert code == EXIT_OK and "not accuracy" in out and "constant frontal normal scores" in out
    assert all((folders / "report" / f).is_file() for f in ("per_image.csv", "overall.csv", "comparison.png"))
    (folders / "report" / "overall.csv").write_text("the user's own notes")
    again = ["compare", str(folders / "pred"), str(folders / "refs"), "--out", str(folders / "report")]
    assert main(again) == EXIT_USAGE
    assert capsys.readouterr().err == f"hffne compare: {folders / 'report' / 'per_image.csv'} exists (use --overwrite)\n"
    assert (folders / "report" / "overall.csv").read_text() == "the user's own notes"       # kept
    assert main([*again, "--overwrite"]) == EXIT_OK
    assert (folders / "report" / "overall.csv").read_text().startswith(",mean")


def test_cli_nothing_to_compare_says_why_for_each_reference(folders, capsys):
    assert main(["compare", str(folders / "photos"), str(folders / "refs")]) == EXIT_NOTHING_DONE
    err = capsys.readouterr().err.splitlines()
    refs = sorted(path.name for path in (folders / "refs").iterdir())
    assert err[-1].startswith("hffne compare: nothing to compare")
    assert [line.split(":")[0] for line in err[:-1]] == refs and all(": no prediction in " in line for line in err[:-1])


def test_an_unreadable_reference_or_prediction_is_one_line_and_the_rest_goes_on(folders, capsys):
    (folders / "refs" / "junk.png").write_bytes(b"not a png")                     # a foreign file
    (folders / "refs" / "cut.png").write_bytes((folders / "refs" / "same.png").read_bytes()[:60])   # truncated
    for name in ("junk", "cut", "nomask"):
        write_pred(folders / "pred" / name, *sphere(48))
    (folders / "refs" / "nomask.png").write_bytes((folders / "refs" / "same.png").read_bytes())
    (folders / "pred" / "nomask" / "image_mask.png").unlink()
    table, _, _, problems = compare_folders(folders / "pred", folders / "refs")
    assert list(table.index) == ["biased", "same"]
    unreadable = sorted(line.split(":")[0] for line in problems if ": unreadable (" in line)
    assert unreadable == ["cut.png", "junk.png", "nomask.png"], problems
    assert main(["compare", str(folders / "pred"), str(folders / "refs")]) == EXIT_OK
    assert capsys.readouterr().err.count(": unreadable (") == 3
