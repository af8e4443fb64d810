"""Real univariate series shipped inside installed packages (statsforecast, statsmodels, sktime): no download.

Every loader returns a Nixtla long frame (unique_id, ds, y) sorted by ds, with datetime ds on a regular grid
of the series' pandas freq (period starts, except AirPassengers, which statsforecast ships at month ends).
`PANEL` gives each panel series' freq, season length and a forecast horizon (12 for monthly, 8 for quarterly,
10 for yearly series unless its description says otherwise).

Shipped but left out: sktime's PBS_dataset (intermittent counts 0..14, where sMAPE and multiplicative Naive2
break down), its solar series (the loader first tries a web API), longley (16 values), and statsmodels' cross-
sectional sets. statsmodels 0.15 ships elec_equip as statsmodels.datasets.elec_equip (not in sm.datasets).
"""

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from rnnzoo.errors import DataError, UnknownNameError


@dataclass(frozen=True)
class SeriesInfo:
    freq: str  # pandas offset alias of the ds grid
    season_length: int  # m: observations per seasonal cycle (1 = no calendar seasonality)
    h: int  # suggested forecast horizon
    description: str


def _frame(name: str, ds, y) -> pd.DataFrame:
    df = pd.DataFrame({"unique_id": name, "ds": pd.DatetimeIndex(ds), "y": pd.Series(y).to_numpy(float)})
    return df.sort_values("ds", ignore_index=True)


def _years(values) -> pd.DatetimeIndex:
    return pd.to_datetime(pd.Series(values).astype(int).astype(str), format="%Y")


def _statsmodels(name: str) -> pd.DataFrame:
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' own pandas deprecation notes
        return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _sktime_csv(folder: str) -> pd.DataFrame:
    """A csv sktime ships under sktime/datasets/data/ without a loader function of its own."""
    path = resources.files("sktime.datasets") / "data" / folder / f"{folder}.csv"
    if not path.is_file():
        raise DataError(f"sktime's shipped file data/{folder}/{folder}.csv is missing in this sktime version; "
                        f"drop {folder!r} from the names you load")
    return pd.read_csv(path, index_col=0)


def air_passengers() -> pd.DataFrame:
    """Box & Jenkins monthly airline passengers 1949-1960 (thousands), as statsforecast ships it (month ends)."""
    from statsforecast.utils import AirPassengersDF

    return _frame("AirPassengers", AirPassengersDF["ds"], AirPassengersDF["y"])


AIR_PASSENGERS = SeriesInfo("ME", 12, 12, "statsforecast AirPassengersDF, monthly 1949-1960, month-end ds")


def _sunspots() -> pd.DataFrame:
    d = _statsmodels("sunspots")
    return _frame("sunspots", _years(d["YEAR"]), d["SUNACTIVITY"])


def _co2() -> pd.DataFrame:
    d = _statsmodels("co2")["co2"]  # weekly (W-SAT) 1958-2001 with missing weeks
    monthly = d.resample("MS").mean()  # months with no observed week come out NaN
    return _frame("co2", monthly.index, monthly.interpolate(method="time"))


def _nile() -> pd.DataFrame:
    d = _statsmodels("nile")
    return _frame("nile", _years(d["year"]), d["volume"])


def _elec_equip() -> pd.DataFrame:
    d = _statsmodels("elec_equip")
    return _frame("elec_equip", d.index, d.iloc[:, 0])


def _elnino() -> pd.DataFrame:
    d = _statsmodels("elnino").set_index("YEAR")  # one row per year, one column per month
    long = d.stack()  # (year, month name) -> temperature, in calendar order
    ds = pd.to_datetime([f"{int(yr)}-{mon}-01" for yr, mon in long.index], format="%Y-%b-%d")
    return _frame("elnino", ds, long.to_numpy())


def _realgdp() -> pd.DataFrame:
    d = _statsmodels("macrodata")
    ds = pd.PeriodIndex.from_fields(year=d["year"].astype(int), quarter=d["quarter"].astype(int), freq="Q")
    return _frame("realgdp", ds.to_timestamp(), d["realgdp"])


