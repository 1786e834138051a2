"""The generated documentation agrees with the measurements: docs/results.md and README's results
table are rendered from weights/evaluation.json and weights/latent_space.json (facecomp.measure.results_doc)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from facecomp.measure import results_doc

ROOT = results_doc.REPO_ROOT


@pytest.fixture(scope="module")
def measured() -> tuple[dict, dict]:
    read = (json.loads((ROOT / p).read_text()) for p in (results_doc.EVALUATION, results_doc.LATENT_SPACE))
    return next(read), next(read)


def test_generated_docs_agree_with_the_json() -> None:
    stale = [str(p.relative_to(ROOT)) for p in results_doc.stale_docs(ROOT)]
    assert not stale, f"{stale} disagree with weights/*.json: run python -m facecomp results"


def test_a_changed_number_changes_the_text(measured: tuple[dict, dict]) -> None:
    evaluation, latent_space = measured
    changed = copy.deepcopy(evaluation)
    row = next(r for r in changed["budget_table"] if r["codec"] == "ae" and r["max_bytes"] == 512)
    row["psnr"] += 0.5
    assert results_doc.render_headline(changed) != results_doc.render_headline(evaluation)
    assert results_doc.render_results(changed, latent_space) != results_doc.render_results(evaluation, latent_space)
    assert f"{row['psnr']:.2f} dB" in results_doc.render_results(changed, latent_space)

    changed_space = copy.deepcopy(latent_space)
    changed_space["models"]["vae"]["fd_dlib"]["prior"] *= 2
    assert results_doc.render_results(evaluation, changed_space) != results_doc.render_results(evaluation, latent_space)


def test_the_realism_table_sets_both_decodings_side_by_side(measured: tuple[dict, dict]) -> None:
    evaluation, latent_space = measured
    row = {"classifier_accuracy_spread": 0.02, "pictures": 1000}
    realism = {
        "pictures": 1000,
        "seeds": [0, 1, 2],
        "rows": [
            row | {"set": "real faces", "decoding": "none", "classifier_accuracy": 0.51, "detail_energy": 0.97},
            row
            | {"set": "ae reconstruction 512", "decoding": "mse", "classifier_accuracy": 0.93, "detail_energy": 0.4}
            | {"psnr": 25.1, "identity_kept": 0.63},
            row
            | {"set": "ae reconstruction 512", "decoding": "sharp", "classifier_accuracy": 0.71}
            | {"detail_energy": 0.93, "psnr": 24.2, "identity_kept": 0.66},
        ],
    }
    text = results_doc.render_results(evaluation, latent_space, realism)
    line = next(x for x in text.splitlines() if x.startswith("| ae reconstruction 512"))
    assert line == "| ae reconstruction 512 | 93% ± 1 | 71% ± 1 | 0.40 | 0.93 | 25.10 | 24.20 | 63% | 66% |"
    assert "real faces against other real faces: told apart 51% ± 1, fine detail 0.97" in text
    assert "Not measured yet" in results_doc.render_results(evaluation, latent_space, {})
    assert results_doc.realism_floor({}) == "" and results_doc.realism_rows({}) == []


def _copy_repo_files(root: Path, paths: tuple[Path, ...]) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, root / path)


def test_check_and_write_on_a_copy(
    tmp_path: Path, measured: tuple[dict, dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`results --check` names a stale file and exits 1; `results` rewrites it and leaves README
    outside its block alone."""
    from facecomp.__main__ import main

    _copy_repo_files(
        tmp_path,
        (
            results_doc.EVALUATION,
            results_doc.LATENT_SPACE,
            results_doc.REALISM,
            results_doc.README,
            results_doc.RESULTS_DOC,
        ),
    )
    monkeypatch.setattr(results_doc, "REPO_ROOT", tmp_path)
    assert main(["results", "--check"]) == 0
    changed = copy.deepcopy(measured[0])
    row = next(r for r in changed["budget_table"] if r["codec"] == "ae" and r["max_bytes"] == 1024)
    row["psnr"] += 1
    (tmp_path / results_doc.EVALUATION).write_text(json.dumps(changed))
    readme = tmp_path / results_doc.README
    outside = readme.read_text().split(results_doc.BEGIN)[0]

    capsys.readouterr()
    assert main(["results", "--check"]) == 1
    assert {line.split(":")[0] for line in capsys.readouterr().out.splitlines()} == {"docs/results.md", "README.md"}
    assert main(["results"]) == 0
    assert results_doc.stale_docs(tmp_path) == []
    assert main(["results", "--check"]) == 0
    assert readme.read_text().split(results_doc.BEGIN)[0] == outside
    assert f"{row['psnr']:.2f} dB" in readme.read_text()


def test_a_readme_without_markers_is_an_error(tmp_path: Path) -> None:
    _copy_repo_files(tmp_path, (results_doc.EVALUATION, results_doc.LATENT_SPACE))
    (tmp_path / results_doc.README).write_text("# FaceComp\n")
    with pytest.raises(ValueError, match="results:begin"):
        results_doc.stale_docs(tmp_path)
