"""TOML configs: shipped configs validate, errors name file/key/expectation, --set overrides."""

from pathlib import Path

import pytest

from mri_csc.config import ConfigError, apply_overrides, load_config, parse_value, to_toml, tomllib, validate_config

CONFIGS = sorted((Path(__file__).parents[1] / "recon_configs").glob("*.toml"))


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"quick_shepp_logan.toml", "brain_poisson_r4.toml", "brain_poisson_r8.toml", "brain_1d_r4.toml",
            "phase_heavy.toml", "bart_comparison.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_valid(path):
    cfg = load_config(path, methods=False)
    assert cfg["methods"] and cfg["output"]["dir"]
    again = validate_config(tomllib.loads(to_toml(cfg)), src=path)  # the resolved TOML re-loads to the same
    assert again == cfg


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


BASE = '[[methods]]\nname = "zero-filled"\n'


def test_unknown_key(tmp_path):
    p = write(tmp_path, BASE + "[mask]\nacel = 4\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key mask\.acel; expected one of"):
        load_config(p)
    p = write(tmp_path, "bogus = 1\n" + BASE)
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key 'bogus'"):
        load_config(p)


def test_wrong_type(tmp_path):
    p = write(tmp_path, BASE + '[mask]\naccel = "four"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: mask\.accel: expected a number >= 1; got 'four'"):
        load_config(p)
    p = write(tmp_path, BASE + "[data]\nshape = [64]\n")
    with pytest.raises(ConfigError, match=r"data\.shape: expected a list of 2"):
        load_config(p)
    p = write(tmp_path, BASE + "[noise]\nsnr_db = -300\n")
    with pytest.raises(ConfigError, match=r"noise\.snr_db: expected a number of dB from -20 to 200"):
        load_config(p)
    for section, key, value in (("mask", "accel", "nan"), ("phase", "amplitude", "inf")):
        p = write(tmp_path, BASE + f"[{section}]\n{key} = {value}\n")  # named here, not later by the simulator
        with pytest.raises(ConfigError, match=rf"c\.toml: {section}\.{key}: expected .*; got {value}"):
            load_config(p)
    p = write(tmp_path, BASE + '[mask]\nkind = "spiral"\n')
    with pytest.raises(ConfigError, match=r"mask\.kind: expected one of \['poisson'"):
        load_config(p)


@pytest.mark.parametrize("toml, message", [
    ('[[methods]]\nname = "nope"\n', r"methods\[0\]\.name: unknown method 'nope'; registered methods"),
    ('[[methods]]\nname = "tv"\nparams = { lamda = 1 }\n', r"unknown parameter 'lamda' for method 'tv'"),
    ('[[methods]]\nname = "tv"\nparams = { lam = "big" }\n',
     r"methods\[0\]\.params: method 'tv': parameter lam = 'big' is invalid; expected a finite number >= 0"),
    ('[[methods]]\nname = "csc"\nparams = { lam = nan }\n', r"method 'csc': parameter lam = nan is invalid"),
    # against the simulated image's shape too, when the config is read (before simulation and ESPIRiT)
    ('[data]\nshape = [64, 64]\n[[methods]]\nname = "csc"\nparams = { phase_width = [16, 16, 16] }\n',
     r"methods\[0\]\.params: phase_width must be one width or one per image axis \(2\); got \[16, 16, 16\] "
     r"for the image shape \(64, 64\)"),
    ('[data]\nshape = [64, 64]\n[[methods]]\nname = "csc-tv"\nparams = { phase_width = 80 }\n',
     r"phase_width must be at most the image's side"),
])
def test_methods_checked_against_registry(tmp_path, toml, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, toml))


def test_a_per_axis_value_that_fits_the_image_is_kept(tmp_path):
    p = write(tmp_path, '[data]\nshape = [64, 64]\n[[methods]]\nname = "csc"\nparams = { phase_width = [16, 24] }\n')
    assert load_config(p)["methods"][0]["params"] == {"phase_width": [16, 24]}


