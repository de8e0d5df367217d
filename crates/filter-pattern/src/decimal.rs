//! Exact decimal numbers (semantics §4.3 "Numbers", §4.4): numerals are compared by their
//! exact decimal value, never through `f64`, and nothing here allocates — a numeral is a view
//! of its own text, and a JSON number that has to go through a double is printed into a stack
//! buffer first.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use crate::ast::CmpOp;

/// Exponents of a numeral must have a magnitude below this (semantics §3, §6).
pub const MAX_EXPONENT: u64 = 1 << 31;

/// A numeral split into its parts, borrowed from its text: `[-] int . frac × 10^exp`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Numeral<'a> {
    neg: bool,
    int: &'a [u8],
    frac: &'a [u8],
    /// The exponent as written, saturated far outside [`MAX_EXPONENT`].
    exp: i64,
}

impl<'a> Numeral<'a> {
    /// Reads `text` as a numeral of the grammar (semantics §3): `[+-] digits [. [digits]]` or
    /// `[+-] . digits`, then an optional `e`/`E`, sign and digits. `None` when it is not one.
    pub(crate) fn parse(text: &'a str) -> Option<Numeral<'a>> {
        let b = text.as_bytes();
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int = &b[int_start..i];
        let mut frac: &[u8] = &[];
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &b[s..i];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut exp_neg = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                exp_neg = b[i] == b'-';
                i += 1;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                // Saturate well beyond the limit so that the limit check still sees it.
                exp = (exp * 10 + i64::from(b[i] - b'0')).min(1 << 40);
                i += 1;
            }
            if i == s {
                return None;
            }
            if exp_neg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        Some(Numeral {
            neg,
            int,
            frac,
            exp,
        })
    }

    /// Whether the exponent's magnitude is within the limit (semantics §3: `|e| < 2^31`).
    pub(crate) fn exponent_in_range(&self) -> bool {
        self.exp.unsigned_abs() < MAX_EXPONENT
    }

