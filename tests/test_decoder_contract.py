"""The aggregates page decoder's contract, on both paths: what it accepts (any JSON spacing,
pretty printing, `n`/`vw` missing, `otc` present, DELAYED), what every field becomes, and
that anything else is a transient `bad_shape` or `invalid_json`, never an empty month."""

from __future__ import annotations

import io

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from polyledger.errors import TransientError
from polyledger.polygon import aggs as aggs_module
from polyledger.polygon.aggs import PAGE_SCHEMA, RAW_BAR, _decode_fast, _decode_general, decode_aggregates

BAR = {"t": 1704205800000, "o": 1.5, "h": 2.5, "l": 1.0, "c": 2.0, "v": 100.0, "vw": 1.8, "n": 7}
NEXT = "https://api.test/v2/aggs/ticker/AAPL/range/1/minute/1704205860000/1706745599999?cursor=abc"


def envelope(results: object = None, **fields: object) -> dict:
    body: dict = {"ticker": "AAPL", "status": "OK", "adjusted": True, "request_id": "req-7"}
    if results is not None:
        body["results"] = results
        body["resultsCount"] = len(results) if isinstance(results, list) else 1
    body.update(fields)
    return body


def compact(body: dict) -> bytes:
    return orjson.dumps(body)


def pretty(body: dict) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


def two_bars() -> list[dict]:
    return [BAR, dict(BAR, t=BAR["t"] + 60_000, c=3.0)]


@pytest.mark.parametrize(
    "decode", [decode_aggregates, _decode_fast, _decode_general], ids=["public", "fast", "general"]
)
@pytest.mark.parametrize("render", [compact, pretty], ids=["compact", "pretty"])
def test_a_page_decodes_to_its_bars_and_envelope_on_every_path(decode, render):
    page = decode(render(envelope(two_bars(), next_url=NEXT)))
    assert page is not None
    assert page.bars.schema == pl.Schema(RAW_BAR.to_schema())
    assert page.bars.get_column("t").to_list() == [BAR["t"], BAR["t"] + 60_000]
    assert page.bars.get_column("c").to_list() == [2.0, 3.0]
    assert page.bars.get_column("n").to_list() == [7, 7]
    assert (page.next_url, page.request_id, page.adjusted) == (NEXT, "req-7", True)


@pytest.mark.parametrize("space", [b" ", b"\n", b"\r", b"\t", b" \r\n\t "])
def test_the_fast_path_takes_any_spacing_before_the_array(space):
    body = compact(envelope(two_bars())).replace(b'"results":', b'"results":' + space)
    page = _decode_fast(body)
    assert page is not None and page.bars.height == 2


@pytest.mark.parametrize("decode", [_decode_fast, _decode_general], ids=["fast", "general"])
def test_missing_vw_and_n_are_nulls_and_otc_is_kept(decode):
    bare = {k: v for k, v in BAR.items() if k not in ("vw", "n")}
    page = decode(compact(envelope([bare, dict(BAR, otc=True)])))
    assert page is not None
    assert page.bars.get_column("vw").to_list() == [None, 1.8]
    assert page.bars.get_column("n").to_list() == [None, 7]
    assert page.bars.get_column("otc").to_list() == [None, True]


@pytest.mark.parametrize(
    "decode", [decode_aggregates, _decode_fast, _decode_general], ids=["public", "fast", "general"]
)
def test_delayed_is_a_success(decode):
    page = decode(compact(envelope([BAR], status="DELAYED")))
    assert page is not None and page.bars.height == 1


@pytest.mark.parametrize("decode", [decode_aggregates, _decode_general], ids=["public", "general"])
def test_absent_fields_are_none(decode):
    body = {"status": "OK", "resultsCount": 1, "results": [BAR]}
    page = decode(compact(body))
    assert (page.next_url, page.request_id, page.adjusted) == (None, None, None)
    assert decode(compact(dict(body, next_url=""))).next_url is None


def test_the_fast_path_gives_none_for_absent_fields_too():
    body = {"status": "OK", "resultsCount": 1, "results": [BAR]}
    page = _decode_fast(compact(body))
    assert page is not None
    assert (page.next_url, page.request_id, page.adjusted) == (None, None, None)
    odd = _decode_fast(compact(dict(body, next_url="", request_id=12)))
    assert odd is not None
    assert (odd.next_url, odd.request_id, odd.adjusted) == (None, "12", None)
    # an `adjusted` that is no boolean is not "does not say": the general path refuses it
    assert _decode_fast(compact(dict(body, adjusted="yes"))) is None
    raw = _decode_fast(compact(dict(body, adjusted=False)))
    assert raw is not None and raw.adjusted is False


