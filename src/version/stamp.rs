//! Time stamps that make pre-release versions sort in time order.
//!
//! duat's current encoding (base 25 over the alphabet a–z without `l`, of the
//! Unix seconds as an 8-byte big-endian integer, one leading `a` per leading
//! zero byte) is 11 characters between 1977 and 2106 and sorts as ASCII in
//! time order, so versions made by sgr and by duat interleave correctly. The
//! older base62 form (tags made before April 2019) is decoded too.

use std::fmt;

use thiserror::Error;

/// The 25 symbols of duat's "base24" encoding, in ascending ASCII order.
pub const BASE25_ALPHABET: &[u8; 25] = b"abcdefghijkmnopqrstuvwxyz";
/// The 62 symbols of duat's first encoding, in ascending ASCII order.
pub const BASE62_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which of duat's stamp encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// duat's current encoding (April 2019 on): lower-case base 25, 11 characters.
    Base25,
    /// duat's first encoding: base 62, 6 characters.
    Base62,
}

impl fmt::Display for Encoding {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Base25 => "base25",
            Self::Base62 => "base62",
        })
    }
}

/// A stamp that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StampError {
    /// A character outside the encoding's alphabet.
    #[error("stamp '{stamp}' has '{character}', which is not a {encoding} digit")]
    BadCharacter {
        /// The stamp as given.
        stamp: String,
        /// The offending character.
        character: char,
        /// The encoding tried.
        encoding: Encoding,
    },
    /// The value does not fit in 64 bits of seconds.
    #[error("stamp '{stamp}' is too large to be a time")]
    Overflow {
        /// The stamp as given.
        stamp: String,
    },
    /// Nothing to decode.
    #[error("the stamp is empty")]
    Empty,
}

/// Encode Unix seconds in duat's current base-25 form.
///
/// ```
/// assert_eq!(sgr::version::stamp::encode_base25(1_548_443_444), "aaaagipajnu");
/// ```
#[must_use]
pub fn encode_base25(seconds: u64) -> String {
    let leading_zero_bytes = seconds
        .to_be_bytes()
        .iter()
        .take_while(|byte| **byte == 0)
        .count()
        .min(7);
    let mut digits = Vec::new();
    let mut rest = seconds;
    while rest > 0 {
        digits.push(BASE25_ALPHABET[(rest % 25) as usize]);
        rest /= 25;
    }
    if digits.is_empty() {
        digits.push(BASE25_ALPHABET[0]);
    }
    let mut stamp = "a".repeat(leading_zero_bytes);
    stamp.extend(digits.iter().rev().map(|byte| char::from(*byte)));
    stamp
}

/// Encode Unix seconds in duat's first base-62 form (0 is the empty string).
#[must_use]
pub fn encode_base62(seconds: u64) -> String {
    let mut digits = Vec::new();
    let mut rest = seconds;
    while rest > 0 {
        digits.push(BASE62_ALPHABET[(rest % 62) as usize]);
        rest /= 62;
    }
    digits.iter().rev().map(|byte| char::from(*byte)).collect()
}

/// Decode a stamp in the given encoding to Unix seconds.
///
/// # Errors
/// A character outside the alphabet, or a value past `u64::MAX`.
pub fn decode(stamp: &str, encoding: Encoding) -> Result<u64, StampError> {
    let (alphabet, base): (&[u8], u64) = match encoding {
        Encoding::Base25 => (BASE25_ALPHABET, 25),
        Encoding::Base62 => (BASE62_ALPHABET, 62),
    };
    stamp.chars().try_fold(0_u64, |value, character| {
        let digit = u8::try_from(character)
            .ok()
            .and_then(|byte| alphabet.iter().position(|symbol| *symbol == byte))
            .ok_or_else(|| StampError::BadCharacter {
                stamp: stamp.to_owned(),
                character,
                encoding,
            })?;
        value
            .checked_mul(base)
            .and_then(|value| value.checked_add(digit as u64))
            .ok_or_else(|| StampError::Overflow {
                stamp: stamp.to_owned(),
            })
    })
}

