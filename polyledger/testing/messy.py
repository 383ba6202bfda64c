"""A ready-made market as messy about symbols and identities as the real one
(/work/shared/docs/polygon-api.md, "Symbols and identities"), all within 2019-2024.

- ECHO is reused: Echo Acoustics (delisted after its last session 2019-09-18), then, from
  2021-03-01, the unrelated Echo Biotherapeutics; in between, in Echo Acoustics' last
  month (2019-09-23 to 09-27), a few sparse bars under ECHO that belong to neither (a
  listing no reference endpoint knows). /range for ECHO over 2019-2022 answers all three.
- FACE is renamed MTVS: the same company (cik, FIGIs, price path) traded as FACE until
  2022-06-08 and as MTVS from 2022-06-09; FACE has no delisted_utc and drops out of the
  tickers list, but a point-in-time list before the rename shows it active. Its ticker
  event is dated 2022-06-11, a Saturday two days late, as the recorded answer of the
  real FB -> META change is (META traded from 2022-06-09).
- GONE is delisted (last session 2021-12-31) and has no FIGI.
- ABCpA (a preferred, type PFD) and ABCPA (a common stock) are different securities;
  BRK.A is a dotted share class.
- SHOP's one 10-for-1 split (prices move once, at the open of 2022-06-29) is listed by the
  splits endpoints on two dates, 2022-06-22 and 2022-06-29, as the recorded
  /v3/reference/splits answer lists Shopify's (tests/fixtures/api-mocks/v3/reference/splits.json).
"""

from __future__ import annotations

import datetime as dt

from polyledger.testing.market import Listing, Split

D = dt.date
REUSED = "ECHO"
RENAMED_FROM, RENAMED_TO = "FACE", "MTVS"
RENAME_DAY = D(2022, 6, 9)  # MTVS's first session; FACE's last is the day before
RENAME_EVENT_DAY = D(2022, 6, 11)  # what /events says: a Saturday, two days late (as META's)
NO_FIGI = "GONE"
PREFERRED, COMMON_LOOKALIKE, DOTTED = "ABCpA", "ABCPA", "BRK.A"
SPLIT_TWICE = "SHOP"
SPLIT_DAY, SPLIT_LISTED_EARLY = D(2022, 6, 29), D(2022, 6, 22)  # the real date, and the other one


def messy_listings(bars_per_day: int = 20) -> list[Listing]:
    """The listings above; few bars a day by default so tests stay fast."""
    start = D(2019, 1, 2)
    return [
        Listing(
            REUSED,
            list_date=start,
            delist_date=D(2019, 9, 18),
            bars_per_day=bars_per_day,
            name="Echo Acoustics Corp.",
            company="echo-acoustics",
        ),
        # the gap: about one bar a day for a week, under the symbol but nobody's
        Listing(
            REUSED,
            list_date=D(2019, 9, 23),
            delist_date=D(2019, 9, 27),
            bars_per_day=1,
            company="echo-gap",  # an identity of its own, so the bars are the same alone
            known=False,
        ),
        Listing(
            REUSED,
            list_date=D(2021, 3, 1),
            bars_per_day=bars_per_day,
            name="Echo Biotherapeutics Inc.",
            company="echo-bio",
        ),
        Listing(
            RENAMED_FROM,
            list_date=start,
            delist_date=RENAME_DAY - dt.timedelta(days=1),
            bars_per_day=bars_per_day,
            name="Facet Platforms Inc. Class A Common Stock",
            company="facet",
            renamed=True,
        ),
        Listing(
            RENAMED_TO,
            list_date=RENAME_DAY,
            bars_per_day=bars_per_day,
            name="Metaverse Facet Platforms Inc. Class A Common Stock",
            company="facet",
            event_date=RENAME_EVENT_DAY,
        ),
        Listing(
            NO_FIGI,
            list_date=start,
            delist_date=D(2021, 12, 31),
            bars_per_day=bars_per_day,
            name="Gone Fishing Holdings Inc.",
            figi=False,
        ),
        Listing(
            PREFERRED,
            list_date=start,
            bars_per_day=bars_per_day,
            name="ABC Bancorp 6.25% Non-Cumulative Preferred Series A",
            type="PFD",
            primary_exchange="XNYS",
        ),
        Listing(
            COMMON_LOOKALIKE,
            list_date=start,
            bars_per_day=bars_per_day,
            name="ABCP Acquisition Corp. Class A Common Stock",
        ),
        Listing(
            DOTTED,
            list_date=start,
            bars_per_day=bars_per_day,
            name="Berkshire Synthetic Holdings Inc. Class A",
            primary_exchange="XNYS",
        ),
        Listing(
            SPLIT_TWICE,
            list_date=start,
            bars_per_day=bars_per_day,
            name="Shopfront Synthetic Inc. Class A Subordinate Voting Shares",
            primary_exchange="XNYS",
            splits=(Split(SPLIT_DAY, 1, 10, also_listed_on=SPLIT_LISTED_EARLY),),
        ),
    ]