@pytest.mark.parametrize("decode", [decode_aggregates, _decode_general], ids=["public", "general"])
@pytest.mark.parametrize("results", [[], None], ids=["empty-list", "absent"])
def test_an_empty_answer_is_empty_only_when_it_says_so(decode, results):
    body = envelope([], resultsCount=0)
    if results is None:
        del body["results"]
    page = decode(compact(body))
    assert page.bars.height == 0 and page.bars.schema == pl.Schema(RAW_BAR.to_schema())
    lying = dict(body, resultsCount=3)
    with pytest.raises(TransientError, match="^resultsCount > 0 but no results$") as raised:
        decode(compact(lying))
    assert raised.value.error_class == "bad_shape"


def test_the_fast_path_leaves_every_unusual_body_to_the_general_one():
    ok = envelope([BAR])
    unusual = [
        compact({k: v for k, v in ok.items() if k != "results"}),  # no results key
        compact(ok).replace(b'"results":[', b'"results":null,"x":['),  # results not an array
        compact(envelope([])),  # empty array: the general path checks resultsCount
        compact(dict(ok, status="ERROR")),  # not a success
        compact(envelope([{k: v for k, v in BAR.items() if k != "o"}])),  # a bar without o
        b"[" + compact(ok) + b"]",  # not an object
    ]
    assert [_decode_fast(body) for body in unusual] == [None] * len(unusual)


@pytest.mark.parametrize("missing", ["t", "o", "h", "l", "c", "v"])
@pytest.mark.parametrize("decode", [decode_aggregates, _decode_general], ids=["public", "general"])
def test_a_bar_without_a_required_field_is_bad_shape_naming_it(decode, missing):
    bars = [BAR, {k: v for k, v in BAR.items() if k != missing}]
    with pytest.raises(TransientError, match=f"^bars without {missing}$") as raised:
        decode(compact(envelope(bars)))
    assert raised.value.error_class == "bad_shape"
    assert _decode_fast(compact(envelope(bars))) is None


def test_bars_missing_several_fields_name_them_all():
    with pytest.raises(TransientError, match="^bars without o, c$"):
        _decode_general(compact(envelope([{"t": 1, "h": 1.0, "l": 1.0, "v": 1.0}])))


@pytest.mark.parametrize("status", ["ERROR", "NOT_AUTHORIZED"])
def test_a_status_that_is_not_success_is_bad_shape(status):
    with pytest.raises(TransientError, match=f"^aggregates body has status '{status}'$") as raised:
        decode_aggregates(compact(envelope([BAR], status=status)))
    assert raised.value.error_class == "bad_shape"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (compact(envelope([dict(BAR, c="two")])), "bad_shape"),
        (compact(envelope([BAR], adjusted="yes")), "bad_shape"),
    ],
)
def test_undecodable_bodies_are_transient_with_a_short_one_line_reason(body, kind):
    with pytest.raises(TransientError) as raised:
        _decode_general(body)
    assert raised.value.error_class == kind
    # polars' own reason, on one line (whitespace runs become one space), cut at 100 characters
    try:
        pl.read_json(io.BytesIO(body), schema=PAGE_SCHEMA)
    except Exception as exc:  # noqa: BLE001 - whatever polars raises is the reason given
        reason = " ".join(str(exc).split())[:100]
    assert str(raised.value) == f"undecodable aggregates body: {reason}"


def test_a_long_decoder_error_is_cut_at_100_characters():
    with pytest.raises(TransientError) as raised:
        _decode_general(compact(envelope([dict(BAR, c="two")])))
    assert len(str(raised.value)) == len("undecodable aggregates body: ") + 100


@pytest.mark.parametrize(
    "body", [b"[]", b"[" + compact(envelope([BAR])) + b"," + compact(envelope([BAR])) + b"]"]
)
def test_a_body_that_is_not_one_object_is_bad_shape(body):
    with pytest.raises(TransientError, match="^aggregates body is not one JSON object$") as raised:
        decode_aggregates(body)
    assert raised.value.error_class == "bad_shape"