    /// Whether the numeral is an integer as written: no point and no exponent.
    pub(crate) fn is_plain_integer(text: &str) -> bool {
        !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    fn digit(&self, i: usize) -> u8 {
        if i < self.int.len() {
            self.int[i]
        } else {
            self.frac[i - self.int.len()]
        }
    }

    fn len(&self) -> usize {
        self.int.len() + self.frac.len()
    }

    /// The significant digits `[first, last)` over `int ++ frac`, and the decimal magnitude
    /// `m` such that the value is `0.d₁d₂… × 10^m`; `None` for zero.
    fn significant(&self) -> Option<(usize, usize, i64)> {
        let n = self.len();
        let first = (0..n).find(|&i| self.digit(i) != b'0')?;
        let last = (0..n).rev().find(|&i| self.digit(i) != b'0')? + 1;
        let mag = self.int.len() as i64 - first as i64 + self.exp;
        Some((first, last, mag))
    }

    /// Compares the exact values of two numerals.
    pub(crate) fn cmp_value(&self, other: &Numeral<'_>) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        let sign = |n: &Numeral<'_>, s: &Option<(usize, usize, i64)>| match s {
            None => 0,
            Some(_) if n.neg => -1,
            Some(_) => 1,
        };
        let (sa, sb) = (sign(self, &a), sign(other, &b));
        if sa != sb {
            return sa.cmp(&sb);
        }
        let (Some((fa, la, ma)), Some((fb, lb, mb))) = (a, b) else {
            return Ordering::Equal; // both zero
        };
        let magnitude = ma.cmp(&mb).then_with(|| {
            let (na, nb) = (la - fa, lb - fb);
            for k in 0..na.min(nb) {
                match self.digit(fa + k).cmp(&other.digit(fb + k)) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            na.cmp(&nb)
        });
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Whether `a op b` holds for two exact values.
pub(crate) fn holds(op: CmpOp, a: &Numeral<'_>, b: &Numeral<'_>) -> bool {
    let o = a.cmp_value(b);
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

/// A small text buffer on the stack (enough for any `f64` in any notation used here).
pub(crate) struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    pub(crate) fn new() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever written (see `write_str`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        for b in s.bytes() {
            self.push(b);
        }
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.is_ascii() || self.len + s.len() > self.buf.len() {
            return Err(fmt::Error);
        }
        self.push_str(s);
        Ok(())
    }
}

/// A JSON number of an event, as semantics §4.3 reads it.
pub(crate) enum EventNumber<'a> {
    /// An integer as written (exact at any length), or a double's shortest decimal.
    Value(Numeral<'a>),
    /// The double overflowed: no numeric test holds; its text is `Infinity`.
    OutOfRange,
}

/// Reads the raw text of a JSON number. `buf` holds the shortest decimal of a non-integer
/// (its double), so the result borrows from both.
pub(crate) fn event_number<'a>(raw: &'a str, buf: &'a mut StackText) -> EventNumber<'a> {
    if Numeral::is_plain_integer(raw) {
        if let Some(n) = Numeral::parse(raw) {
            return EventNumber::Value(n);
        }
    }
    let Ok(x) = raw.parse::<f64>() else {
        return EventNumber::OutOfRange;
    };
    if !x.is_finite() {
        return EventNumber::OutOfRange;
    }
    // `{:e}` prints the shortest digits that round back to the same double.
    buf.len = 0;
    if write!(buf, "{x:e}").is_err() {
        return EventNumber::OutOfRange;
    }
    match Numeral::parse(buf.as_str()) {
        Some(n) => EventNumber::Value(n),
        None => EventNumber::OutOfRange,
    }
}

/// The text of a JSON number for text tests (semantics §4.3, decision A21): an integer as
/// written; any other number as its double with at least one fractional digit, in exponent
/// form (`1.0E21`, `1.0E-5`) when its magnitude is at least 10^7 or below 10^-3; `Infinity`
/// (or `-Infinity`) when the double overflows.
pub(crate) fn number_text<'a>(raw: &'a str, buf: &'a mut StackText) -> &'a str {
    if Numeral::is_plain_integer(raw) {
        return raw;
    }
    buf.len = 0;
    let x = raw.parse::<f64>().unwrap_or(f64::NAN);
    if x.is_infinite() {
        buf.push_str(if x < 0.0 { "-Infinity" } else { "Infinity" });
        return buf.as_str();
    }
    if x.is_nan() {
        return raw;
    }
    if x == 0.0 {
        buf.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return buf.as_str();
    }
    // Shortest digits and exponent: `d.ddd e E`.
    let mut sci = StackText::new();
    if write!(sci, "{:e}", x.abs()).is_err() {
        return raw;
    }
    let s = sci.as_str();
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = [0u8; 32];
    let mut nd = 0;
    for b in mantissa.bytes().filter(u8::is_ascii_digit) {
        if nd < digits.len() {
            digits[nd] = b;
            nd += 1;
        }
    }
    let digits = &digits[..nd.max(1)];
    if x < 0.0 {
        buf.push(b'-');
    }
    let abs = x.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            for k in 0..int_len {
                buf.push(digits.get(k).copied().unwrap_or(b'0'));
            }
            buf.push(b'.');
            if digits.len() > int_len {
                for &d in &digits[int_len..] {
                    buf.push(d);
                }
            } else {
                buf.push(b'0');
            }
        } else {
            buf.push_str("0.");
            for _ in 0..(-exp - 1) {
                buf.push(b'0');
            }
            for &d in digits {
                buf.push(d);
            }
        }
    } else {
        buf.push(digits[0]);
        buf.push(b'.');
        if digits.len() > 1 {
            for &d in &digits[1..] {
                buf.push(d);
            }
        } else {
            buf.push(b'0');
        }
        buf.push(b'E');
        let _ = write!(buf, "{exp}");
    }
    buf.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(t: &str) -> Numeral<'_> {
        Numeral::parse(t).unwrap()
    }

    #[test]
    fn grammar() {
        for t in [
            "1", "+1000", "-5", "55.5", "1.", ".5", "1e4", "10e-3", "3.6E+3", "-.5e1",
        ] {
            assert!(Numeral::parse(t).is_some(), "{t}");
        }
        for t in [
            "", "+", ".", "e4", "1e", "1e+", "1.2.3", "0x10", "1_000", "4*", "inf", "NaN", "--1",
        ] {
            assert!(Numeral::parse(t).is_none(), "{t}");
        }
        assert!(n("1e2147483647").exponent_in_range());
        assert!(!n("1e2147483648").exponent_in_range());
        assert!(!n("1e-2147483648").exponent_in_range());
        assert!(!n("1e99999999999999999999").exponent_in_range());
    }

    #[test]
    fn exact_values() {
        assert_eq!(n("3.6e3").cmp_value(&n("3600")), Ordering::Equal);
        assert_eq!(n("+1000").cmp_value(&n("1e3")), Ordering::Equal);
        assert_eq!(n("0.0").cmp_value(&n("-0")), Ordering::Equal);
        assert_eq!(n("10e-3").cmp_value(&n("0.01")), Ordering::Equal);
        assert_eq!(
            n("12345678901234567").cmp_value(&n("12345678901234568")),
            Ordering::Less
        );
        assert_eq!(n("-2").cmp_value(&n("-10")), Ordering::Greater);
        assert_eq!(n("-2").cmp_value(&n("1")), Ordering::Less);
        assert_eq!(n("0").cmp_value(&n("2e-400")), Ordering::Less);
        assert_eq!(n("1.5").cmp_value(&n("1.50000")), Ordering::Equal);
        assert_eq!(n("1.05").cmp_value(&n("1.5")), Ordering::Less);
        assert_eq!(n("100").cmp_value(&n("99.999")), Ordering::Greater);
    }

    fn text(raw: &str) -> String {
        let mut buf = StackText::new();
        number_text(raw, &mut buf).to_owned()
    }

    #[test]
    fn number_texts() {
        assert_eq!(text("7"), "7");
        assert_eq!(text("007"), "007");
        assert_eq!(text("7.0"), "7.0");
        assert_eq!(text("7e0"), "7.0");
        assert_eq!(text("1000.00"), "1000.0");
        assert_eq!(text("0.0"), "0.0");
        assert_eq!(text("-0.0"), "-0.0");
        assert_eq!(text("0.1"), "0.1");
        assert_eq!(text("55.5"), "55.5");
        assert_eq!(text("1e21"), "1.0E21");
        assert_eq!(text("1e-5"), "1.0E-5");
        assert_eq!(text("1.5e7"), "1.5E7");
        assert_eq!(text("9999999.5"), "9999999.5");
        assert_eq!(text("0.001"), "0.001");
        assert_eq!(text("0.00012"), "1.2E-4");
        assert_eq!(text("5e400"), "Infinity");
        assert_eq!(text("-5e400"), "-Infinity");
        assert_eq!(text("2e-400"), "0.0");
        assert_eq!(text("123.456e1"), "1234.56");
    }

    #[test]
    fn event_numbers() {
        let mut buf = StackText::new();
        let EventNumber::Value(v) = event_number("2e-400", &mut buf) else {
            panic!("underflow is a value")
        };
        assert_eq!(v.cmp_value(&n("0")), Ordering::Equal);
        let mut buf = StackText::new();
        assert!(matches!(
            event_number("5e400", &mut buf),
            EventNumber::OutOfRange
        ));
        let mut buf = StackText::new();
        let EventNumber::Value(v) = event_number("0.1", &mut buf) else {
            panic!()
        };
        assert_eq!(v.cmp_value(&n("0.1")), Ordering::Equal);
        let mut buf = StackText::new();
        let EventNumber::Value(v) = event_number("123456789012345678901234567890", &mut buf) else {
            panic!()
        };
        assert_eq!(
            v.cmp_value(&n("123456789012345678901234567891")),
            Ordering::Less
        );
    }
}
