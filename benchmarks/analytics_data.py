"""A month of web-analytics hits, generated: the data of ``benchmarks/analytics.py``.

The shape follows the public web-analytics benchmark tables (one row per
page view, 105 columns): integer flags and ids, strings with realistic
cardinalities (about 100k URLs, 40k titles, 20k search phrases, 400 user
agents, a few hundred phone models), timestamps and dates.  Users, URLs and
phrases are skewed (a few are very common).  Rows arrive roughly in time
order, batch by batch, but shuffled within a batch, and a share of them is
late: stamped up to the whole month earlier, as a backfill or a mobile
client that was offline sends them.

Generation is vectorised (numpy, and Arrow ``take`` from vocabularies), so a
250k-row batch takes a fraction of a second; every batch is a pure function
of its seed and index, so Petrel and DuckDB get the very same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

START = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
DAYS = 31
_START_US = int(START.timestamp() * 1_000_000)
_MONTH_US = DAYS * 86_400_000_000
LATE_SHARE = 0.05  # of every batch: stamped up to a month before the batch's own span


def _skewed(rng: np.random.Generator, size: int, cardinality: int, shape: float = 1.1) -> np.ndarray:
    """Indices in [0, cardinality), heavy at the low end (a Zipf-like skew)."""
    return np.minimum((rng.pareto(shape, size) * cardinality / 50).astype(np.int64), cardinality - 1)


@dataclass(frozen=True)
class Vocabulary:
    """The strings the hits draw from, built once per seed."""

    seed: int = 0

    @cached_property
    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed + 7919)

    @cached_property
    def sites(self) -> list[str]:
        names = ["google", "yandex", "example", "news", "shop", "video", "maps", "mail", "travel", "sport",
                 "auto", "music", "weather", "market", "games", "docs", "photos", "jobs", "health", "finance"]
        return [f"{name}{i}.{tld}" for i in range(30) for name in names for tld in ("com", "ru", "org")][:1500]

    @cached_property
    def urls(self) -> pa.Array:
        rng = self._rng
        sections = ["news", "item", "search", "catalog", "article", "video", "user", "cart", "help", "tag"]
        sites = self.sites
        values = [
            f"https://{sites[s]}/{sections[c]}/{n}?ref={r}" if r % 3 == 0 else f"http://{sites[s]}/{sections[c]}/{n}"
            for s, c, n, r in zip(rng.integers(0, len(sites), 100_000), rng.integers(0, 10, 100_000),
                                  rng.integers(0, 10_000_000, 100_000), rng.integers(0, 1000, 100_000))
        ]
        return pa.array([""] + values)

    @cached_property
    def titles(self) -> pa.Array:
        rng = self._rng
        words = ["Google", "News", "Weather", "Buy", "Cheap", "Flights", "Moscow", "London", "Football", "Recipes",
                 "Cars", "Video", "Music", "Online", "Free", "Best", "Review", "Price", "Photo", "Maps", "Yandex",
                 "Hotels", "Jobs", "Games", "Movies", "Shop", "Sale", "Travel", "Health", "Bank"]
        picks = rng.integers(0, len(words), (40_000, 4))
        return pa.array([""] + [" ".join(words[w] for w in row) + f" - page {i % 97}" for i, row in enumerate(picks)])

    @cached_property
    def phrases(self) -> pa.Array:
        rng = self._rng
        words = ["how", "to", "buy", "cheap", "car", "weather", "in", "moscow", "google", "maps", "news", "today",
                 "football", "score", "recipe", "cake", "flight", "london", "hotel", "price", "phone", "review",
                 "best", "laptop", "movie", "online", "free", "music", "download", "translate"]
        lengths = rng.integers(1, 5, 20_000)
        picks = rng.integers(0, len(words), (20_000, 4))
        return pa.array([""] + [" ".join(words[w] for w in row[:n]) + (f" {i}" if i % 4 == 0 else "")
                                for i, (row, n) in enumerate(zip(picks, lengths))])

    @cached_property
    def user_agents(self) -> pa.Array:
        rng = self._rng
        systems = ["Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "X11; Linux x86_64",
                   "iPhone; CPU iPhone OS 17_1 like Mac OS X", "Linux; Android 14; Pixel 8", "Windows NT 6.1"]
        browsers = ["Chrome/{v}.0.0.0 Safari/537.36", "Firefox/{v}.0", "Version/17.1 Safari/605.1.15",
                    "YaBrowser/{v}.1.0.0 Safari/537.36", "Edg/{v}.0.0.0"]
        return pa.array([
            f"Mozilla/5.0 ({systems[s]}) AppleWebKit/537.36 (KHTML, like Gecko) {browsers[b].format(v=v)}"
            for s, b, v in zip(rng.integers(0, len(systems), 400), rng.integers(0, len(browsers), 400),
                               rng.integers(90, 130, 400))
        ])

    @cached_property
    def phone_models(self) -> pa.Array:
        brands = ["iPhone", "Galaxy S", "Pixel", "Redmi Note", "Xperia", "Moto G", "Nokia", "OnePlus"]
        return pa.array([""] + [f"{b} {n}" for b in brands for n in range(40)])

    @cached_property
    def small(self) -> dict[str, pa.Array]:
        """Low-cardinality string columns."""
        return {
            "BrowserLanguage": pa.array(["ru", "en", "de", "fr", "es", "tr", "uk", "zh", "it", "pt"]),
            "BrowserCountry": pa.array(["RU", "US", "DE", "FR", "ES", "TR", "UA", "CN", "IT", "BR", "GB", "KZ"]),
            "SocialNetwork": pa.array(["", "", "", "vk", "facebook", "twitter", "ok", "telegram"]),
            "SocialAction": pa.array(["", "", "", "like", "share", "comment"]),
            "SocialSourcePage": pa.array(["", "", "/feed", "/groups/1", "/post/42", "/messages"]),
            "PageCharset": pa.array(["utf-8", "utf-8", "utf-8", "windows-1251", "koi8-r"]),
            "HitColor": pa.array(["E", "F", "D", "T"]),
            "FlashMinor2": pa.array(["", "0", "1", "2", "147"]),
            "UserAgentMinor": pa.array(["", "0", "1", "2", "5", "6", "a", "b"]),
            "Params": pa.array(["", "", "", "foo=1", "bar=2&baz=3", "utm=1"]),
            "ParamOrderID": pa.array(["", "", "", "", "A-100", "B-200", "C-300"]),
            "ParamCurrency": pa.array(["", "RUB", "USD", "EUR"]),
            "OpenstatServiceName": pa.array(["", "", "", "direct", "adwords", "begun"]),
            "OpenstatCampaignID": pa.array(["", "", "c1", "c2", "c3"]),
            "OpenstatAdID": pa.array(["", "", "ad1", "ad2", "ad3", "ad4"]),
            "OpenstatSourceID": pa.array(["", "", "s1", "s2"]),
            "UTMSource": pa.array(["", "", "", "google", "yandex", "newsletter", "facebook"]),
            "UTMMedium": pa.array(["", "", "", "cpc", "email", "social", "organic"]),
            "UTMCampaign": pa.array(["", "", "", "spring", "summer", "black-friday", "brand"]),
            "UTMContent": pa.array(["", "", "", "banner", "text", "video"]),
            "UTMTerm": pa.array(["", "", "", "shoes", "phones", "laptops"]),
            "FromTag": pa.array(["", "", "", "top", "side", "footer"]),
        }


def hits_batch(index: int, rows: int, total: int, vocabulary: Vocabulary, seed: int = 0) -> pa.Table:
    """Batch ``index`` of rows ``rows`` of a month of ``total`` hits (the batches follow time, loosely)."""
    rng = np.random.default_rng([seed, index])
    vocab = vocabulary
    first = index * rows
    # in time order across batches: this batch's span of the month, then shuffled and part of it late
    span_lo = _START_US + _MONTH_US * first // max(total, 1)
    span_hi = _START_US + _MONTH_US * min(first + rows, total) // max(total, 1)
    times = rng.integers(span_lo, max(span_hi, span_lo + 1), rows)
    late = rng.random(rows) < LATE_SHARE
    times[late] = rng.integers(_START_US, max(span_lo, _START_US + 1), int(late.sum()))
    times = np.minimum(times, _START_US + _MONTH_US - 1)
    event_time = pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    days = (times // 86_400_000_000).astype(np.int32)

    def ints(low: int, high: int, type_: pa.DataType = pa.int16()) -> pa.Array:
        return pa.array(rng.integers(low, high, rows), pa.int64()).cast(type_)

    def flag(share: float) -> pa.Array:
        return pa.array((rng.random(rows) < share).astype(np.int16), pa.int16())

    def pick(values: pa.Array, share_empty: float = 0.0, skew: bool = True) -> pa.Array:
        size = len(values) - (1 if share_empty else 0)
        chosen = _skewed(rng, rows, size) if skew else rng.integers(0, size, rows)
        if share_empty:
            chosen = np.where(rng.random(rows) < share_empty, 0, chosen + 1)
        return values.take(pa.array(chosen))

    users = _skewed(rng, rows, max(1000, total // 10), 0.9)
    user_id = pa.array(users * 7_919_003 + 1_000_003, pa.int64())
    counter = pa.array(np.where(rng.random(rows) < 0.3, 62, _skewed(rng, rows, 200)), pa.int32())
    url = pick(vocab.urls, share_empty=0.01)
    phrase = pick(vocab.phrases, share_empty=0.8)
    width = ints(800, 2561)
    columns: dict[str, pa.Array] = {
        "WatchID": pa.array(rng.integers(1 << 40, 1 << 62, rows), pa.int64()),
        "JavaEnable": flag(0.3),
        "Title": pick(vocab.titles, share_empty=0.05),
        "GoodEvent": flag(0.99),
        "EventTime": event_time,
        "EventDate": pa.array(days, pa.int32()).cast(pa.date32()),
        "CounterID": counter,
        "ClientIP": pa.array(rng.integers(-(1 << 31), 1 << 31, rows), pa.int32()),
        "RegionID": pa.array(_skewed(rng, rows, 3000), pa.int32()),
        "UserID": user_id,
        "CounterClass": ints(0, 3),
        "OS": ints(0, 90),
        "UserAgent": ints(0, 60),
        "URL": url,
        "Referer": pick(vocab.urls, share_empty=0.4),
        "IsRefresh": flag(0.1),
        "RefererCategoryID": ints(0, 20),
        "RefererRegionID": pa.array(_skewed(rng, rows, 3000), pa.int32()),
        "URLCategoryID": ints(0, 20),
        "URLRegionID": pa.array(_skewed(rng, rows, 3000), pa.int32()),
        "ResolutionWidth": width,
        "ResolutionHeight": ints(600, 1441),
        "ResolutionDepth": ints(16, 33),
        "FlashMajor": ints(0, 12),
        "FlashMinor": ints(0, 10),
        "FlashMinor2": pick(vocab.small["FlashMinor2"], skew=False),
        "NetMajor": ints(0, 5),
        "NetMinor": ints(0, 10),
        "UserAgentMajor": ints(0, 130),
        "UserAgentMinor": pick(vocab.small["UserAgentMinor"], skew=False),
        "CookieEnable": flag(0.95),
        "JavascriptEnable": flag(0.97),
        "IsMobile": flag(0.35),
        "MobilePhone": ints(0, 50),
        "MobilePhoneModel": pick(vocab.phone_models, share_empty=0.65),
        "Params": pick(vocab.small["Params"], skew=False),
        "IPNetworkID": pa.array(rng.integers(0, 1 << 20, rows), pa.int32()),
        "TraficSourceID": ints(-1, 10),
        "SearchEngineID": pa.array(np.where(pc.not_equal(phrase, "").to_numpy(zero_copy_only=False)
                                            & (rng.random(rows) < 0.9),
                                            rng.integers(1, 20, rows), 0), pa.int16()),
        "SearchPhrase": phrase,
        "AdvEngineID": pa.array(np.where(rng.random(rows) < 0.03, rng.integers(1, 30, rows), 0), pa.int16()),
        "IsArtifical": flag(0.01),
        "WindowClientWidth": pa.array(np.maximum(width.to_numpy() - rng.integers(0, 300, rows), 0), pa.int16()),
        "WindowClientHeight": ints(400, 1300),
        "ClientTimeZone": ints(-12, 15),
        "ClientEventTime": pa.array(times + rng.integers(-5_000_000, 5_000_000, rows), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "SilverlightVersion1": ints(0, 6),
        "SilverlightVersion2": ints(0, 10),
        "SilverlightVersion3": pa.array(rng.integers(0, 100_000, rows), pa.int32()),
        "SilverlightVersion4": ints(0, 10_000),
        "PageCharset": pick(vocab.small["PageCharset"], skew=False),
        "CodeVersion": pa.array(rng.integers(0, 1000, rows), pa.int32()),
        "IsLink": flag(0.05),
        "IsDownload": flag(0.02),
        "IsNotBounce": flag(0.6),
        "FUniqID": pa.array(users * 31 + rng.integers(0, 3, rows), pa.int64()),
        "OriginalURL": pick(vocab.urls, share_empty=0.7),
        "HID": pa.array(rng.integers(0, 1 << 31, rows), pa.int32()),
        "IsOldCounter": flag(0.1),
        "IsEvent": flag(0.05),
        "IsParameter": flag(0.05),
        "DontCountHits": flag(0.05),
        "WithHash": flag(0.1),
        "HitColor": pick(vocab.small["HitColor"], skew=False),
        "LocalEventTime": pa.array(times + rng.integers(-12, 15, rows) * 3_600_000_000, pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "Age": ints(0, 90),
        "Sex": ints(0, 3),
        "Income": ints(0, 5),
        "Interests": ints(0, 2000),
        "Robotness": ints(0, 5),
        "RemoteIP": pa.array(rng.integers(-(1 << 31), 1 << 31, rows), pa.int32()),
        "WindowName": pa.array(rng.integers(-1, 100_000, rows), pa.int32()),
        "OpenerName": pa.array(rng.integers(-1, 100_000, rows), pa.int32()),
        "HistoryLength": ints(0, 50),
        "BrowserLanguage": pick(vocab.small["BrowserLanguage"]),
        "BrowserCountry": pick(vocab.small["BrowserCountry"]),
        "SocialNetwork": pick(vocab.small["SocialNetwork"], skew=False),
        "SocialAction": pick(vocab.small["SocialAction"], skew=False),
        "HTTPError": pa.array(np.where(rng.random(rows) < 0.02, rng.choice([404, 500, 503], rows), 0), pa.int16()),
        "SendTiming": pa.array(rng.integers(0, 5000, rows), pa.int32()),
        "DNSTiming": pa.array(rng.integers(0, 500, rows), pa.int32()),
        "ConnectTiming": pa.array(rng.integers(0, 1000, rows), pa.int32()),
        "ResponseStartTiming": pa.array(rng.integers(0, 3000, rows), pa.int32()),
        "ResponseEndTiming": pa.array(rng.integers(0, 6000, rows), pa.int32()),
        "FetchTiming": pa.array(rng.integers(0, 8000, rows), pa.int32()),
        "SocialSourceNetworkID": ints(0, 10),
        "SocialSourcePage": pick(vocab.small["SocialSourcePage"], skew=False),
        "ParamPrice": pa.array(np.where(rng.random(rows) < 0.05, rng.integers(100, 1_000_000, rows), 0), pa.int64()),
        "ParamOrderID": pick(vocab.small["ParamOrderID"], skew=False),
        "ParamCurrency": pick(vocab.small["ParamCurrency"], skew=False),
        "ParamCurrencyID": ints(0, 4),
        "OpenstatServiceName": pick(vocab.small["OpenstatServiceName"], skew=False),
        "OpenstatCampaignID": pick(vocab.small["OpenstatCampaignID"], skew=False),
        "OpenstatAdID": pick(vocab.small["OpenstatAdID"], skew=False),
        "OpenstatSourceID": pick(vocab.small["OpenstatSourceID"], skew=False),
        "UTMSource": pick(vocab.small["UTMSource"], skew=False),
        "UTMMedium": pick(vocab.small["UTMMedium"], skew=False),
        "UTMCampaign": pick(vocab.small["UTMCampaign"], skew=False),
        "UTMContent": pick(vocab.small["UTMContent"], skew=False),
        "UTMTerm": pick(vocab.small["UTMTerm"], skew=False),
        "FromTag": pick(vocab.small["FromTag"], skew=False),
        "HasGCLID": flag(0.02),
        "RefererHash": pa.array(rng.integers(-(1 << 62), 1 << 62, rows), pa.int64()),
        "URLHash": pa.array(rng.integers(-(1 << 62), 1 << 62, rows), pa.int64()),
        "CLID": pa.array(np.where(rng.random(rows) < 0.1, rng.integers(1, 1000, rows), 0), pa.int32()),
        "UserAgentString": pick(vocab.user_agents),
    }
    return pa.table(columns)  # out of order already: every time is drawn at random within the batch's span