def test_brackets_before_the_results_do_not_confuse_the_fast_path():
    # key order is the server's choice: a next_url with "[" and "]" may come first
    body = b'{"next_url":"' + NEXT.encode() + b'&x=[1]","status":"OK","results":' + orjson.dumps([BAR]) + b"}"
    page = _decode_fast(body)
    assert page is not None and page.next_url == NEXT + "&x=[1]" and page.bars.height == 1


def test_a_compact_page_takes_the_fast_path_only(monkeypatch):
    import polyledger.polygon.aggs as aggs

    def general_path_used(body: bytes) -> None:
        raise AssertionError("the general path decoded a compact page")

    monkeypatch.setattr(aggs, "_decode_general", general_path_used)
    page = decode_aggregates(compact(envelope(two_bars())))
    assert page.bars.height == 2


def test_brackets_after_the_results_do_not_confuse_the_fast_path():
    body = compact(envelope([BAR], next_url=NEXT + "&x=[1]"))
    page = _decode_fast(body)
    assert page is not None and page.next_url == NEXT + "&x=[1]" and page.bars.height == 1


def test_the_class_is_read_from_the_whole_reason_not_from_its_shortened_form(monkeypatch):
    """polars may say "deserializing" (a body of the wrong shape) deep in a long message: the
    class comes from the whole reason, the stored text is cut afterwards."""
    import polyledger.polygon.aggs as aggs

    def long_error(*_args: object, **_kwargs: object) -> None:
        raise pl.exceptions.ComputeError("x" * 250 + " error deserializing value of type Int64")

    monkeypatch.setattr(aggs.pl, "read_json", long_error)
    with pytest.raises(TransientError) as raised:
        _decode_general(b'{"status": "OK"}')
    assert raised.value.error_class == "bad_shape"
    assert str(raised.value) == "undecodable aggregates body: " + "x" * 100


OTHER = dict(BAR, t=BAR["t"] - 3_600_000, c=99.0)  # a bar that is not one of the page's


def _nested_in_an_object() -> bytes:
    body = envelope(two_bars())
    return compact({"meta": {"results": [OTHER]}, **body})  # `meta` comes first


def _in_a_key_ending_in_results() -> bytes:
    # the key `say "results` holds an array: its text contains `"results":[`
    return compact({'say "results': [OTHER], **envelope(two_bars())})


def _nested_without_a_top_level_results() -> bytes:
    body = envelope([], resultsCount=0)
    del body["results"]
    return compact({"meta": {"results": [OTHER]}, **body})


def _a_string_before_the_results() -> bytes:
    # a value that holds the text `"results":[` (escaped, as JSON must) before the real key
    note = 'the "results":[...] array'
    return compact({"note": note, **envelope(two_bars())})


@pytest.mark.parametrize(
    ("body", "times"),
    [
        (_nested_in_an_object(), [BAR["t"], BAR["t"] + 60_000]),
        (_in_a_key_ending_in_results(), [BAR["t"], BAR["t"] + 60_000]),
        (_nested_without_a_top_level_results(), []),
    ],
    ids=["nested-in-an-object", "key-ending-in-results", "no-top-level-results"],
)
def test_a_results_array_that_is_not_the_top_level_one_takes_the_general_path(body, times):
    """The fast path cuts the first `"results":[...]` it finds; only the top-level one is the
    page's bars. Anything else falls back to the full parse, which reads the right one."""
    assert _decode_fast(body) is None
    page = decode_aggregates(body)
    assert page.bars.get_column("t").to_list() == times
    assert OTHER["c"] not in page.bars.get_column("c").to_list()


def test_a_string_mentioning_results_before_the_key_still_takes_the_fast_path():
    body = _a_string_before_the_results()
    page = _decode_fast(body)
    assert page is not None and page.bars.get_column("t").to_list() == [BAR["t"], BAR["t"] + 60_000]


