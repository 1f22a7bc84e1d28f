"""SageMaker instance prices: the AWS Price List API when reachable, else a dated table.

Prices read from the API are cached on disk with the day they were read and
kept for :data:`CACHE_DAYS`; the table below is used only where neither
answers, and every figure says which source and date it comes from.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sm_imgclf.backends.cache_files import cache_path, read_json, write_json
from sm_imgclf.contracts.costs import Price

TABLE_SOURCE = "the library's table"
API_SOURCE = "AWS Price List API"
TABLE_DATE = "2026-12-01"
CACHE_DAYS = 30
# On-demand US dollars per instance-hour in us-east-1; SageMaker charges these
# types the same for training, hosting and batch transform there.
TABLE: dict[str, dict[str, float]] = {
    "us-east-1": {
        "ml.m5.large": 0.115,
        "ml.m5.xlarge": 0.23,
        "ml.m5.2xlarge": 0.461,
        "ml.m5.4xlarge": 0.922,
        "ml.c5.large": 0.102,
        "ml.c5.xlarge": 0.204,
        "ml.c5.2xlarge": 0.408,
        "ml.c5.4xlarge": 0.816,
        "ml.g4dn.xlarge": 0.736,
        "ml.g5.xlarge": 1.408,
        "ml.p3.2xlarge": 3.825,
        "ml.p3.8xlarge": 14.688,
        "ml.p3.16xlarge": 28.152,
    }
}
# The Price List API's name for each use ("platoinstancetype").
_USES = {"training": "Training", "hosting": "Hosting", "transform": "BatchTransform"}


def price_cache_path() -> Path:
    """Where prices read from the API are kept: ``$XDG_CACHE_HOME/sm-imgclf/prices.json``."""
    return cache_path("prices.json")


class PriceBook:
    """Looks up prices: cache, then the Price List API, then the table.

    Args:
        region: The region whose prices are wanted.
        pricing_client: Makes a boto3 ``pricing`` client (``None``: never ask the API).
        cache: The JSON file of prices read from the API (``None``: no cache).
        today: Today's date (for tests).
    """

    def __init__(
        self,
        region: str,
        pricing_client: Callable[[], Any] | None = None,
        cache: Path | None = None,
        today: dt.date | None = None,
    ) -> None:
        self.region, self._client, self.cache = region, pricing_client, cache
        self.today = today or dt.date.today()
        self.api_failure: str | None = None
        self._read: dict[str, Any] | None = None

    def price(self, instance_type: str, use: str) -> Price | None:
        """The price of ``instance_type`` for ``use``, or ``None`` if no source knows it."""
        key = f"{self.region}|{use}|{instance_type}"
        cached = self._cached().get(key)
        if cached and self._fresh(cached["as_of"]):
            return Price(
                instance_type, use, self.region, cached["usd"], API_SOURCE, cached["as_of"]
            )
        found = self._from_api(instance_type, use)
        if found is not None:
            self._remember(key, found)
            return found
        usd = TABLE.get(self.region, {}).get(instance_type)
        if usd is None:
            return None
        return Price(instance_type, use, self.region, usd, TABLE_SOURCE, TABLE_DATE)

    def _from_api(self, instance_type: str, use: str) -> Price | None:
        if self._client is None or self.api_failure is not None:
            return None
        try:
            answer = self._client().get_products(
                ServiceCode="AmazonSageMaker",
                MaxResults=100,
                Filters=[
                    {"Type": "TERM_MATCH", "Field": field, "Value": value}
                    for field, value in (
                        ("productFamily", "ML Instance"),
                        ("regionCode", self.region),
                        ("instanceName", instance_type),
                        ("platoinstancetype", _USES[use]),
                    )
                ],
            )
        except Exception as error:  # unreachable, no permission, no credentials: use the table
            self.api_failure = f"{type(error).__name__}: {error}"
            return None
        usd = hourly_usd(answer.get("PriceList", []))
        if usd is None:
            return None
        return Price(instance_type, use, self.region, usd, API_SOURCE, self.today.isoformat())

    def _cached(self) -> dict[str, Any]:
        """The cache file's prices, read once per book (listings ask for many)."""
        if self._read is None:
            self._read = {} if self.cache is None else read_json(self.cache)
        return self._read

    def _fresh(self, as_of: str) -> bool:
        try:
            read = dt.date.fromisoformat(as_of)
        except ValueError:
            return False
        return (self.today - read).days <= CACHE_DAYS

    def _remember(self, key: str, price: Price) -> None:
        if self.cache is None:
            return
        data = self._cached()
        data[key] = {"usd": price.usd_per_hour, "as_of": price.as_of}
        write_json(self.cache, data)  # unwritten, it only costs another API call


def hourly_usd(price_list: list[str]) -> float | None:
    """The on-demand hourly USD price in a ``GetProducts`` answer's ``PriceList``.

    Each entry is a JSON document; its ``terms.OnDemand`` offers hold price
    dimensions, of which the hourly one (unit ``Hrs``) with a price above zero
    is the instance's (zero-priced rows are free-tier placeholders).
    """
    prices = []
    for raw in price_list:
        document = json.loads(raw) if isinstance(raw, str) else raw
        for offer in document.get("terms", {}).get("OnDemand", {}).values():
            for dimension in offer.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
                if dimension.get("unit") == "Hrs" and usd > 0:
                    prices.append(usd)
    return min(prices) if prices else None