def _sktime(loader: str, name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import sktime.datasets

        y = getattr(sktime.datasets, loader)()  # a Series on a PeriodIndex
        return _frame(name, y.index.to_timestamp(), y)

    return load


def _uschange() -> pd.DataFrame:
    # sktime's load_uschange drops the dates; the shipped csv keeps them as "1970 Q1"
    d = _sktime_csv("Uschange")
    ds = pd.PeriodIndex(d["Quarter"].str.replace(" ", ""), freq="Q").to_timestamp()
    return _frame("uschange_consumption", ds, d["Consumption"])


def _seatbelts() -> pd.DataFrame:
    d = _sktime_csv("seatbelts")
    return _frame("seatbelts_ksi", pd.to_datetime(d.index), d["KSI"])


PANEL: dict[str, SeriesInfo] = {
    "airline": SeriesInfo("MS", 12, 12, "sktime load_airline: monthly airline passengers 1949-1960"),
    "co2": SeriesInfo("MS", 12, 12, "statsmodels co2: Mauna Loa CO2 ppm, weekly 1958-2001 resampled to monthly "
                                   "means; the 5 months with no observed week are filled by time interpolation"),
    "elec_equip": SeriesInfo("MS", 12, 12, "statsmodels elec_equip: euro-area electrical equipment orders index, "
                                           "monthly 1995-2016"),
    "elnino": SeriesInfo("MS", 12, 12, "statsmodels elnino: monthly sea surface temperature 1950-2010"),
    "seatbelts_ksi": SeriesInfo("MS", 12, 12, "sktime's shipped seatbelts.csv: UK drivers killed or seriously "
                                              "injured, monthly 1969-1984"),
    "shampoo_sales": SeriesInfo("MS", 12, 6, "sktime load_shampoo_sales: monthly 1991-1993; only 36 values, "
                                             "so a 6-month horizon"),
    "realgdp": SeriesInfo("QS", 4, 8, "statsmodels macrodata: US real GDP, quarterly 1959-2009"),
    "uschange_consumption": SeriesInfo("QS", 4, 8, "sktime's shipped Uschange.csv: US consumption % change, "
                                                   "quarterly 1970-2016"),
    "lynx": SeriesInfo("YS", 1, 10, "sktime load_lynx: Canadian lynx trappings, yearly 1821-1934 (a ~10-year "
                                    "cycle, not a calendar season)"),
    "nile": SeriesInfo("YS", 1, 10, "statsmodels nile: Nile river flow, yearly 1871-1970"),
    "sunspots": SeriesInfo("YS", 1, 10, "statsmodels sunspots: yearly sunspot activity 1700-2008 (an ~11-year "
                                        "cycle, not a calendar season)"),
}

_LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "airline": _sktime("load_airline", "airline"),
    "co2": _co2,
    "elec_equip": _elec_equip,
    "elnino": _elnino,
    "seatbelts_ksi": _seatbelts,
    "shampoo_sales": _sktime("load_shampoo_sales", "shampoo_sales"),
    "realgdp": _realgdp,
    "uschange_consumption": _uschange,
    "lynx": _sktime("load_lynx", "lynx"),
    "nile": _nile,
    "sunspots": _sunspots,
}


def load_series(name: str) -> pd.DataFrame:
    """One panel series as a long frame with unique_id = name; see PANEL[name] for its freq and season."""
    if name not in _LOADERS:
        raise UnknownNameError(f"unknown series {name!r}; choose from {sorted(_LOADERS)}")
    return _LOADERS[name]()


def panel(names: Sequence[str] | None = None) -> pd.DataFrame:
    """The named series (default: all of PANEL) stacked in one long frame, sorted by unique_id and ds.

    The series have different freqs, so fit models per freq group (or per series) with PANEL[name].freq.
    """
    names = list(PANEL) if names is None else [names] if isinstance(names, str) else list(names)
    if not names:
        raise DataError(f"panel needs at least one series name; choose from {sorted(_LOADERS)}")
    return pd.concat([load_series(n) for n in names], ignore_index=True).sort_values(
        ["unique_id", "ds"], ignore_index=True)