@pytest.mark.parametrize("render", [compact, pretty], ids=["compact", "pretty"])
@pytest.mark.parametrize("count", [1, 3, 0])
def test_a_results_count_other_than_the_bars_sent_is_bad_shape(render, count):
    """A page whose resultsCount is not the number of bars it holds was cut short or padded:
    transient, so the unit is asked again while attempts remain, never stored as is."""
    body = render(envelope(two_bars(), resultsCount=count))
    assert _decode_fast(body) is None
    for decode in (decode_aggregates, _decode_general):
        with pytest.raises(TransientError, match=f"^resultsCount {count} but 2 bars$") as raised:
            decode(body)
        assert raised.value.error_class == "bad_shape"


# --- compact arrays of one bar shape, read as CSV (`_read_uniform`) ---------------------

API_ORDER = ["v", "vw", "o", "c", "h", "l", "t", "n"]  # the API's key order; `otc` last when sent


def api_bar(index: int, **changes: object) -> dict:
    bar = {key: BAR[key] for key in API_ORDER}
    bar.update(t=BAR["t"] + 60_000 * index, c=2.0 + index / 8, n=index)
    bar.update(changes)
    return bar


def array_of(bars: list[dict]) -> bytes:
    return orjson.dumps(bars)[1:-1]


def as_ndjson(array: bytes) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(array.replace(b"},{", b"}\n{")), schema=dict(RAW_BAR.to_schema()))


UNIFORM = {
    "api-order": [api_bar(i) for i in range(5)],
    "otc-on-some": [api_bar(i, **({"otc": True} if i % 2 else {})) for i in range(5)],
    "otc-on-the-first": [api_bar(0, otc=True), api_bar(1), api_bar(2, otc=False)],
    "without-vw-and-n": [{k: v for k, v in api_bar(i).items() if k not in ("vw", "n")} for i in range(3)],
    "another-order": [dict(reversed(list(api_bar(i).items()))) for i in range(3)],
    "numbers-as-json-writes-them": [api_bar(0, v=100, o=1e-3, h=-0.0), api_bar(1, v=2.5e6)],
}


@pytest.mark.parametrize("bars", list(UNIFORM.values()), ids=list(UNIFORM))
def test_bars_of_one_shape_are_read_as_csv_exactly_as_json(bars):
    """Every bar with the first bar's keys in its order (`otc` may close any): the CSV read
    gives the very frame newline-delimited JSON gives, and the page decodes to it."""
    array = array_of(bars)
    frame = aggs_module._read_uniform(array)
    assert frame is not None
    assert_frame_equal(frame, as_ndjson(array))
    page = _decode_fast(compact(envelope(bars)))
    assert page is not None
    assert_frame_equal(page.bars, as_ndjson(array))


def _raw(bars: list[dict], old: bytes, new: bytes) -> bytes:
    """The array with the last `old` (in the last bars: the first bar must stay whole) as `new`."""
    text = array_of(bars)
    head, found, tail = text.rpartition(old)
    assert found and len(head) > len(array_of(bars[:1]))
    return head + new + tail


def _swapped(bar: dict, first: str, second: str) -> dict:
    keys = list(bar)
    one, two = keys.index(first), keys.index(second)
    keys[one], keys[two] = keys[two], keys[one]
    return {key: bar[key] for key in keys}


