//! Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `1G`, `1e3`), read
//! the way `k8s.io/apimachinery/pkg/api/resource` reads them: a signed decimal
//! number, then at most one suffix (binary `Ki`..`Ei`, decimal `n`..`E`, or a
//! decimal exponent `e3`/`E-2`). Conversions round up, as `Quantity.Value()`
//! and `MilliValue()` do, so `100m` is one whole CPU when asked in units and a
//! request is never under-counted. k8s-openapi keeps quantities as strings, and
//! this is the only place that reads them.

use std::fmt;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quantity {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for QuantityError {}

/// `s` in thousandths of a unit, rounded up (CPU in millicores).
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    Parsed::from_str(s)?.scaled(3).map_err(|reason| error(s, reason))
}

/// `s` in whole units, rounded up (memory in bytes, pod counts).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    Parsed::from_str(s)?.scaled(0).map_err(|reason| error(s, reason))
}

fn error(input: &str, reason: &'static str) -> QuantityError {
    QuantityError { input: input.to_owned(), reason }
}

/// Digits beyond this are dropped (and remembered, for rounding): 10^36 times
/// the largest multiplier still fits the arithmetic below.
const MANTISSA_LIMIT: u128 = 10u128.pow(36);

/// A parsed quantity: `±mantissa × 10^exp10 × 2^exp2`, plus whether non-zero
/// digits were dropped past the mantissa's precision.
#[derive(Debug)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
    dropped: bool,
}

impl Parsed {
    fn from_str(s: &str) -> Result<Self, QuantityError> {
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let bytes = unsigned.as_bytes();
        let mut i = 0;
        let mut p = Parsed { negative, mantissa: 0, exp10: 0, exp2: 0, dropped: false };
        let mut digits = 0;
        let mut fraction = false;
        while let Some(&c) = bytes.get(i) {
            match c {
                b'0'..=b'9' => {
                    p.push_digit(u128::from(c - b'0'), fraction);
                    digits += 1;
                }
                b'.' if !fraction => fraction = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return Err(error(s, "no digits"));
        }
        p.suffix(&unsigned[i..]).map_err(|reason| error(s, reason))?;
        Ok(p)
    }

    fn push_digit(&mut self, d: u128, fraction: bool) {
        if self.mantissa < MANTISSA_LIMIT {
            self.mantissa = self.mantissa * 10 + d;
            if fraction {
                self.exp10 -= 1;
            }
        } else {
            // Past the precision kept: an integer digit still scales the number.
            self.dropped |= d != 0;
            if !fraction {
                self.exp10 += 1;
            }
        }
    }

    fn suffix(&mut self, suffix: &str) -> Result<(), &'static str> {
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            _ => (exponent(suffix)?, 0),
        };
        self.exp10 += exp10;
        self.exp2 = exp2;
        Ok(())
    }

    /// `⌈self × 10^milli⌉`, if it fits an `i64`.
    fn scaled(&self, milli: i32) -> Result<i64, &'static str> {
        const OUT_OF_RANGE: &str = "out of range";
        let mut mantissa = self.mantissa;
        let mut dropped = self.dropped;
        let mut exp10 = self.exp10.saturating_add(milli);
        // Make room for the binary multiplier by giving up digits that a division drops anyway.
        let numerator = loop {
            match mantissa.checked_mul(1u128 << self.exp2) {
                Some(n) => break n,
                None if exp10 < 0 => {
                    dropped |= !mantissa.is_multiple_of(10);
                    mantissa /= 10;
                    exp10 += 1;
                }
                None => return Err(OUT_OF_RANGE),
            }
        };
        let magnitude = if exp10 >= 0 {
            let factor = 10u128.checked_pow(exp10.unsigned_abs()).ok_or(OUT_OF_RANGE)?;
            if numerator == 0 { 0 } else { numerator.checked_mul(factor).ok_or(OUT_OF_RANGE)? }
        } else {
            match 10u128.checked_pow(exp10.unsigned_abs()) {
                Some(divisor) => {
                    let (q, r) = (numerator / divisor, numerator % divisor);
                    // Rounding up is away from zero for a positive number only.
                    if !self.negative && (r != 0 || dropped) { q + 1 } else { q }
                }
                // Smaller than any unit: a positive remainder rounds up to one.
                None => u128::from(!self.negative && (numerator != 0 || dropped)),
            }
        };
        let magnitude = i64::try_from(magnitude).map_err(|_| OUT_OF_RANGE)?;
        Ok(if self.negative { -magnitude } else { magnitude })
    }
}

