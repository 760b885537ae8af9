"""Config validation, variant defaults and YAML round trip."""

from __future__ import annotations

import pytest

from n2v_cascade.config import TrainConfig, config_yaml, load_config, make_config, update_config
from n2v_cascade.errors import InputError


def test_defaults_are_the_paper_optimiser_on_the_fast_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.patch_size) == (30, 8, 1e-3, 64)
    assert cfg.network.growth == 1.0 and cfg.precision == "auto"
    assert cfg.network.depth == 3 and cfg.mask.fraction == pytest.approx(0.002)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"variant": "n3v"}, "variant"),
        ({"patch_size": 100}, "patch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"mask": {"struct": "diagonal:3"}}, "mask"),
        ({"mask": {"fraction": 2.0}}, "mask.fraction"),
        ({"unknown_option": 1}, "unknown_option"),
        ({"variant": "n2v", "backbone": "blindspot"}, "backbone"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        make_config("opts", **values)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("opts")
    assert field.split(".")[0] in msg


def test_variant_defaults_are_explicit() -> None:
    assert make_config(variant="structured").mask.pattern == "grid"
    assert make_config(variant="structured", mask={"pattern": "random"}).mask.pattern == "random"
    assert make_config(variant="n2v2").mask.replacement == "median"
    assert make_config(variant="n2v2").learning_rate == 3e-4  # 1e-3 drifted on FMD
    assert make_config(variant="n2v2", learning_rate=1e-3).learning_rate == 1e-3
    assert make_config(variant="n2v").learning_rate == 1e-3
    assert make_config(variant="blindspot").network.ring_residual is True
    assert make_config(variant="blindspot").network.blind_radius == "auto"
    assert make_config(variant="probabilistic").network.ring_residual is False


def test_yaml_round_trip_and_update(tmp_path) -> None:
    cfg = make_config(variant="probabilistic", backbone="blindspot", patch_size=64,
                      network={"width": 8}, mask={"struct": "horizontal:5"})
    path = tmp_path / "cfg.yaml"
    path.write_text(config_yaml(cfg))
    assert load_config(path) == cfg
    changed = update_config(cfg, network={"depth": 2})
    assert changed.network.width == 8 and changed.network.depth == 2
    assert update_config(make_config(), variant="structured").mask.pattern == "grid"
    assert update_config(make_config(), variant="n2v2").mask.replacement == "median"
    assert update_config(make_config(), variant="n2v2").learning_rate == 3e-4


def test_bad_yaml_files(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(bad)
    bad.write_text("epochs: zero\n")
    with pytest.raises(InputError, match="epochs"):
        load_config(bad)