FIVE = [api_bar(i) for i in range(5)]
NOT_UNIFORM = {
    "keys-of-one-bar-shuffled": array_of([*FIVE[:3], dict(reversed(list(FIVE[3].items()))), FIVE[4]]),
    "two-prices-swapped-in-one-bar": array_of([*FIVE[:3], _swapped(FIVE[3], "o", "c"), FIVE[4]]),
    "otc-swapped-with-n-in-one-bar": array_of([*FIVE[:3], _swapped(dict(FIVE[3], otc=True), "n", "otc")]),
    "one-bar-without-vw": array_of([*FIVE[:2], {k: v for k, v in FIVE[2].items() if k != "vw"}, *FIVE[3:]]),
    "vw-only-after-the-first-bar": array_of([{k: v for k, v in FIVE[0].items() if k != "vw"}, *FIVE[1:]]),
    "a-key-more-in-one-bar": array_of([*FIVE[:4], dict(FIVE[4], x=1)]),
    "an-unknown-key-in-every-bar": array_of([dict(bar, x=1) for bar in FIVE]),
    "otc-not-last": array_of([dict(otc=True, **bar) for bar in FIVE]),
    "a-number-as-a-string": array_of([*FIVE[:4], dict(FIVE[4], c="2.0")]),
    "a-null-value": array_of([*FIVE[:4], dict(FIVE[4], vw=None)]),
    "a-boolean-for-a-number": array_of([*FIVE[:4], dict(FIVE[4], o=True)]),
    "an-empty-value": _raw(FIVE, b'"vw":1.8,', b'"vw":,'),
    "nan": _raw(FIVE, b'"o":1.5', b'"o":NaN'),
    "an-unquoted-key": _raw(FIVE, b'"h":', b"h:"),
    "a-key-with-a-space": _raw(FIVE, b'"h":', b'" h":'),
    "an-empty-key": _raw(FIVE, b'"h":', b":"),
    "an-empty-otc-key": _raw([*FIVE[:4], dict(FIVE[4], otc=True)], b'"otc":true', b":true"),
    "nothing-between-two-bars": _raw(FIVE, b"},{", b"}{"),
    "a-blank-between-two-bars": _raw(FIVE, b"},{", b"},,{"),
    "a-word-between-two-bars": _raw(FIVE, b"},{", b"}x,{"),
    "a-key-more-closing-one-bar": array_of([*FIVE[:4], dict(FIVE[4], x=True)]),
    "otc-without-a-value": _raw([*FIVE[:4], dict(FIVE[4], otc=True)], b'"otc":true', b'"otc":'),
    "a-nested-object": _raw(FIVE, b'"n":4', b'"n":{"x":4}'),
    "an-integer-time-as-a-float": _raw(FIVE, b'"t":1704206040000', b'"t":1704206040000.5'),
    "otc-twice": _raw([*FIVE[:4], dict(FIVE[4], otc=True)], b'"otc":true', b'"otc":true,"otc":true'),
}


@pytest.mark.parametrize("array", list(NOT_UNIFORM.values()), ids=list(NOT_UNIFORM))
def test_anything_but_one_bar_shape_is_left_to_the_json_readers(array):
    """The CSV read takes only what it reads exactly as JSON would: bars of several shapes,
    values that are not their column's type as written, and text that is not a bar array
    are left to the JSON readers (their answer, or their error, stands)."""
    assert aggs_module._read_uniform(array) is None
    body = b'{"status":"OK","results":[' + array + b"]}"
    try:
        expected = _decode_general(body).bars
    except TransientError as exc:
        with pytest.raises(TransientError) as raised:
            decode_aggregates(body)
        assert raised.value.error_class == exc.error_class
    else:
        assert_frame_equal(decode_aggregates(body).bars, expected)


COERCED = {
    # what polars' JSON readers, given a schema, would store as something else
    "a-fraction-where-an-integer-goes": dict(BAR, n=4.9),
    "a-boolean-volume": dict(BAR, v=True),
    "a-string-price": dict(BAR, o="1.5"),
}


@pytest.mark.parametrize("render", [compact, pretty], ids=["compact", "pretty"])
@pytest.mark.parametrize("bar", list(COERCED.values()), ids=list(COERCED))
def test_a_value_the_json_readers_would_coerce_is_bad_shape_never_stored(render, bar):
    """Found by a review: a page the CSV read leaves to the JSON readers (laid out, or bars
    of several shapes) had `n: 4.9` stored as 4 and `v: true` as 1.0."""
    other_shape = {key: BAR[key] for key in reversed(BAR)}  # keys in another order: not one shape
    with pytest.raises(TransientError) as raised:
        decode_aggregates(render(envelope([other_shape, bar])))
    assert raised.value.error_class in ("bad_shape", "invalid_json")


@pytest.mark.parametrize("layout", [b"", b"\n  "], ids=["compact", "laid-out"])
def test_a_key_given_twice_is_bad_shape_never_the_first_of_them(layout):
    """JSON means the last of a repeated key, polars' readers took the first: neither is
    guessed (found by a review)."""
    bars = orjson.dumps([BAR])[1:-1] + b"," + layout + orjson.dumps(dict(BAR, t=BAR["t"] + 60_000))[:-1]
    body = b'{"status":"OK","adjusted":true,"resultsCount":2,"results":[' + bars + b',"o":99.0}]}'
    with pytest.raises(TransientError) as raised:
        decode_aggregates(body)
    assert raised.value.error_class == "bad_shape" and "twice" in str(raised.value)


