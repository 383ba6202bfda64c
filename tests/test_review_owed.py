"""Review of 15030ac and 2fc4ac6 (`_owed_ranges`: a change of listings owed over the ranges
of the universe files that hold the symbol, read again, and of the files its or its
company's listings came from). Failing tests for the defects found; no fixes."""

from __future__ import annotations

from test_replan_reaches_listings import RANGE, audit, calendar, months, planned, settle_all_empty, write


def test_a_rename_is_owed_over_a_file_that_holds_the_companys_old_symbol(work):
    """a.csv (2014-2016) and b.csv (2016) both hold FB (CO1); b.csv was planned last, so
    FB's recorded listings came from b.csv. The company is renamed META on 2015-06-09; b.csv
    is corrected and planned first: META's window is owed over the ranges of the files that
    hold META (none but b.csv: a.csv still says FB) and of the files the company's listings
    came from (b.csv). a.csv's range, which held the company under FB, is not owed; a.csv
    corrected since and planned for 2016 sees no change left: META's June - December 2015
    are in no unit, before its first unit, so `audit` is silent. A plain correction has no
    such gap: a.csv, uncorrected, still holds the symbol and is read again."""
    write(work / "a.csv", "FB,CO1,2012-05-18,")
    write(work / "b.csv", "FB,CO1,2012-05-18,")
    planned("a.csv", *RANGE)
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    write(work / "b.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "a.csv", "FB,CO1,2012-05-18,2015-06-08T00:00:00Z", "META,CO1,2015-06-09,")
    again = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert months("META") == calendar("2015-06", "2016-12"), (out, again, code, minute["unplanned"])


def test_a_reused_symbols_rename_is_owed_over_its_companys_file_whatever_the_row_order(work):
    """a.csv (2014-2016) holds FB (CO1), its listings' source; b.csv (2016) holds ZZZ. b.csv
    then says FB was renamed META on 2015-06-09, and that an older company (CO9) used META
    in 2005-2010, on the row after. `_owed_ranges` keeps one security per symbol
    (`companies`, the last row's: CO9), so CO1's file a.csv is not found and META's June -
    December 2015 (inside a.csv's range, the company in it under FB) are owed nothing. With
    the rows the other way round they are planned."""
    write(work / "a.csv", "FB,CO1,2012-05-18,")
    planned("a.csv", *RANGE)
    write(work / "b.csv", "ZZZ,CO5,2010-01-04,")
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(
        work / "b.csv",
        "ZZZ,CO5,2010-01-04,",
        "FB,CO1,2012-05-18,2015-06-08T00:00:00Z",
        "META,CO1,2015-06-09,",
        "META,CO9,2005-01-03,2010-12-31T00:00:00Z",
    )
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    assert months("META") == calendar("2015-06", "2016-12"), out


def test_a_file_that_does_not_read_now_is_still_owed_its_range(work):
    """a.csv (2014-2016) and b.csv (2016) hold LATE from 2015-03-02 (b.csv planned last: the
    listings' source). Both are corrected to 2014-06-02, a.csv with a typo on another row
    (`brk.a`); b.csv is planned. `_tickers_in` swallows a.csv's InputError: a.csv holds
    nothing, its range is owed nothing. a.csv fixed and planned for 2016 sees no change left:
    June 2014 - February 2015 in no unit, before LATE's first unit, `audit` silent. A file
    that does not read is no evidence it no longer holds the symbol: its range should be
    owed (or the plan should say it could not read it)."""
    write(work / "a.csv", "LATE,CO1,2015-03-02,")
    write(work / "b.csv", "LATE,CO1,2015-03-02,")
    planned("a.csv", *RANGE)
    planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    write(work / "a.csv", "LATE,CO1,2014-06-02,", "brk.a,CO7,2014-01-02,")
    write(work / "b.csv", "LATE,CO1,2014-06-02,")
    out = planned("b.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    write(work / "a.csv", "LATE,CO1,2014-06-02,", "BRK.A,CO7,2014-01-02,")
    again = planned("a.csv", "--from", "2016-01-01", "--to", "2016-12-31")
    settle_all_empty()
    code, minute = audit()
    assert months("LATE") == calendar("2014-06", "2016-12"), (out, again, code, minute["unplanned"])
