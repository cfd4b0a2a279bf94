"""A text classification table through `winnow run`: the offline default text encoder, planted
label flips found, text duplicates (normalised, MinHash), unusable texts as rows with reasons,
snippets (escaped) in the report, ids from --id-column, and a re-run that embeds nothing."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.helpers.clirun import run_winnow
from tests.helpers.images import digit_images, write_image_folder
from tests.helpers.texts import topic_rows, write_csv
from winnow.embeddings.text import MAX_TEXT_CHARS
from winnow.pipeline.config import ConfigError
from winnow.pipeline.run import validate_run


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    rows = topic_rows(24, seed=3)
    flips = {}
    others = {"sport": "food", "food": "tech", "tech": "sport"}
    for i in (0, 7, 20, 41):
        sid, text, label = rows[i]
        rows[i] = (sid, text, others[label])
        flips[sid] = label
    base, near = rows[1], rows[2]
    copies = {"copy-norm": base[0], "copy-near": near[0]}
    rows.append(("copy-norm", "  " + base[1].upper().replace(" ", "\t ") + " ", base[2]))  # exact after normalising
    rows.append(("copy-near", near[1][:-1] + "!", near[2]))  # one character changed: MinHash
    # Mislabelled on purpose, so that the report shows it.
    rows.append(("xss", "<script>alert('x')</script> The chef grilled salmon with lemon.", "tech"))
    rows += [("empty", "", "food"), ("blank", " \t ", "tech"), ("long", "word " * (MAX_TEXT_CHARS // 4), "tech")]
    path = write_csv(folder / "reviews.csv", rows)
    with open(path, "ab") as fh:
        fh.write(b"latin1,Caf\xe9 au lait and croissants at the bakery.,food\n")
    out = folder / "out"
    first = run_winnow("run", path, "--text-column", "text", "--label-column", "label", "--id-column", "id",
                       "--out", out, "--json", track_imports=False)
    assert first.returncode == 0, first.output
    second = run_winnow("run", path, "--text-column", "text", "--id-column", "id", "--out", out, "--json",
                        track_imports=False)
    assert second.returncode == 0, second.output
    return out, flips, json.loads(first.stdout), json.loads(second.stdout), len(rows) + 1, copies


def test_every_row_is_in_the_manifest_with_its_id_and_reason(text_run):
    out, _flips, summary, _again, n, copies = text_run
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert manifest.height == n and summary["samples"] == n
    assert summary["encoder"] == "sentence-transformers:all-MiniLM-L6-v2" and summary["source"] == "text_table"
    reasons = dict(zip(manifest["sample_id"], manifest["reasons"].to_list(), strict=True))
    assert reasons["empty"] == ["empty_text"] and reasons["blank"] == ["blank_text"]
    assert reasons["latin1"] == ["not_utf8"] and reasons["long"] == ["text_too_long"]
    dup_of = dict(zip(manifest["sample_id"], manifest["duplicate_of"], strict=True))
    for copy, code in (("copy-norm", "exact_duplicate"), ("copy-near", "near_duplicate")):
        original = copies[copy]
        # Either one of the pair is kept; the other is the copy, with its reason.
        assert (code in reasons[copy] and dup_of[copy] == original) or (
            code in reasons[original] and dup_of[original] == copy), (copy, reasons[copy], reasons[original])


def test_planted_flips_are_found(text_run):
    out, flips, _summary, _again, _n, _copies = text_run
    manifest = pl.read_parquet(out / "manifest.parquet")
    flagged = set(manifest.filter(pl.col("reasons").list.contains("label_issue"))["sample_id"])
    found = flagged & set(flips)
    assert len(found) >= 3, (sorted(flagged), flips)
    assert len(flagged - set(flips)) <= 4, sorted(flagged - set(flips))
    fixed = manifest.filter(pl.col("sample_id").is_in(list(found)) & (pl.col("decision") == "relabel"))
    assert all(flips[s] == f for s, f in zip(fixed["sample_id"], fixed["final_label"], strict=True))


def test_the_rerun_embeds_nothing_and_the_report_escapes_snippets(text_run):
    out, _flips, _summary, again, _n, _copies = text_run
    assert again["embedding"]["embedded"] == 0 and again["embedding"]["reused"] > 70
    pages = [p.read_text(encoding="utf-8") for p in (out / "latest").rglob("*.html")]
    html = "\n".join(pages)
    assert "thumb snippet" in html
    assert "&lt;script&gt;alert" in html  # the mislabelled row's snippet, escaped
    assert "<script>alert" not in html


def test_a_text_table_gets_the_text_encoder_and_refuses_an_image_one(tmp_path):
    path = write_csv(tmp_path / "t.csv", topic_rows(6))
    plan = validate_run(path, {"run": {"out": str(tmp_path / "out"), "text_column": "text"}}, load_encoder=False)
    assert plan.config.embed.encoder == "sentence-transformers:all-MiniLM-L6-v2"
    assert plan.samples.num_rows == 18
    with pytest.raises(ConfigError, match="'pixels' embeds images"):
        validate_run(path, {"run": {"out": str(tmp_path / "out"), "text_column": "text"}, "embed": {"encoder": "pixels"}},
                     load_encoder=False)
    folder = tmp_path / "imgs"
    write_image_folder(folder, digit_images(6))
    with pytest.raises(ConfigError, match="are images"):
        validate_run(folder, {"run": {"out": str(tmp_path / "out2")},
                              "embed": {"encoder": "open_clip_text:ViT-B-32/random"}}, load_encoder=False)
