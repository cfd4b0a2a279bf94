"""winnow.Config: one frozen config, one coercer, layered settings, and CLI options that map onto it.

The values must reach the code: a changed probe fold count reaches the probe, a lowered
`exact_below` switches the graph to IVF, and summary.json records what was used.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from tests.helpers.images import digit_images, write_image_folder
from winnow.catalogs import load_catalog
from winnow.curation import (
    DecisionPolicy,
    DetectConfig,
    IndexConfig,
    InvalidArray,
    KnnConfig,
    policy_from_dict,
)
from winnow.fields import field_names
from winnow.flows.cli import CONFIG_OPTIONS, app, settings_from_options
from winnow.pipeline.config import (
    SECTIONS,
    Config,
    ConfigError,
    EmbedConfig,
    RunOptions,
    check_settings,
    make_settings,
    parse_set,
    read_settings,
    settings_from_kwargs,
)
from winnow.pipeline.run import resolve_config

runner = CliRunner()


# --- the coercer ----------------------------------------------------------------------------------


def test_values_are_coerced_to_the_field_types():
    config = Config.from_settings({
        "knn": {"k": 7, "target_recall": 1},  # an int for a float field
        "detect": {"cluster_levels": [40, 6], "near_duplicate_min_similarity": "none", "outlier_local": True},
        "policy": {"keep": 0.5, "class_cap": "None"},  # TOML has no null: "none", any case
        "run": {"holdout": "val.toml"},  # one string for a tuple of strings
    })
    assert config.knn.k == 7 and config.knn.target_recall == 1.0 and isinstance(config.knn.target_recall, float)
    assert config.detect.cluster_levels == (40, 6) and config.detect.near_duplicate_min_similarity is None
    assert config.policy.keep == 0.5 and config.policy.class_cap is None
    assert config.run.holdout == ("val.toml",)


def test_set_strings_parse_as_toml_values():
    layer = parse_set(["knn.k=20", "embed.encoder=pixels:16", "detect.cluster_levels=[30, 5]", "policy.keep=0.7",
                       "run.wait=true", "embed.device=cuda:1", "detect.zero_shot_prompt=a photo of a {}, a digit."])
    assert layer == {"knn": {"k": 20}, "embed": {"encoder": "pixels:16", "device": "cuda:1"},
                     "detect": {"cluster_levels": (30, 5), "zero_shot_prompt": "a photo of a {}, a digit."},
                     "policy": {"keep": 0.7}, "run": {"wait": True}}


@pytest.mark.parametrize(("items", "quoted"), [
    (["knn.kk=3"], "'kk'"),  # unknown key: the message lists the allowed ones
    (["nn.k=3"], "'nn'"),  # unknown section
    (["knn.k=many"], "'many'"),
    (["knn.k=0"], "got 0"),
    (["k=3"], "'k=3'"),  # no section
    (["knn.k"], "'knn.k'"),  # no value
    (["policy.on_label_issue=maybe"], "'maybe'"),
    (["detect.methods=knn_vote,bogus"], "'bogus'"),
    (["detect.cluster_levels=[10, 100]"], "decreasing"),
    (["run.runner=spark"], "'spark'"),
    (["embed.device=tpu"], "'tpu'"),
    (["detect.zero_shot_prompt=a photo"], "'a photo'"),
])
def test_bad_settings_are_named_errors_quoting_the_value(items, quoted):
    with pytest.raises(ConfigError, match=quoted) as err:
        parse_set(items)
    assert items[0] in str(err.value) or "--set" in str(err.value)  # says where it came from


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        Config.from_settings({"knn": {"exact_bellow": 10}}, where="run.toml")
    message = str(err.value)
    assert message.startswith("run.toml: ") and "'exact_bellow'" in message
    assert all(name in message for name in field_names(KnnConfig))


def test_detection_knobs_left_the_policy_and_the_error_says_where_they_went():
    with pytest.raises(InvalidArray, match="detect.outlier_local"):
        policy_from_dict({"outlier_local": True})
    with pytest.raises(ConfigError, match="moved to the detect section"):
        parse_set(["policy.near_duplicate_min_similarity=0.95"])
    assert parse_set(["detect.near_duplicate_min_similarity=0.95"]) == {
        "detect": {"near_duplicate_min_similarity": 0.95}}
    policy_fields = set(field_names(DecisionPolicy))
    assert not policy_fields & set(field_names(DetectConfig))
    assert all(name.startswith(("on_", "relabel_", "keep", "prune_", "class_", "cluster_balanced", "weighting",
                                "effective_", "duplicate_representative", "actions", "drop_min_confidence")) for name in policy_fields), policy_fields


def test_every_section_field_has_a_comment():
    """nanoGPT / open_clip style: a comment on each field (in the source, beside or above it)."""
    import inspect

    for cls in SECTIONS.values():
        source = inspect.getsource(cls)
        for name in field_names(cls):
            lines = source.splitlines()
            [i] = [j for j, line in enumerate(lines) if line.strip().startswith(f"{name}:")]
            assert "#" in lines[i] or lines[i - 1].strip().startswith("#"), f"{cls.__name__}.{name} has no comment"


def test_knn_section_carries_every_index_knob():
    """KnnConfig builds an IndexConfig: the two cannot drift apart (seed is the run's)."""
    assert set(field_names(IndexConfig)) - {"seed"} == set(field_names(KnnConfig)) - {"k"}
    knn = KnnConfig(k=4, kind="ivf", exact_below=50, nlist=9, nprobe=3, max_nprobe=5, target_recall=0.9,
                    recall_sample=100, device="cpu")
    index = knn.index(seed=11)
    assert {f: getattr(index, f) for f in field_names(IndexConfig)} == {
        **{f: getattr(knn, f) for f in field_names(KnnConfig) if f != "k"}, "seed": 11}


# --- layers and their order -----------------------------------------------------------------------


def test_settings_round_trip_through_dicts_and_json():
    config = Config.from_settings(parse_set(["knn.k=3", "detect.cluster_levels=[9, 3]", "policy.keep=200",
                                             "run.holdout=[\"a\", \"b\"]", "embed.batch_size=8"]))
    assert Config.from_settings(config.settings()) == config
    assert Config.from_settings(json.loads(json.dumps(config.to_dict()))) == config
    assert config.settings() == {"embed": {"batch_size": 8}, "knn": {"k": 3}, "detect": {"cluster_levels": (9, 3)},
                                 "policy": {"keep": 200}, "run": {"holdout": ("a", "b")}}
    assert Config().settings() == {}


def test_precedence_defaults_catalog_file_options_set(tmp_path):
    data = tmp_path / "data"
    write_image_folder(data, digit_images(20, seed=1))
    (tmp_path / "cat.toml").write_text(
        f'name = "c"\nencoder = "pixels:8"\n[source]\nkind = "image_folder"\nroot = "{data}"\n'
        '[knn]\nk = 7\nexact_below = 100\n[policy]\nkeep = 0.5\non_outlier = "keep"\n[detect]\nprobe_folds = 4\n')
    (tmp_path / "run.toml").write_text('[knn]\nk = 9\n[policy]\nkeep = 0.6\n[embed]\nbatch_size = 16\n')
    spec = load_catalog(tmp_path / "cat.toml")
    given = {"config": tmp_path / "run.toml", "k": 11, "keep": "0.8", "policy": ["on_label_issue=drop"],
             "set_": ["knn.k=13", "detect.probe_epochs=2"], "out": tmp_path / "o"}
    config = resolve_config(spec, settings_from_options(given), defaults={"embed": {"batch_size": 4, "shards": 3}})
    assert config.knn.k == 13  # --set > --k > file > catalog
    assert config.knn.exact_below == 100  # the catalog's, untouched above it
    assert config.policy.keep == 0.8  # --keep > file > catalog
    assert config.policy.on_outlier == "keep" and config.policy.on_label_issue == "drop"
    assert config.detect.probe_folds == 4 and config.detect.probe_epochs == 2
    assert config.embed.batch_size == 16  # file > defaults
    assert config.embed.shards == 3  # defaults, nobody above
    assert config.embed.encoder == "pixels:8"  # the catalog's encoder line
    assert config.run.out == str(tmp_path / "o")


def test_catalog_tables_are_checked_with_the_catalog_named(tmp_path):
    (tmp_path / "cat.toml").write_text(f'name = "c"\n[source]\nkind = "image_folder"\nroot = "{tmp_path}"\n'
                                       '[knn]\nkay = 7\n')
    with pytest.raises(ConfigError, match=r"cat\.toml.*'kay'"):
        resolve_config(load_catalog(tmp_path / "cat.toml"))


def test_settings_file_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("[knn\nk = 3\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        read_settings(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="nope.toml"):
        read_settings(tmp_path / "nope.toml")
    (tmp_path / "odd.toml").write_text("k = 3\n")
    with pytest.raises(ConfigError, match="unknown section 'k'"):
        read_settings(tmp_path / "odd.toml")


def test_keyword_arguments_find_their_section():
    assert settings_from_kwargs({"k": 5, "keep": 0.7, "probe_folds": 3, "encoder": "pixels", "seed": 2}) == {
        "knn": {"k": 5}, "policy": {"keep": 0.7}, "detect": {"probe_folds": 3}, "embed": {"encoder": "pixels"},
        "run": {"seed": 2}}
    assert settings_from_kwargs({"policy": DecisionPolicy(on_outlier="keep"), "knn": {"k": 3}}) == {
        "policy": {"on_outlier": "keep"}, "knn": {"k": 3}}
    with pytest.raises(ConfigError, match=r"'device' is a field of \['embed', 'knn'\]"):
        settings_from_kwargs({"device": "cpu"})
    with pytest.raises(ConfigError, match="'kay'"):
        make_settings(kay=3)


def test_sections_validate_on_construction():
    with pytest.raises(ConfigError, match="'spark'"):
        RunOptions(runner="spark")
    with pytest.raises(ConfigError, match="batch_size"):
        EmbedConfig(batch_size=0)
    with pytest.raises(InvalidArray, match="probe_folds"):
        DetectConfig(probe_folds=1)
    with pytest.raises(ConfigError, match="Config.knn"):
        Config(knn=IndexConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().knn.k = 3  # type: ignore[misc]


# --- the command line -----------------------------------------------------------------------------


def _options(command_name: str) -> dict[str, object]:
    import typer.main

    command = typer.main.get_command(app).commands[command_name]
    return {p.name: p for p in command.params}


def test_run_and_serve_share_every_config_option():
    run, serve = _options("run"), _options("serve")
    config_options = {o.name for o in CONFIG_OPTIONS} | {"config", "set_", "policy"}
    assert config_options <= set(run)
    assert config_options <= set(serve), sorted(config_options - set(serve))
    for name in config_options:
        assert run[name].opts == serve[name].opts and run[name].help == serve[name].help, name
    # The rest of run's options are about its output, not the config.
    assert set(run) - config_options == {"target", "as_json", "quiet"}


def test_each_config_option_sets_one_config_field():
    fields = [o.field for o in CONFIG_OPTIONS]
    assert len(fields) == len(set(fields))  # one-to-one
    for option in CONFIG_OPTIONS:
        section, key = option.field.split(".")
        assert key in field_names(SECTIONS[section]), option.field
        assert option.name == key, option  # the option is named after the field it sets


def test_an_option_error_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="^--k: "):
        settings_from_options({"k": 0})
    with pytest.raises(ConfigError, match="^--policy 'on_outlier=delete'"):
        settings_from_options({"policy": ["on_outlier=delete"]})
    assert check_settings(settings_from_options({"holdout": ["a", "b"], "wait": False}), where="x") == {
        "run": {"holdout": ("a", "b"), "wait": False}}


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg") / "digits"
    write_image_folder(folder, digit_images(150, seed=3))
    return folder


def test_set_values_reach_the_probe_and_the_index(small_folder, tmp_path, monkeypatch):
    import winnow.curation.label_issues as li

    seen = {}
    real = li.fit_probe

    def spy(*args, **kwargs):
        seen.update(n_folds=kwargs["n_folds"], epochs=kwargs["epochs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(li, "fit_probe", spy)
    out = tmp_path / "o"
    result = runner.invoke(app, ["run", str(small_folder), "--out", str(out), "--encoder", "pixels:16", "--quiet",
                                 "--set", "detect.probe_folds=3", "--set", "detect.probe_epochs=2",
                                 "--set", "knn.exact_below=10"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert seen == {"n_folds": 3, "epochs": 2}
    assert summary["knn"]["method"].startswith("ivf("), summary["knn"]  # 150 samples > exact_below: IVF
    assert summary["config"]["detect"]["probe_folds"] == 3 and summary["config"]["knn"]["exact_below"] == 10
    # The full resolved config: every field of every section, defaults filled in.
    assert {s: set(v) for s, v in summary["config"].items()} == {s: set(field_names(c)) for s, c in SECTIONS.items()}
    assert summary["config"]["embed"]["encoder"] == "pixels:16"
    assert summary["config"]["embed"]["store"] == str(out.resolve() / "store")
    # And without them: the default probe and the exact graph.
    seen.clear()
    result = runner.invoke(app, ["run", str(small_folder), "--out", str(tmp_path / "d"), "--encoder", "pixels:16",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen == {"n_folds": 5, "epochs": 5}
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["knn"]["method"] == "exact"


def test_zero_shot_temperature_and_prompt_reach_the_detector(monkeypatch):
    import numpy as np

    import winnow.curation.label_issues as li
    from winnow.curation import build_knn_graph, curate

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 8))
    labels = np.repeat(np.arange(3), 20)
    emb = centers[labels] + 0.1 * rng.standard_normal((60, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    text = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    seen = []
    real = li.zero_shot_pred_probs

    def spy(*args, temperature, **kwargs):
        seen.append(temperature)
        return real(*args, temperature=temperature, **kwargs)

    monkeypatch.setattr(li, "zero_shot_pred_probs", spy)
    curate(labels, emb, build_knn_graph(emb, k=5), rows=np.arange(60), n_classes=3, unusable_reason=[None] * 60,
           keys=np.arange(60), class_text_embeddings=text, detect=DetectConfig(methods="zero_shot",
                                                                               zero_shot_temperature=0.5))
    assert seen == [0.5]