@pytest.mark.parametrize("render", [compact, pretty], ids=["compact", "pretty"])
def test_adjusted_other_than_a_boolean_is_bad_shape_never_a_page_that_does_not_say(render):
    """`"adjusted": "false"` was read as not saying, and so never checked against the run's
    choice (found by a review)."""
    with pytest.raises(TransientError) as raised:
        decode_aggregates(render(envelope(two_bars(), adjusted="false")))
    assert raised.value.error_class in ("bad_shape", "invalid_json")
    assert decode_aggregates(render(envelope(two_bars(), ticker="BRK.A"))).ticker == "BRK.A"


# --- found by a review of the data path (2026-12-02) ---------------------------------------

_SECOND = dict(BAR, t=BAR["t"] + 60_000, c=3.0)


def _page(array: bytes, count: int = 2, **fields: object) -> bytes:
    head = {"ticker": "AAPL", "status": "OK", "adjusted": True, "request_id": "rq", "resultsCount": count}
    head.update(fields)
    return orjson.dumps(head)[:-1] + b',"results":[' + array + b"]}"


@pytest.mark.parametrize(
    "next_url", [[NEXT], {"href": NEXT}, 1704205920000, True], ids=["list", "object", "number", "true"]
)
def test_a_next_url_that_is_not_a_string_is_never_taken_as_the_last_page(next_url):
    """The fast path kept next_url only when a string: anything else became None, the
    range's last page, every later bar lost without a word (the general path refuses a
    list or an object, and keeps a number as a URL the progress guard refuses)."""
    body = _page(orjson.dumps(BAR) + b"," + orjson.dumps(_SECOND), next_url=next_url)
    try:
        page = decode_aggregates(body)
    except TransientError as exc:
        assert exc.error_class in ("bad_shape", "invalid_json")
        return
    assert page.next_url is not None, "a page that says there is more was taken as the last one"


def test_next_url_given_twice_is_bad_shape_on_every_path():
    """A key given twice is bad_shape, never one of them guessed: the fast path's orjson
    took the last, here the null that ends the range, though the page also says there is
    more."""
    array = orjson.dumps(BAR) + b"," + orjson.dumps(_SECOND)
    body = b'{"status":"OK","ticker":"AAPL","resultsCount":2,"next_url":"' + NEXT.encode() + b'","results":['
    body += array + b'],"next_url":null}'
    with pytest.raises(TransientError) as general:
        _decode_general(body)
    assert "twice" in str(general.value)
    with pytest.raises(TransientError) as raised:
        decode_aggregates(body)
    assert raised.value.error_class == "bad_shape"


@pytest.mark.parametrize("layout", [b",", b",\n"], ids=["compact", "laid-out"])
def test_a_transaction_count_beyond_int64_is_never_stored_as_missing(layout):
    """`n` above 2**63-1 was an integer to misshapen_bars and null to polars' readers:
    stored as "no count sent" where the JSON sent one. Refused (bad_shape)."""
    big = 2**63
    second = (
        orjson.dumps({k: v for k, v in _SECOND.items() if k != "n"})[:-1]
        + b',"n":'
        + str(big).encode()
        + b"}"
    )
    body = _page(orjson.dumps(BAR) + layout + second)
    try:
        page = decode_aggregates(body)
    except TransientError as exc:
        assert exc.error_class == "bad_shape"
        return
    assert page.bars.get_column("n").to_list()[1] == big


@pytest.mark.parametrize(
    ("text", "read_as"),
    [(b'"o":.5', 0.5), (b'"o":+1.5', 1.5), (b'"o":01.5', 1.5)],
    ids=["leading-dot", "plus-sign", "leading-zero"],
)
def test_a_compact_page_is_read_leniently_only_where_its_values_are_not_in_doubt(text, read_as):
    """By design (`aggs._read_uniform`): numbers JSON forbids but that say one value are
    read as that value (proving every page JSON would cost what the CSV read saves); a
    value that does not parse as its column's type is still refused."""
    second = orjson.dumps(_SECOND).replace(b'"o":1.5', text)
    page = decode_aggregates(_page(orjson.dumps(BAR) + b"," + second))
    assert page.bars.get_column("o").to_list() == [1.5, read_as]
    with pytest.raises(TransientError):
        decode_aggregates(
            _page(orjson.dumps(BAR) + b"," + orjson.dumps(_SECOND).replace(b'"o":1.5', b'"o":"1.5"'))
        )
