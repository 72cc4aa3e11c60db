//! `$.exp`: an ISO-8601 date and time, as Python's `datetime.isoformat()` writes it.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction][Z | ±HH:MM[:SS]]`, `T` or a space between date
//! and time, 1 to 9 fraction digits (truncated to milliseconds). A time without an offset is
//! UTC, which is what the SDK means when it sends a naive `datetime`.

use super::Error;

/// Milliseconds since the Unix epoch for an ISO-8601 date and time.
pub fn parse_expiry_ms(text: &str) -> Result<i64, Error> {
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let year = cursor.digits(4, "the year is not four digits")?;
    cursor.expect(b'-', "no '-' after the year")?;
    let month = cursor.digits(2, "the month is not two digits")?;
    cursor.expect(b'-', "no '-' after the month")?;
    let day = cursor.digits(2, "the day is not two digits")?;
    if !matches!(cursor.next(), Some(b'T' | b't' | b' ')) {
        return Err(invalid("no 'T' between date and time"));
    }
    let hour = cursor.digits(2, "the hour is not two digits")?;
    cursor.expect(b':', "no ':' after the hour")?;
    let minute = cursor.digits(2, "the minute is not two digits")?;
    cursor.expect(b':', "no ':' after the minute")?;
    let second = cursor.digits(2, "the second is not two digits")?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(invalid("the date does not exist"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(invalid("the time of day does not exist"));
    }
    let mut millis = 0;
    if cursor.peek() == Some(b'.') {
        cursor.at += 1;
        let start = cursor.at;
        while cursor.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            if cursor.at - start < 3 {
                millis = millis * 10 + i64::from(cursor.bytes[cursor.at] - b'0');
            }
            cursor.at += 1;
        }
        let fraction_digits = cursor.at - start;
        if !(1..=9).contains(&fraction_digits) {
            return Err(invalid("the fraction of a second is not 1 to 9 digits"));
        }
        for _ in fraction_digits..3 {
            millis *= 10;
        }
    }
    let offset_secs = match cursor.next() {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.digits(2, "the offset hours are not two digits")?;
            cursor.expect(b':', "no ':' in the offset")?;
            let minutes = cursor.digits(2, "the offset minutes are not two digits")?;
            let seconds = if cursor.peek() == Some(b':') {
                cursor.at += 1;
                cursor.digits(2, "the offset seconds are not two digits")?
            } else {
                0
            };
            if hours > 23 || minutes > 59 || seconds > 59 {
                return Err(invalid("the offset is out of range"));
            }
            let offset = hours * 3600 + minutes * 60 + seconds;
            if sign == b'+' { offset } else { -offset }
        }
        Some(_) => return Err(invalid("unexpected text after the time")),
    };
    if cursor.peek().is_some() {
        return Err(invalid("unexpected text after the offset"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(secs * 1000 + millis)
}

fn invalid(detail: &'static str) -> Error {
    Error::InvalidExpiry { detail }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, expected: u8, detail: &'static str) -> Result<(), Error> {
        if self.next() == Some(expected) {
            Ok(())
        } else {
            Err(invalid(detail))
        }
    }

    fn digits(&mut self, count: usize, detail: &'static str) -> Result<i64, Error> {
        let digits = self
            .bytes
            .get(self.at..self.at + count)
            .filter(|digits| digits.iter().all(u8::is_ascii_digit))
            .ok_or(invalid(detail))?;
        self.at += count;
        Ok(digits
            .iter()
            .fold(0, |value, digit| value * 10 + i64::from(digit - b'0')))
    }
}

const fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with Python's `datetime.fromisoformat`, naive times taken as UTC.
    #[test]
    fn isoformat_output_parses_to_python_s_milliseconds() {
        for (text, millis) in [
            ("2030-01-01T00:00:00+00:00", 1_893_456_000_000),
            ("2019-02-02T00:00:00", 1_549_065_600_000),
            ("2024-02-29T23:59:59.999999-05:30", 1_709_270_999_999),
            ("1969-12-31T23:59:59.5Z", -500),
            ("1970-01-01 00:00:00.123", 123),
            ("0001-01-01T00:00:00+00:00", -62_135_596_800_000),
            ("9999-12-31T23:59:59+00:00", 253_402_300_799_000),
            ("2030-01-01T00:00:00+00:00:30", 1_893_455_970_000),
        ] {
            assert_eq!(parse_expiry_ms(text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn days_from_civil_agrees_with_counting_days() {
        let mut days = 0;
        for year in 1970..2100 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), days);
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn malformed_times_are_refused_with_a_reason() {
        for text in [
            "",
            "2030",
            "2030-01-01",
            "2030-13-01T00:00:00",
            "2001-02-29T00:00:00",
            "2030-01-01T24:00:00",
            "2030-01-01T00:00:00.",
            "2030-01-01T00:00:00.1234567890",
            "2030-01-01T00:00:00+0000",
            "2030-01-01T00:00:00+00:00x",
            "2030-01-01T00:00:00 UTC",
            "2030-01-01T00:00",
            "२०३०-01-01T00:00:00",
        ] {
            assert!(
                matches!(parse_expiry_ms(text), Err(Error::InvalidExpiry { .. })),
                "{text:?}"
            );
        }
    }
}
