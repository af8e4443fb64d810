"""UCR/UEA classification data sets that ship inside sktime (read from its package folder; no download).

    X, y = load_ucr("GunPoint", split="train")   # X (N, T) float64, y (N,) str
    X, y = load_ucr("BasicMotions")              # multivariate: X (N, T, C)
    X, y = load_ucr("JapaneseVowels")            # unequal lengths: X is a list of (T_i, C) arrays

Layout is time first, (N, T, C), as rnnzoo's mixers read it (sktime's numpy3D is (N, C, T)). Univariate sets
come back as (N, T); unequal-length sets as a list. Labels are the archive's class strings ("1", "2", ...).
Source: the UCR archive (Dau et al. 2019) and the UEA multivariate archive (Bagnall et al. 2018).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnzoo.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class UCRInfo:
    loader: str         # name of the sktime.datasets function
    channels: int
    equal_length: bool


UCR_INFO = {
    "ItalyPowerDemand": UCRInfo("load_italy_power_demand", 1, True),
    "GunPoint": UCRInfo("load_gunpoint", 1, True),
    "ArrowHead": UCRInfo("load_arrow_head", 1, True),
    "OSULeaf": UCRInfo("load_osuleaf", 1, True),
    "ACSF1": UCRInfo("load_acsf1", 1, True),
    "PLAID": UCRInfo("load_plaid", 1, False),
    "BasicMotions": UCRInfo("load_basic_motions", 6, True),
    "JapaneseVowels": UCRInfo("load_japanese_vowels", 12, False),
}
UCR_DATASETS = tuple(UCR_INFO)


def load_ucr(name: str, split: str = "train") -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """(X, y) of one split of a shipped data set: X (N, T) univariate, (N, T, C) multivariate, or a list of
    (T_i,) / (T_i, C) float64 arrays when lengths differ; y (N,) str."""
    if not isinstance(name, str) or name not in UCR_INFO:
        raise UnknownNameError(f"unknown UCR/UEA data set {name!r}; shipped with sktime: {', '.join(UCR_DATASETS)}")
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    info = UCR_INFO[name]
    try:
        from sktime import datasets  # imported here: sktime takes a second to import
    except ImportError:
        raise ConfigError("load_ucr reads the data sets shipped with sktime, which is not installed; "
                          "install the extra: pip install 'rnnzoo[forecast]'") from None

    load = getattr(datasets, info.loader)
    if info.equal_length:
        X, y = load(split=split, return_X_y=True, return_type="numpy3D")  # (N, C, T)
        X = np.ascontiguousarray(X.transpose(0, 2, 1), dtype=np.float64)  # (N, T, C)
        out = X[:, :, 0] if info.channels == 1 else X
    else:
        frames, y = load(split=split, return_X_y=True, return_type="df-list")  # each (T_i, C)
        out = [f.to_numpy(dtype=np.float64) for f in frames]
        if info.channels == 1:
            out = [s[:, 0] for s in out]
    return out, np.asarray(y).astype(str)