/// Tell the encoding of a stamp: base 25 when every character is a base-25
/// digit and it starts with `a` (every base-25 stamp since 1977 does), base
/// 62 otherwise (every base-62 stamp since 1999 starts with a digit).
///
/// # Errors
/// An empty stamp.
pub fn detect(stamp: &str) -> Result<Encoding, StampError> {
    if stamp.is_empty() {
        return Err(StampError::Empty);
    }
    let all_base25 = stamp.bytes().all(|byte| BASE25_ALPHABET.contains(&byte));
    if all_base25 && stamp.starts_with('a') {
        Ok(Encoding::Base25)
    } else {
        Ok(Encoding::Base62)
    }
}

/// The stamp of a full pre-release version (`0.9.9-feature-x-aaaagipajnu`):
/// the text after the last `-` of its pre-release, or the text itself when it
/// has no `-`.
#[must_use]
pub fn stamp_of(text: &str) -> &str {
    let without_build = text.split_once('+').map_or(text, |(head, _)| head);
    without_build
        .rsplit_once('-')
        .map_or(without_build, |(_, stamp)| stamp)
}

/// Format Unix seconds as an RFC 3339 UTC time (`2019-01-25T19:10:44Z`).
#[must_use]
pub fn format_utc(seconds: u64) -> String {
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
const fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (UTC time, seconds, base62, base25) from the reference's worked examples.
    const VECTORS: &[(&str, u64, &str, &str)] = &[
        ("1970-01-01T00:00:00Z", 0, "", "aaaaaaaa"),
        ("1970-01-01T00:00:01Z", 1, "1", "aaaaaaab"),
        ("2000-01-01T00:00:00Z", 946_684_800, "124Bxg", "aaaadwynvsa"),
        (
            "2018-09-20T19:55:28Z",
            1_537_473_328,
            "1g352u",
            "aaaaghkyhid",
        ),
        (
            "2019-01-25T19:10:44Z",
            1_548_443_444,
            "1gn6sG",
            "aaaagipajnu",
        ),
        (
            "2019-01-25T19:10:45Z",
            1_548_443_445,
            "1gn6sH",
            "aaaagipajnv",
        ),
        (
            "2019-01-25T19:11:08Z",
            1_548_443_468,
            "1gn6se",
            "aaaagipajot",
        ),
        (
            "2019-01-25T19:11:09Z",
            1_548_443_469,
            "1gn6sf",
            "aaaagipajou",
        ),
        (
            "2019-04-22T23:11:07Z",
            1_555_974_667,
            "1hIi5b",
            "aaaagjihjms",
        ),
        (
            "2021-09-28T01:51:00Z",
            1_632_793_860,
            "1mV2Gq",
            "aaaagseyvek",
        ),
        (
            "2024-01-01T00:00:00Z",
            1_704_067_200,
            "1rK5iq",
            "aaaagznkhoa",
        ),
        (
            "2038-01-19T03:14:07Z",
            2_147_483_647,
            "2LKcb1",
            "aaaaiuxoyvx",
        ),
        (
            "2038-01-19T03:14:08Z",
            2_147_483_648,
            "2LKcb2",
            "aaaaiuxoyvy",
        ),
        (
            "2106-02-07T06:28:15Z",
            4_294_967_295,
            "4gfFC3",
            "aaaaspvcxrv",
        ),
        (
            "2106-02-07T06:28:16Z",
            4_294_967_296,
            "4gfFC4",
            "aaaspvcxrw",
        ),
    ];

    #[test]
    fn reference_vectors_both_ways() {
        for (utc, seconds, base62, base25) in VECTORS {
            assert_eq!(encode_base25(*seconds), *base25, "{utc}");
            assert_eq!(encode_base62(*seconds), *base62, "{utc}");
            assert_eq!(decode(base25, Encoding::Base25), Ok(*seconds), "{utc}");
            assert_eq!(decode(base62, Encoding::Base62), Ok(*seconds), "{utc}");
            assert_eq!(format_utc(*seconds), *utc);
            if !base62.is_empty() {
                assert_eq!(detect(base62), Ok(Encoding::Base62), "{base62}");
            }
            assert_eq!(detect(base25), Ok(Encoding::Base25), "{base25}");
        }
    }

    #[test]
    fn real_stamps_decode_to_their_commit_times() {
        for (version, utc) in [
            (
                "0.7.1-feature-35-travis-and-git-1fGphq",
                "2018-05-10T17:50:18Z",
            ),
            (
                "0.9.4-feature-63-errors-migration-1h0WE0",
                "2019-03-03T18:52:36Z",
            ),
            ("0.16.1-main-aaaagtqpddd", "2022-03-08T02:04:38Z"),
            (
                "0.16.1-feature-131-go-1-18-aaaagujtdmk",
                "2022-06-02T17:07:40Z",
            ),
            ("0.14.3-main-aaaagseyvek", "2021-09-28T01:51:00Z"),
            (
                "0.9.14-feature-212-kops-1-11-aaaagjhioon",
                "2019-04-18T15:43:32Z",
            ),
        ] {
            let stamp = stamp_of(version);
            let decoded = detect(stamp).and_then(|encoding| decode(stamp, encoding));
            assert_eq!(decoded.map(format_utc), Ok(utc.to_owned()), "{version}");
        }
    }

    #[test]
    fn the_missing_l_shows_in_consecutive_seconds() {
        let stamps: Vec<String> = (0..27)
            .map(|offset| encode_base25(1_548_443_444 + offset))
            .collect();
        assert_eq!(stamps[6], "aaaagipajoa");
        assert_eq!(stamps[15], "aaaagipajoj");
        assert_eq!(stamps[16], "aaaagipajok");
        assert_eq!(stamps[17], "aaaagipajom");
        assert_eq!(stamps[26], "aaaagipajov");
        assert!(stamps.iter().all(|stamp| !stamp.contains('l')));
    }

    #[test]
    fn bad_stamps_are_named() {
        assert_eq!(
            decode("aaaagipajnl", Encoding::Base25),
            Err(StampError::BadCharacter {
                stamp: "aaaagipajnl".to_owned(),
                character: 'l',
                encoding: Encoding::Base25
            })
        );
        assert_eq!(
            decode("zzzzzzzzzzzzzzzzzzzz", Encoding::Base25),
            Err(StampError::Overflow {
                stamp: "zzzzzzzzzzzzzzzzzzzz".to_owned()
            })
        );
        assert_eq!(detect(""), Err(StampError::Empty));
        assert!(decode("1gn6s!", Encoding::Base62).is_err());
    }

    #[test]
    fn stamp_of_takes_the_last_field() {
        assert_eq!(stamp_of("1.0.0-main-aaaagipajnu+build"), "aaaagipajnu");
        assert_eq!(stamp_of("aaaagipajnu"), "aaaagipajnu");
    }

    proptest! {
        #[test]
        fn base25_order_is_time_order(a in 476_837_158_u64..4_294_967_296, b in 476_837_158_u64..4_294_967_296) {
            // 25^6 (1977-09-26T16:50:25Z) to 2^32: the window where every stamp is 11 characters.
            prop_assert_eq!(encode_base25(a).cmp(&encode_base25(b)), a.cmp(&b));
        }

        #[test]
        fn base62_order_is_time_order(a in 916_132_832_u64..56_800_235_584, b in 916_132_832_u64..56_800_235_584) {
            // 62^5 to 62^6: six characters.
            prop_assert_eq!(encode_base62(a).cmp(&encode_base62(b)), a.cmp(&b));
        }

        #[test]
        fn both_encodings_round_trip(seconds in any::<u64>()) {
            prop_assert_eq!(decode(&encode_base25(seconds), Encoding::Base25), Ok(seconds));
            prop_assert_eq!(decode(&encode_base62(seconds), Encoding::Base62), Ok(seconds));
        }

        #[test]
        fn pre_release_versions_sort_in_time_order(a in 476_837_158_u64..4_294_967_296, b in 476_837_158_u64..4_294_967_296) {
            let version = |seconds: u64| semver::Version::parse(&format!("0.9.9-feature-197-hybrid-{}", encode_base25(seconds)));
            let (Ok(first), Ok(second)) = (version(a), version(b)) else { return Err(TestCaseError::fail("invalid version")) };
            prop_assert_eq!(first.cmp_precedence(&second), a.cmp(&b));
        }
    }
}
