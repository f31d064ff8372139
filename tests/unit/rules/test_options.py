"""Black-76 in Decimal and OKX's option margin (ledger/rules/options.py, docs/options.md).

Independent references: published constants and examples (each cited where it is used), and
second implementations inside this file by other methods: Simpson integration of the normal
density for the CDF, central differences of the price for every greek, put-call parity.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import numbers
from ledger.rules.options import (
    OptionMarginTerms,
    OptionType,
    black76,
    erf,
    intrinsic,
    margin_factor,
    norm_cdf,
    norm_pdf,
    otm_amount,
    short_option_imr,
    short_option_mmr,
)

numbers.install()
D = Decimal
CALL, PUT = OptionType.CALL, OptionType.PUT


def close(left: Decimal, right: Decimal, tolerance: Decimal) -> bool:
    return abs(left - right) <= tolerance


# --- the normal distribution ----------------------------------------------------------------


def test_erf_and_cdf_against_published_constants() -> None:
    # erf(1) to 34 digits: OEIS A099286 (0.84270079294971486934122063508260925929606699796630…).
    assert erf(D(1)) == D("0.8427007929497148693412206350826093")
    # N(1) = 0.841344746068542948585232545632… (A&S table 26.1 prints 0.8413447460685429).
    assert close(norm_cdf(D(1)), D("0.8413447460685429485852325456320379"), D("1e-33"))
    # The 97.5 % quantile 1.959963984540054 (every statistics table prints 1.96 → 0.9750).
    assert close(norm_cdf(D("1.959963984540054")), D("0.975"), D("1e-16"))
    assert norm_cdf(D("1.96")).quantize(D("0.0001")) == D("0.9750")
    # n(0) = 1/√(2π) = 0.3989422804014326779399460599343818… (A&S 26.2.1 at 0).
    assert close(norm_pdf(D(0)), D("0.3989422804014326779399460599343819"), D("1e-33"))
    assert norm_cdf(D(0)) == D("0.5")
    # Tail: Q(12) = 1.776482112077679e-33 (A&S 26.2.12 asymptotics; every tail table).
    assert close(norm_cdf(D(-12)), D("1.776482112077679e-33"), D("1e-47"))
    assert norm_cdf(D(12)) == D("0.9999999999999999999999999999999982")
    assert norm_cdf(D(15)) == D(1)


def simpson_cdf(x: Decimal, intervals: int = 2000) -> Decimal:
    """N(x) = 1/2 + ∫_0^x n(t) dt by Simpson's rule on the density e^(−t²/2)/√(2π)."""
    root_two_pi = (2 * D("3.14159265358979323846264338327950288419716939937510")).sqrt()

    def density(t: Decimal) -> Decimal:
        return (-(t * t) / 2).exp() / root_two_pi

    h = x / intervals
    total = density(D(0)) + density(x)
    for k in range(1, intervals):
        total += (4 if k % 2 else 2) * density(h * k)
    return D("0.5") + total * h / 3


@pytest.mark.parametrize("x", ["-3.5", "-1.2345", "-0.1", "0.3", "1", "2.5", "4"])
def test_cdf_matches_numerical_integration_of_the_density(x: str) -> None:
    # Simpson's error is h^4/180·max|n''''| ≈ 1e-15 at these step sizes.
    assert close(norm_cdf(D(x)), simpson_cdf(D(x)), D("1e-13"))


@given(st.decimals(min_value=-9, max_value=9, places=6, allow_nan=False))
@settings(max_examples=40)
def test_cdf_symmetry(x: Decimal) -> None:
    assert close(norm_cdf(x) + norm_cdf(-x), D(1), D("1e-33"))


# --- Black-76 -------------------------------------------------------------------------------


def test_black76_published_example() -> None:
    # Hull, Options, Futures and Other Derivatives (5th ed., pp. 287-288), reproduced by
    # MathWorks' `blkprice(20, 20, 0.09, 4/12, 0.25)`: call = put = 1.1166.
    call = black76(CALL, D(20), D(20), D(4) / 12, D("0.25"), D("0.09"))
    put = black76(PUT, D(20), D(20), D(4) / 12, D("0.25"), D("0.09"))
    assert call.price.quantize(D("0.0001")) == D("1.1166")
    assert put.price.quantize(D("0.0001")) == D("1.1166")