def test_bad_toml_and_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        load_config(write(tmp_path, "[mask\n"))
    with pytest.raises(FileNotFoundError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_overrides(tmp_path):
    p = write(tmp_path, '[[methods]]\nname = "tv"\nlabel = "TV"\nparams = { lam = 0.01 }\n')
    cfg = load_config(p, ["mask.accel=8", "data.shape=[64, 64]", "methods.TV.params.max_iter=5",
                          "mask.kind=random-lines", "methods.0.params.lam=0.02"])
    assert cfg["mask"]["accel"] == 8.0 and cfg["data"]["shape"] == [64, 64]
    assert cfg["methods"][0]["params"] == {"lam": 0.02, "max_iter": 5}
    assert cfg["mask"]["kind"] == "random-lines"
    cfg = load_config(p, ['methods=[{name="zero-filled"},{name="sense"}]'])
    assert [m["name"] for m in cfg["methods"]] == ["zero-filled", "sense"]
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["mask.accel"])
    with pytest.raises(ConfigError, match="no entry named 'CSC'"):
        load_config(p, ["methods.CSC.params.lam=1"])
    with pytest.raises(ConfigError, match=r"unknown key mask\.bogus"):
        load_config(p, ["mask.bogus=1"])


def test_nifti_phantom_relative_to_config(tmp_path):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    cfg = load_config(write(tmp_path, BASE + '[data]\nphantom = "vol.nii.gz"\nslice = 1\n'))
    assert cfg["data"]["phantom"] == str((tmp_path / "vol.nii.gz").resolve())
    with pytest.raises(ConfigError, match=r"data\.phantom: expected an existing NIfTI file"):
        load_config(write(tmp_path, BASE + '[data]\nphantom = "gone.nii"\n'))


def test_dictionary_file_relative_to_config_as_the_phantom(tmp_path, monkeypatch):
    """A csc dictionary file in a config is found beside the config, whatever the working directory, and the
    resolved config (written into the run folder) names it absolutely; a missing one is named by its key."""
    import numpy as np

    from mri_csc.prior.dictionary import load_default_dictionary

    (tmp_path / "cfg").mkdir()
    np.savez(tmp_path / "d.npz", filters=load_default_dictionary()[:4, 2:-2, 2:-2])
    text = '[[methods]]\nname = "csc"\nparams = { dictionary = "../d.npz", max_iter = 3 }\n'
    monkeypatch.chdir(tmp_path)  # "../d.npz" from here would be the wrong file
    cfg = load_config(write(tmp_path / "cfg", text))
    assert cfg["methods"][0]["params"] == {"dictionary": str((tmp_path / "d.npz").resolve()), "max_iter": 3}
    assert load_config(write(tmp_path / "cfg", to_toml(cfg)))["methods"][0]["params"] == cfg["methods"][0]["params"]
    with pytest.raises(ConfigError, match=r"methods\[0\]\.params\.dictionary: expected an existing dictionary file"):
        load_config(write(tmp_path / "cfg", text.replace("../d.npz", "gone.npz")))


@pytest.mark.parametrize("text, value", [
    ("0.01", 0.01), ("3", 3), ("true", True), ("True", True), ("False", False), ("[96, 96]", [96, 96]),
    ("(96, 96)", (96, 96)), ("None", None), ('"a b"', "a b"), (" random-lines ", "random-lines"),
    ("{name=\"tv\"}", {"name": "tv"}),
])
def test_one_value_parser_for_set_and_param(text, value):
    """--set, `recon --param` and `batch --param` share parse_value: TOML, else a Python literal,
    else the text (batch used Python literals only, the others TOML only)."""
    from mri_csc.batch.cli import parse_params
    from mri_csc.cli import _parse_kv

    assert parse_value(text) == value
    assert _parse_kv([f"k={text}"], "--param") == {"k": value}
    assert parse_params([f"k={text}"]) == {"k": value}


def test_data_oversample_is_validated_and_used(tmp_path):
    """Configs simulate on a finer grid by default (no inverse crime); out-of-range values are refused."""
    from mri_csc.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "t"\n[data]\nshape = [32, 32]\n[[methods]]\nname = "sense"\n', encoding="utf-8")
    assert load_config(cfg, methods=False)["data"]["oversample"] == 2.0
    for bad in ("0.5", "8", '"two"', "true"):
        with pytest.raises(ConfigError, match="data.oversample"):
            load_config(cfg, [f"data.oversample={bad}"], methods=False)
    assert load_config(cfg, ["data.oversample=1"], methods=False)["data"]["oversample"] == 1.0