/// A decimal exponent suffix, `e`/`E` then a signed integer.
fn exponent(suffix: &str) -> Result<i32, &'static str> {
    const BAD: &str = "unknown suffix";
    let rest = suffix.strip_prefix(['e', 'E']).ok_or(BAD)?;
    let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    rest.parse::<i32>().map_err(|_| "exponent out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        // (input, milli-units, units); units and milli-units round up.
        let cases: &[(&str, i64, i64)] = &[
            ("0", 0, 0),
            ("100m", 100, 1),
            ("2", 2000, 2),
            ("1.5", 1500, 2),
            (".5", 500, 1),
            ("5.", 5000, 5),
            ("+1", 1000, 1),
            ("-1", -1000, -1),
            ("-1.5", -1500, -1),
            ("250m", 250, 1),
            ("0.0001", 1, 1),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("1500u", 2, 1),
            ("1k", 1_000_000, 1000),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("1e-3", 1, 1),
            ("12e+2", 1_200_000, 1200),
            ("512Mi", 536_870_912_000, 536_870_912),
            ("1Ki", 1_024_000, 1024),
            ("0.5Ki", 512_000, 512),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("128974848", 128_974_848_000, 128_974_848),
            ("129e6", 129_000_000_000, 129_000_000),
            ("123Mi", 128_974_848_000, 128_974_848),
            ("1M", 1_000_000_000, 1_000_000),
            ("1T", 1_000_000_000_000_000, 1_000_000_000_000),
            ("110", 110_000, 110),
            ("0.000000000000000000000000000000000000000001", 1, 1),
            ("1.0000000000000000000000000000000000000000001", 1001, 2),
        ];
        for &(input, milli, value) in cases {
            assert_eq!(parse_milli(input), Ok(milli), "{input} in milli-units");
            assert_eq!(parse_value(input), Ok(value), "{input} in units");
        }
    }

    #[test]
    fn exa_is_a_suffix_and_an_exponent_prefix() {
        assert_eq!(parse_value("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_value("1Ei"), Ok(1 << 60));
        assert_eq!(parse_value("2E2"), Ok(200));
        assert_eq!(parse_value("9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn malformed_or_huge_quantities_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "no digits"),
            ("Mi", "no digits"),
            ("-", "no digits"),
            (".", "no digits"),
            ("1.2.3", "unknown suffix"),
            ("1Qi", "unknown suffix"),
            ("1 Mi", "unknown suffix"),
            ("1mi", "unknown suffix"),
            ("1e", "unknown suffix"),
            ("1e+", "unknown suffix"),
            ("1m3", "unknown suffix"),
            ("1Mi ", "unknown suffix"),
            ("1e99999999999", "exponent out of range"),
            ("9223372036854775808", "out of range"),
            ("10E", "out of range"),
            ("1e40", "out of range"),
            ("123456789012345678901234567890123456789012", "out of range"),
        ];
        for &(input, reason) in cases {
            assert_eq!(parse_value(input), Err(error(input, reason)), "{input:?}");
        }
        assert_eq!(parse_milli("1Ei"), Err(error("1Ei", "out of range")), "milli-units of an exbibyte overflow");
        assert_eq!(
            parse_value("1Qi").unwrap_err().to_string(),
            r#"quantity "1Qi": unknown suffix"#,
            "the message names the input"
        );
    }
}