@given(
    st.sampled_from([CALL, PUT]),
    st.decimals(min_value=1000, max_value=100000, places=2),
    st.decimals(min_value=1000, max_value=100000, places=2),
    st.decimals(min_value="0.01", max_value=2, places=4),
    st.decimals(min_value="0.05", max_value="1.5", places=4),
    st.decimals(min_value=0, max_value="0.1", places=4),
)
@settings(max_examples=40)
def test_put_call_parity(
    kind: OptionType, forward: Decimal, strike: Decimal, years: Decimal, vol: Decimal,
    rate: Decimal,
) -> None:
    # C − P = e^(−rT)(F − K), whatever σ: a model-free identity.
    call = black76(CALL, forward, strike, years, vol, rate).price
    put = black76(PUT, forward, strike, years, vol, rate).price
    assert close(call - put, (-rate * years).exp() * (forward - strike), forward * D("1e-30"))
    assert call >= 0 and put >= 0


CASES = [
    (CALL, "60000", "65000", "0.25", "0.6", "0.03"),
    (PUT, "60000", "55000", "0.1", "0.8", "0"),
    (CALL, "3000", "2500", "0.5", "0.7", "0.05"),
    (PUT, "20", "20", "0.3333333333", "0.25", "0.09"),
]


@pytest.mark.parametrize(("kind", "f", "k", "t", "v", "r"), CASES)
def test_greeks_match_central_differences(
    kind: OptionType, f: str, k: str, t: str, v: str, r: str
) -> None:
    forward, strike, years, vol, rate = D(f), D(k), D(t), D(v), D(r)
    g = black76(kind, forward, strike, years, vol, rate)

    def price(ff: Decimal = forward, tt: Decimal = years, vv: Decimal = vol,
              rr: Decimal = rate) -> Decimal:
        return black76(kind, ff, strike, tt, vv, rr).price

    hf = forward * D("1e-7")
    hv = D("1e-7")
    ht = D("1e-8")
    hr = D("1e-7")
    delta = (price(ff=forward + hf) - price(ff=forward - hf)) / (2 * hf)
    gamma = (price(ff=forward + hf) - 2 * g.price + price(ff=forward - hf)) / (hf * hf)
    vega = (price(vv=vol + hv) - price(vv=vol - hv)) / (2 * hv)
    volga = (price(vv=vol + hv) - 2 * g.price + price(vv=vol - hv)) / (hv * hv)
    theta = -(price(tt=years + ht) - price(tt=years - ht)) / (2 * ht)
    rho = (price(rr=rate + hr) - price(rr=rate - hr)) / (2 * hr)
    # Central differences err by O(h²); the second differences by O(h²) plus rounding of the
    # 34-digit prices divided by h² (≤ 1e-34·F/1e-14·F² … well below the tolerances).
    assert close(g.delta, delta, D("1e-10"))
    assert close(g.gamma, gamma, abs(g.gamma) * D("1e-6") + D("1e-15"))
    assert close(g.vega, vega, abs(g.vega) * D("1e-10"))
    assert close(g.volga, volga, abs(g.vega) * D("1e-6"))
    assert close(g.theta, theta, abs(g.theta) * D("1e-7"))
    assert close(g.rho, rho, abs(g.rho) * D("1e-10") + D("1e-20"))


def test_expired_option_is_worth_its_intrinsic_value() -> None:
    assert black76(CALL, D(52000), D(50000), D(0), D("0.6")).price == D(2000)
    assert black76(PUT, D(52000), D(50000), D(0), D("0.6")).price == D(0)
    assert black76(CALL, D(52000), D(50000), D(0), D("0.6")).delta == D(1)
    assert intrinsic(PUT, D(48000), D(50000)) == D(2000)
    assert otm_amount(CALL, D(5900), D(6000)) == D(100)
    assert otm_amount(PUT, D(5900), D(6000)) == D(0)


def test_results_carry_the_ledger_precision() -> None:
    price = black76(CALL, D(60000), D(65000), D("0.25"), D("0.6"), D("0.03")).price
    assert len(price.as_tuple().digits) <= numbers.PRECISION


# --- OKX option margin (unified account, not portfolio) -------------------------------------


