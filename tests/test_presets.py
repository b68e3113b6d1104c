"""Presets: the shipped files cover the registry, a preset's runs become configs with the
right precedence, and a bad preset fails with one line naming its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fkdbench import runs
from fkdbench.config import TrainConfig
from fkdbench.data.variants import VARIANTS
from fkdbench.models import list_models
from fkdbench.presets import PresetError, list_presets, load_preset


def _write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_shipped_presets_cover_the_registry(tmp_path: Path) -> None:
    assert list_presets() == ["levers", "paper", "pretrain", "quick", "smoke"]
    quick, paper = load_preset("quick"), load_preset("paper")
    for preset in (quick, paper):
        configs = preset.configs(tmp_path / "data", tmp_path / "runs")
        assert len(configs) == preset.run_count() == len(preset.runs) * preset.seeds
        assert all(isinstance(config, TrainConfig) for config in configs)
        assert all(config.runs_dir == tmp_path / "runs" for config in configs)
        assert all(config.data_dir == tmp_path / "data" for config in configs)
    # quick leaves out what cannot converge in its budget (timed untrained instead).
    assert quick.archs() <= set(list_models()) == paper.archs()
    assert quick.variants() == set(VARIANTS) == paper.variants()
    pairs = {(entry["arch"], entry["variant"]) for entry in paper.runs}
    assert pairs == {(arch, variant) for arch in list_models() for variant in VARIANTS}
    # A per-run safety stop keeps a stuck run from holding quick up.
    assert all(config.max_minutes for config in quick.configs(tmp_path, tmp_path))


@pytest.mark.parametrize("name", ["levers", "paper", "pretrain", "quick"])
def test_every_lever_row_has_its_papers_recipe_twin_at_the_same_budget(
    name: str, tmp_path: Path
) -> None:
    """A lever (another head, loss or the flip test; a backbone pretrained here) is
    measured beside the same model, data, budget and seeds trained the papers' way from
    scratch, so the paired tests compare the lever alone."""
    configs = load_preset(name).configs(tmp_path, tmp_path)
    pairs = [(config, config.weights_mode if config.pretrain else "scratch") for config in configs]
    names = [runs.config_run_name(config, mode) for config, mode in pairs]
    assert len(set(names)) == len(names), "two runs of a preset share a folder"
    budget = ("epochs", "batch_size", "lr", "patience", "seed", "max_train_rows")
    twins = {
        (config.arch, config.variant, *(getattr(config, key) for key in budget))
        for config, mode in pairs
        if not runs.config_recipe(config, mode) and config.weights is None
    }
    levers = [config for config, mode in pairs if runs.config_recipe(config, mode)]
    assert levers, f"{name} has no lever rows"
    for config in levers:
        key = (config.arch, config.variant, *(getattr(config, key) for key in budget))
        assert key in twins, f"{runs.config_run_name(config, 'scratch')} has no twin"


def test_smoke_preset_is_small(tmp_path: Path) -> None:
    """CI runs it before the tests (.ci/run): a few tiny runs, no untrained timing."""
    smoke = load_preset("smoke")
    configs = smoke.configs(tmp_path / "data", tmp_path / "runs")
    assert 1 <= len(configs) <= 3
    assert all(config.epochs <= 3 and config.max_train_rows <= 300 for config in configs)
    assert all(config.max_minutes and config.max_minutes <= 1.5 for config in configs)
    assert smoke.bench["time_untrained"] is False and smoke.bench["repeats"] <= 3
    ci_script = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "reproduce --preset smoke" in ci_script
    assert ci_script.index("reproduce --preset smoke") < ci_script.index("uv run pytest")


def test_configs_take_defaults_then_the_run_entry_then_overrides(tmp_path: Path) -> None:
    preset = load_preset(
        _write(
            tmp_path / "layers.json",
            {
                "name": "layers",
                "defaults": {"epochs": 3, "batch_size": 16, "lr": 0.01},
                "runs": [
                    {"arch": "cnn-manual", "variants": ["none", "aug"], "epochs": 7},
                    {"arch": "ae-cnn", "variant": "masked", "note": "free text, dropped"},
                ],
            },
        )
    )
    assert [(entry["arch"], entry["variant"]) for entry in preset.runs] == [
        ("cnn-manual", "none"),
        ("cnn-manual", "aug"),
        ("ae-cnn", "masked"),
    ]
    configs = preset.configs("d", "r", batch_size=4, quiet=True)
    assert [(c.epochs, c.batch_size, c.lr, c.quiet) for c in configs] == [
        (7, 4, 0.01, True),
        (7, 4, 0.01, True),
        (3, 4, 0.01, True),
    ]
    # Strings become paths, as from the command line.
    assert configs[0].data_dir == Path("d") and configs[0].runs_dir == Path("r")
    # Fields neither the preset nor the caller sets keep TrainConfig's defaults.
    assert configs[2].seed == TrainConfig().seed


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"runs": [{"arch": "cnn-manual", "variant": "none", "epoch": 1}]}, "'epoch'"),
        ({"runs": [{"arch": "nope", "variant": "none"}]}, "unknown arch 'nope'"),
        ({"runs": [{"arch": "cnn-manual", "variant": "nope"}]}, "unknown variant 'nope'"),
        (
            {"runs": [{"arch": "cnn-manual", "variant": "none", "variants": ["aug"]}]},
            "both 'variant' and 'variants'",
        ),
        # The caller decides where data and runs live, never the preset.
        ({"runs": [{"arch": "cnn-manual", "variant": "none", "runs_dir": "x"}]}, "'runs_dir'"),
        ({"runs": []}, "lists no runs"),
        ({"runs": {}}, "a 'runs' list"),
        ({"runs": [{"arch": "cnn-manual", "variant": "none"}], "extra": 1}, "'extra'"),
        (
            {"runs": [{"arch": "cnn-manual", "variant": "none"}], "bench": {"nope": 1}},
            "'bench' is an object",
        ),
    ],
)
def test_bad_presets_name_the_file(tmp_path: Path, document: dict, message: str) -> None:
    bad = _write(tmp_path / "bad.json", document)
    with pytest.raises(PresetError, match=f"{bad}.*{message}") as caught:
        load_preset(bad)
    assert "\n" not in str(caught.value)


def test_unknown_and_missing_presets(tmp_path: Path) -> None:
    known = "known: levers, paper, pretrain, quick"
    with pytest.raises(PresetError, match=f"unknown preset 'nope'; {known}"):
        load_preset("nope")
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset(tmp_path / "absent.json")
    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    with pytest.raises(PresetError, match=str(not_json)):
        load_preset(not_json)


def test_bench_settings_are_kept(tmp_path: Path) -> None:
    preset = load_preset(
        _write(
            tmp_path / "b.json",
            {
                "runs": [{"arch": "cnn-manual", "variant": "none"}],
                "bench": {"repeats": 2, "time_untrained": False},
            },
        )
    )
    assert preset.bench == {"repeats": 2, "time_untrained": False}
    assert preset.name == "b"  # named after its file when it names no other


def test_seeds_expand_every_run_into_named_seeds(tmp_path: Path) -> None:
    document = {
        "name": "s",
        "seeds": 3,
        "defaults": {"seed": 5},
        "runs": [{"arch": "cnn-manual", "variant": "none"}],
    }
    preset = load_preset(_write(tmp_path / "s.json", document))
    assert preset.seeds == 3 and preset.run_count() == 3 and preset.run_count(2) == 2
    configs = preset.configs(tmp_path, tmp_path)
    assert [(config.seed, config.seed_in_name) for config in configs] == [
        (5, True),
        (6, True),
        (7, True),
    ]
    # One seed (the default) keeps the plain run name.
    single = preset.configs(tmp_path, tmp_path, seeds=1)
    assert [(config.seed, config.seed_in_name) for config in single] == [(5, False)]
    assert load_preset("smoke").seeds == 1


@pytest.mark.parametrize("seeds", [0, -1, 1.5, True, "2"])
def test_bad_seeds_name_the_preset(tmp_path: Path, seeds: object) -> None:
    path = _write(
        tmp_path / "bad.json", {"seeds": seeds, "runs": [{"arch": "cnn-manual", "variant": "none"}]}
    )
    with pytest.raises(PresetError, match=r"bad\.json: 'seeds' must be an integer >= 1"):
        load_preset(path)


def test_seed_in_name_is_not_a_preset_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.json",
        {"runs": [{"arch": "cnn-manual", "variant": "none", "seed_in_name": True}]},
    )
    with pytest.raises(PresetError, match="unknown keys"):
        load_preset(path)