def test_okx_short_call_position_margin_example() -> None:
    # OKX's single-/cross-currency option margin rules, BTCUSD example (copied by third
    # parties, e.g. 365shuku.com/13503.html): selling calls $100 out of the money, underlying
    # 5,900, margin coefficient 1.02 (tier 2), mark 0.0575 BTC, contract 0.1 BTC:
    # [max(0.1, 0.15 − 100/5900) × 1.02 + 0.0575] × 0.1 = 0.01932 BTC (printed).
    terms = OptionMarginTerms()
    per_coin = short_option_imr(CALL, D(5900), D(6000), D("0.0575"), D(5900), D("1.02"), terms,
                                coin_margined=True)
    per_contract = per_coin * D("0.1")
    assert per_contract.quantize(D("0.00001")) == D("0.01932")
    # The hand figure in full: 0.15 − 100/5900 = 0.1330508474576…; × 1.02 + 0.0575.
    assert close(per_coin, (D("0.15") - D(100) / D(5900)) * D("1.02") + D("0.0575"), D("1e-32"))


def test_short_option_imr_floor_a_deep_out_of_the_money() -> None:
    # OTM 2,000 at forward 5,000: b − 0.4 < a, so a = 0.1 applies.
    terms = OptionMarginTerms()
    assert short_option_imr(PUT, D(5000), D(3000), D("0.001"), D(5000), D(1), terms,
                            coin_margined=True) == D("0.101")
    # USDT-margined: × index: 0.1 × 5,000 + mark 5 = 505 USDT per coin.
    assert short_option_imr(PUT, D(5000), D(3000), D(5), D(5000), D(1), terms,
                            coin_margined=False) == D("505")


def test_short_option_mmr() -> None:
    terms = OptionMarginTerms()  # c = 0.03 (BTC)
    # Coin-margined call: c · factor + mark = 0.03 + 0.05 = 0.08 BTC per BTC.
    assert short_option_mmr(CALL, D("0.05"), D(60000), D(1), terms, True) == D("0.08")
    # Coin-margined put: max(c, c · mark) = 0.03 (mark < 1) · 1.02 + 0.02 = 0.0506.
    assert short_option_mmr(PUT, D("0.02"), D(60000), D("1.02"), terms, True) == D("0.0506")
    # USDT call at index 60,000, mark 1,200: 0.03 × 60,000 + 1,200 = 3,000.
    assert short_option_mmr(CALL, D(1200), D(60000), D(1), terms, False) == D(3000)
    # USDT put: max(0.03 × 60,000, 0.03 × 900) + 900 = 2,700.
    assert short_option_mmr(PUT, D(900), D(60000), D(1), terms, False) == D(2700)


def test_margin_factor_tiers() -> None:
    tiers = ((D(10000), D(1)), (D(50000), D("1.02")), (None, D("1.05")))
    assert margin_factor(D(0), tiers) == D(1)
    assert margin_factor(D(10000), tiers) == D(1)
    assert margin_factor(D(10001), tiers) == D("1.02")
    assert margin_factor(D(10**9), tiers) == D("1.05")


def test_implied_vol_inverts_the_price() -> None:
    from ledger.rules.options import implied_vol

    price = black76(CALL, D(20), D(20), D(4) / 12, D("0.25"), D("0.09")).price
    vol = implied_vol(CALL, D(20), D(20), D(4) / 12, price, D("0.09"))
    assert vol is not None and close(vol, D("0.25"), D("1e-11"))
    assert implied_vol(CALL, D(20), D(10), D(1), D(5)) is None  # below intrinsic 10


def test_option_fee_is_capped_at_a_fraction_of_the_premium() -> None:
    from ledger.rules.options import option_fee

    # 10 contracts of 0.01 BTC, underlying 60,000 USDT, taker 0.03 %: 0.1 × 60,000 × 0.0003
    # = 1.8 USDT; premium at 1,000 = 100 USDT, cap 12.5 % = 12.5 → 1.8.
    assert option_fee(D(10), D("0.01"), D(1000), D(60000), D("0.0003"), D("0.125"),
                      False) == D("1.8")
    # At a premium of 5 per BTC: 0.5 USDT of premium, cap 0.0625 < 1.8 → 0.0625.
    assert option_fee(D(10), D("0.01"), D(5), D(60000), D("0.0003"), D("0.125"),
                      False) == D("0.0625")
    # Coin-margined: 0.0003 × 1 BTC = 0.0003 BTC vs 0.125 × 1 × 0.002 = 0.00025 → 0.00025.
    assert option_fee(D(10), D("0.1"), D("0.002"), D(60000), D("0.0003"), D("0.125"),
                      True) == D("0.00025")
