//! Go's `fmt.Sprintf` (Go 1.19's fmt and strconv, ported) for the dialect's
//! values, so that `printf` in duat's templates prints what Go printed:
//! every verb, flag, width, precision and `%[n]` index, and Go's own error
//! forms (`%!d(string=hi)`, `%!d(MISSING)`, `%!(EXTRA int=1)`, …) instead of
//! a failed render. The structure follows Go's `pp`/`fmt` types function by
//! function so that the two can be compared line by line; the differential
//! test in tests/it/stencil.rs renders a generated corpus with both.
//!
//! Values are what Go's text/template hands `fmt`: `int` (number literals),
//! `float64` (every number in the data), `string`, `bool`, nil, and
//! `[]interface {}` / `map[string]interface {}` from the data.

use std::fmt::Write as _;

use super::printable::is_print;
use super::value::Value;

/// The largest width or precision Go accepts (`fmt.tooLarge`).
const TOO_LARGE: i64 = 1_000_000;
const LOWER_DIGITS: &[u8; 17] = b"0123456789abcdefx";
const UPPER_DIGITS: &[u8; 17] = b"0123456789ABCDEFX";
const MAX_RUNE: u64 = 0x0010_FFFF;
const REPLACEMENT: char = '\u{FFFD}';

/// Go's `fmt.Sprintf(format, arguments...)`.
#[must_use]
pub fn sprintf(format: &str, arguments: &[Value]) -> String {
    let mut printer = Printer::default();
    printer.print_formatted(format, arguments);
    printer.output
}

/// Go's `strconv.Quote`.
#[must_use]
pub fn quote(text: &str) -> String {
    let mut output = String::with_capacity(text.len() + 2);
    append_quoted(&mut output, text, '"', false);
    output
}

/// Go's `strconv.FormatFloat(number, format, precision, 64)` for the formats
/// `b e E f g G x X` (a negative precision means the shortest exact form).
#[must_use]
pub fn format_float(number: f64, format: u8, precision: i64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let negative = number.is_sign_negative();
    let mut output = String::new();
    match format {
        b'b' => format_binary_exponent(&mut output, number),
        b'x' | b'X' => format_hexadecimal(&mut output, number, precision, format),
        b'f' if precision >= 0 => {
            if negative {
                output.push('-');
            }
            let places = usize::try_from(precision).unwrap_or(0);
            let _ = write!(output, "{:.places$}", number.abs());
        }
        _ => {
            let shortest = precision < 0;
            let mut precision = precision;
            let digits = if shortest {
                let digits = Digits::shortest(number);
                precision = match format {
                    b'e' | b'E' => digits.count().saturating_sub(1),
                    b'f' => (digits.count() - digits.point).max(0),
                    _ => digits.count(),
                };
                digits
            } else {
                match format {
                    b'e' | b'E' => Digits::significant(number, precision + 1),
                    _ => {
                        if precision == 0 {
                            precision = 1;
                        }
                        Digits::significant(number, precision)
                    }
                }
            };
            format_digits(&mut output, shortest, negative, &digits, precision, format);
        }
    }
    output
}

/// Decimal digits without trailing zeros and the position of the decimal
/// point (strconv's `decimalSlice`): 0.0123 is ("123", -1); zero has no digits.
struct Digits {
    digits: Vec<u8>,
    point: i64,
}

impl Digits {
    fn count(&self) -> i64 {
        i64::try_from(self.digits.len()).unwrap_or(i64::MAX)
    }

    fn digit(&self, index: i64) -> Option<u8> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.digits.get(index).copied())
    }

    /// Parse Rust's `{:e}` output ("1.2345e-3").
    fn from_scientific(text: &str) -> Self {
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
        let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Self { digits, point: 0 };
        }
        Self {
            digits,
            point: exponent.parse::<i64>().unwrap_or(0) + 1,
        }
    }

    /// The shortest digits that read back as `number` (Rust's and Go's
    /// shortest forms agree: both pick the closest of the shortest).
    fn shortest(number: f64) -> Self {
        Self::from_scientific(&format!("{:e}", number.abs()))
    }

    /// `number` correctly rounded (ties to even) to `count` significant digits.
    fn significant(number: f64, count: i64) -> Self {
        let places = usize::try_from(count.saturating_sub(1)).unwrap_or(0);
        Self::from_scientific(&format!("{:.places$e}", number.abs()))
    }
}

/// strconv's `formatDigits` for `e E f g G`.
fn format_digits(
    output: &mut String,
    shortest: bool,
    negative: bool,
    digits: &Digits,
    precision: i64,
    format: u8,
) {
    match format {
        b'e' | b'E' => format_exponent(output, negative, digits, precision, format),
        b'f' => format_fixed(output, negative, digits, precision),
        _ => {
            let mut precision = precision;
            let mut exponent_precision = precision;
            if exponent_precision > digits.count() && digits.count() >= digits.point {
                exponent_precision = digits.count();
            }
            if shortest {
                exponent_precision = 6;
            }
            let exponent = digits.point - 1;
            if exponent < -4 || exponent >= exponent_precision {
                if precision > digits.count() {
                    precision = digits.count();
                }
                let letter = if format == b'G' { b'E' } else { b'e' };
                format_exponent(output, negative, digits, precision - 1, letter);
            } else {
                if precision > digits.point {
                    precision = digits.count();
                }
                format_fixed(output, negative, digits, (precision - digits.point).max(0));
            }
        }
    }
}

/// strconv's `fmtE`: `-d.ddddde±dd`.
fn format_exponent(
    output: &mut String,
    negative: bool,
    digits: &Digits,
    precision: i64,
    letter: u8,
) {
    if negative {
        output.push('-');
    }
    output.push(char::from(digits.digit(0).unwrap_or(b'0')));
    if precision > 0 {
        output.push('.');
        for index in 1..=precision {
            output.push(char::from(digits.digit(index).unwrap_or(b'0')));
        }
    }
    output.push(char::from(letter));
    let exponent = if digits.digits.is_empty() {
        0
    } else {
        digits.point - 1
    };
    output.push(if exponent < 0 { '-' } else { '+' });
    let _ = write!(output, "{:02}", exponent.abs());
}

/// strconv's `fmtF`: `-ddddd.ddd`.
fn format_fixed(output: &mut String, negative: bool, digits: &Digits, precision: i64) {
    if negative {
        output.push('-');
    }
    if digits.point > 0 {
        for index in 0..digits.point {
            output.push(char::from(digits.digit(index).unwrap_or(b'0')));
        }
    } else {
        output.push('0');
    }
    if precision > 0 {
        output.push('.');
        for index in 0..precision {
            output.push(char::from(
                digits.digit(digits.point + index).unwrap_or(b'0'),
            ));
        }
    }
}

/// A float64's mantissa (with the implicit bit) and binary exponent, as
/// strconv's `genericFtoa` unpacks them.
fn unpack(number: f64) -> (u64, i64) {
    let bits = number.to_bits();
    let mut exponent = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let mut mantissa = bits & ((1_u64 << 52) - 1);
    if exponent == 0 {
        exponent += 1;
    } else {
        mantissa |= 1_u64 << 52;
    }
    (mantissa, exponent - 1023)
}

/// strconv's `fmtB`: `-ddddp±ddd`.
fn format_binary_exponent(output: &mut String, number: f64) {
    let (mantissa, exponent) = unpack(number);
    if number.is_sign_negative() {
        output.push('-');
    }
    let exponent = exponent - 52;
    let _ = write!(output, "{mantissa}p");
    if exponent >= 0 {
        output.push('+');
    }
    let _ = write!(output, "{exponent}");
}

/// strconv's `fmtX`: `-0x1.yyyyp±dd`.
fn format_hexadecimal(output: &mut String, number: f64, precision: i64, format: u8) {
    let (mut mantissa, mut exponent) = unpack(number);
    if mantissa == 0 {
        exponent = 0;
    }
    mantissa <<= 60 - 52;
    while mantissa != 0 && mantissa & (1 << 60) == 0 {
        mantissa <<= 1;
        exponent -= 1;
    }
    if (0..15).contains(&precision) {
        let shift = u32::try_from(precision * 4).unwrap_or(0);
        let extra = (mantissa << shift) & ((1 << 60) - 1);
        mantissa >>= 60 - shift;
        if extra | (mantissa & 1) > 1 << 59 {
            mantissa += 1;
        }
        mantissa <<= 60 - shift;
        if mantissa & (1 << 61) != 0 {
            mantissa >>= 1;
            exponent += 1;
        }
    }
    let hex = if format == b'X' {
        UPPER_DIGITS
    } else {
        LOWER_DIGITS
    };
    if number.is_sign_negative() {
        output.push('-');
    }
    output.push('0');
    output.push(char::from(format));
    output.push(if (mantissa >> 60) & 1 == 1 { '1' } else { '0' });
    mantissa <<= 4;
    let nibble =
        |mantissa: u64| char::from(hex[usize::try_from((mantissa >> 60) & 15).unwrap_or(0)]);
    if precision < 0 && mantissa != 0 {
        output.push('.');
        while mantissa != 0 {
            output.push(nibble(mantissa));
            mantissa <<= 4;
        }
    } else if precision > 0 {
        output.push('.');
        for _ in 0..precision {
            output.push(nibble(mantissa));
            mantissa <<= 4;
        }
    }
    output.push(if format == b'X' { 'P' } else { 'p' });
    output.push(if exponent < 0 { '-' } else { '+' });
    let _ = write!(output, "{:02}", exponent.abs());
}

/// strconv's `appendEscapedRune`.
fn append_escaped(output: &mut String, character: char, quote: char, ascii_only: bool) {
    if character == quote || character == '\\' {
        output.push('\\');
        output.push(character);
        return;
    }
    let code_point = u32::from(character);
    if ascii_only {
        if character.is_ascii() && is_print(code_point) {
            output.push(character);
            return;
        }
    } else if is_print(code_point) {
        output.push(character);
        return;
    }
    match character {
        '\u{7}' => output.push_str("\\a"),
        '\u{8}' => output.push_str("\\b"),
        '\u{c}' => output.push_str("\\f"),
        '\n' => output.push_str("\\n"),
        '\r' => output.push_str("\\r"),
        '\t' => output.push_str("\\t"),
        '\u{b}' => output.push_str("\\v"),
        _ if code_point < 0x20 || code_point == 0x7f => {
            let _ = write!(output, "\\x{code_point:02x}");
        }
        _ if code_point < 0x10000 => {
            let _ = write!(output, "\\u{code_point:04x}");
        }
        _ => {
            let _ = write!(output, "\\U{code_point:08x}");
        }
    }
}

/// strconv's `appendQuotedWith` (a Rust string is valid UTF-8, so there are
/// no undecodable bytes to print as `\x`).
fn append_quoted(output: &mut String, text: &str, quote: char, ascii_only: bool) {
    output.push(quote);
    for character in text.chars() {
        append_escaped(output, character, quote, ascii_only);
    }
    output.push(quote);
}

/// strconv's `CanBackquote`.
fn can_backquote(text: &str) -> bool {
    text.chars().all(|character| {
        if character.len_utf8() > 1 {
            return character != '\u{feff}';
        }
        !((character < ' ' && character != '\t') || character == '`' || character == '\u{7f}')
    })
}

/// A code point as Go's `rune(c)` after the `c > utf8.MaxRune` check, then
/// as `utf8.EncodeRune` writes it (surrogates become U+FFFD).
fn rune_of(code: u64) -> char {
    if code > MAX_RUNE {
        return REPLACEMENT;
    }
    u32::try_from(code)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or(REPLACEMENT)
}

/// The flags of one verb (fmt's `fmtFlags`).
#[derive(Clone, Copy, Debug, Default)]
#[allow(clippy::struct_excessive_bools)]
struct Flags {
    width_present: bool,
    precision_present: bool,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
}

/// fmt's `pp` and `fmt` in one: the output, the current verb's flags, width
/// and precision, and the state of the argument list.
#[derive(Debug, Default)]
struct Printer {
    output: String,
    flags: Flags,
    width: i64,
    precision: i64,
    reordered: bool,
    good_argument_number: bool,
}

/// Go's `parsenum`: a decimal number at `start`, false when there is none;
/// an absurdly long one consumes the rest of the format.
fn parse_number(format: &[u8], start: usize, end: usize) -> (i64, bool, usize) {
    if start >= end {
        return (0, false, end);
    }
    let mut number: i64 = 0;
    let mut found = false;
    let mut index = start;
    while index < end && format[index].is_ascii_digit() {
        if number > TOO_LARGE {
            return (0, false, end);
        }
        number = number * 10 + i64::from(format[index] - b'0');
        found = true;
        index += 1;
    }
    (number, found, index)
}

/// Go's `parseArgNumber`: the zero-based index in `[n]` at the start of
/// `format`, the bytes to consume, and whether it parsed.
fn parse_argument_number(format: &[u8]) -> (i64, usize, bool) {
    if format.len() < 3 {
        return (0, 1, false);
    }
    for index in 1..format.len() {
        if format[index] == b']' {
            let (width, found, next) = parse_number(format, 1, index);
            if !found || next != index {
                return (0, index + 1, false);
            }
            return (width - 1, index + 1, true);
        }
    }
    (0, 1, false)
}

/// Go's `intFromArg`: the argument at `index` as a width or precision.
fn int_from_argument(arguments: &[Value], index: usize) -> (i64, bool, usize) {
    let Some(argument) = arguments.get(index) else {
        return (0, false, index);
    };
    match argument {
        Value::Int(number) if (-TOO_LARGE..=TOO_LARGE).contains(number) => {
            (*number, true, index + 1)
        }
        _ => (0, false, index + 1),
    }
}

impl Printer {
    fn clear_flags(&mut self) {
        self.flags = Flags::default();
    }

    fn write_padding(&mut self, count: i64) {
        if count <= 0 {
            return;
        }
        let byte = if self.flags.zero { '0' } else { ' ' };
        for _ in 0..count {
            self.output.push(byte);
        }
    }

    /// fmt's `pad`/`padString`: the width counts characters.
    fn pad(&mut self, text: &str) {
        if !self.flags.width_present || self.width == 0 {
            self.output.push_str(text);
            return;
        }
        let count = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
        let padding = self.width.saturating_sub(count);
        if self.flags.minus {
            self.output.push_str(text);
            self.write_padding(padding);
        } else {
            self.write_padding(padding);
            self.output.push_str(text);
        }
    }

    /// `pad` with zero padding switched off (numbers that did their own).
    fn pad_with_spaces(&mut self, text: &str) {
        let zero = self.flags.zero;
        self.flags.zero = false;
        self.pad(text);
        self.flags.zero = zero;
    }

    fn truncate<'text>(&self, text: &'text str) -> &'text str {
        if self.flags.precision_present {
            let limit = usize::try_from(self.precision).unwrap_or(0);
            if let Some((index, _)) = text.char_indices().nth(limit) {
                return &text[..index];
            }
        }
        text
    }

    fn format_boolean(&mut self, value: bool) {
        self.pad(if value { "true" } else { "false" });
    }

    /// fmt's `fmtUnicode`: `U+0078`, with `#` also `U+0078 'x'`.
    fn format_unicode(&mut self, code: u64) {
        let mut precision = 4;
        if self.flags.precision_present && self.precision > 4 {
            precision = usize::try_from(self.precision).unwrap_or(4);
        }
        let mut text = format!("U+{code:0precision$X}");
        if self.flags.sharp && code <= MAX_RUNE && is_print(u32::try_from(code).unwrap_or(0)) {
            let _ = write!(text, " '{}'", rune_of(code));
        }
        self.pad_with_spaces(&text);
    }

    /// fmt's `fmtInteger`.
    fn format_integer(&mut self, value: u64, base: u32, signed: bool, verb: char, upper: bool) {
        // Reinterpreting the bits is what Go does with uint64(int64).
        #[allow(clippy::cast_possible_wrap)]
        let negative = signed && (value as i64) < 0;
        let magnitude = if negative {
            value.wrapping_neg()
        } else {
            value
        };
        let mut precision: i64 = 0;
        if self.flags.precision_present {
            precision = self.precision;
            if precision == 0 && magnitude == 0 {
                let zero = self.flags.zero;
                self.flags.zero = false;
                self.write_padding(self.width);
                self.flags.zero = zero;
                return;
            }
        } else if self.flags.zero && self.flags.width_present {
            precision = self.width;
            if negative || self.flags.plus || self.flags.space {
                precision -= 1;
            }
        }
        let digits = if upper { UPPER_DIGITS } else { LOWER_DIGITS };
        let mut buffer: Vec<u8> = Vec::new();
        let mut rest = magnitude;
        let base64 = u64::from(base);
        loop {
            buffer.push(digits[usize::try_from(rest % base64).unwrap_or(0)]);
            rest /= base64;
            if rest == 0 {
                break;
            }
        }
        while i64::try_from(buffer.len()).unwrap_or(i64::MAX) < precision {
            buffer.push(b'0');
        }
        // buffer holds the digits reversed; prefixes are pushed reversed too.
        if self.flags.sharp {
            match base {
                2 => buffer.extend_from_slice(b"b0"),
                8 if buffer.last() != Some(&b'0') => buffer.push(b'0'),
                16 => {
                    buffer.push(digits[16]);
                    buffer.push(b'0');
                }
                _ => {}
            }
        }
        if verb == 'O' {
            buffer.extend_from_slice(b"o0");
        }
        if negative {
            buffer.push(b'-');
        } else if self.flags.plus {
            buffer.push(b'+');
        } else if self.flags.space {
            buffer.push(b' ');
        }
        buffer.reverse();
        let text = String::from_utf8_lossy(&buffer).into_owned();
        self.pad_with_spaces(&text);
    }

    fn format_string_plain(&mut self, text: &str) {
        let text = self.truncate(text);
        self.pad(text);
    }

    /// fmt's `fmtSbx` for a string: hexadecimal bytes.
    fn format_string_hex(&mut self, text: &str, upper: bool) {
        let digits = if upper { UPPER_DIGITS } else { LOWER_DIGITS };
        let bytes = text.as_bytes();
        let mut length = bytes.len();
        if self.flags.precision_present {
            length = length.min(usize::try_from(self.precision).unwrap_or(0));
        }
        let mut width = 2 * length;
        if width > 0 {
            if self.flags.space {
                if self.flags.sharp {
                    width *= 2;
                }
                width += length - 1;
            } else if self.flags.sharp {
                width += 2;
            }
        } else {
            if self.flags.width_present {
                self.write_padding(self.width);
            }
            return;
        }
        let width = i64::try_from(width).unwrap_or(i64::MAX);
        if self.flags.width_present && self.width > width && !self.flags.minus {
            self.write_padding(self.width - width);
        }
        if self.flags.sharp {
            self.output.push('0');
            self.output.push(char::from(digits[16]));
        }
        for (index, byte) in bytes[..length].iter().enumerate() {
            if self.flags.space && index > 0 {
                self.output.push(' ');
                if self.flags.sharp {
                    self.output.push('0');
                    self.output.push(char::from(digits[16]));
                }
            }
            self.output.push(char::from(digits[usize::from(byte >> 4)]));
            self.output
                .push(char::from(digits[usize::from(byte & 0xf)]));
        }
        if self.flags.width_present && self.width > width && self.flags.minus {
            self.write_padding(self.width - width);
        }
    }

    /// fmt's `fmtQ`.
    fn format_quoted(&mut self, text: &str) {
        let text = self.truncate(text);
        if self.flags.sharp && can_backquote(text) {
            self.pad(&format!("`{text}`"));
            return;
        }
        let mut quoted = String::with_capacity(text.len() + 2);
        append_quoted(&mut quoted, text, '"', self.flags.plus);
        self.pad(&quoted);
    }

    /// fmt's `fmtC`.
    fn format_character(&mut self, code: u64) {
        self.pad(rune_of(code).encode_utf8(&mut [0; 4]));
    }

    /// fmt's `fmtQc`.
    fn format_quoted_character(&mut self, code: u64) {
        let mut quoted = String::new();
        quoted.push('\'');
        append_escaped(&mut quoted, rune_of(code), '\'', self.flags.plus);
        quoted.push('\'');
        self.pad(&quoted);
    }

    /// fmt's `fmtFloat`.
    fn format_float(&mut self, value: f64, verb: u8, precision: i64) {
        let precision = if self.flags.precision_present {
            self.precision
        } else {
            precision
        };
        let formatted = format_float(value, verb, precision);
        let mut number: Vec<u8> = if formatted.starts_with(['-', '+']) {
            formatted.into_bytes()
        } else {
            let mut signed = vec![b'+'];
            signed.extend_from_slice(formatted.as_bytes());
            signed
        };
        if self.flags.space && number[0] == b'+' && !self.flags.plus {
            number[0] = b' ';
        }
        if number[1] == b'I' || number[1] == b'N' {
            let mut start = 0;
            if number[1] == b'N' && !self.flags.space && !self.flags.plus {
                start = 1;
            }
            let text = String::from_utf8_lossy(&number[start..]).into_owned();
            self.pad_with_spaces(&text);
            return;
        }
        if self.flags.sharp && verb != b'b' {
            let mut digits = match verb {
                b'v' | b'g' | b'G' | b'x' => {
                    if precision == -1 {
                        6
                    } else {
                        precision
                    }
                }
                _ => 0,
            };
            let mut tail: Vec<u8> = Vec::new();
            let mut has_point = false;
            let mut seen_nonzero = false;
            let mut index = 1;
            while index < number.len() {
                match number[index] {
                    b'.' => has_point = true,
                    b'p' | b'P' => {
                        tail.extend_from_slice(&number[index..]);
                        number.truncate(index);
                    }
                    b'e' | b'E' if verb != b'x' && verb != b'X' => {
                        tail.extend_from_slice(&number[index..]);
                        number.truncate(index);
                    }
                    byte => {
                        if byte != b'0' {
                            seen_nonzero = true;
                        }
                        if seen_nonzero {
                            digits -= 1;
                        }
                    }
                }
                index += 1;
            }
            if !has_point {
                if number.len() == 2 && number[1] == b'0' {
                    digits -= 1;
                }
                number.push(b'.');
            }
            while digits > 0 {
                number.push(b'0');
                digits -= 1;
            }
            number.extend_from_slice(&tail);
        }
        let text = String::from_utf8_lossy(&number).into_owned();
        if self.flags.plus || number[0] != b'+' {
            let length = i64::try_from(number.len()).unwrap_or(i64::MAX);
            if self.flags.zero && self.flags.width_present && self.width > length {
                self.output.push(char::from(number[0]));
                self.write_padding(self.width - length);
                self.output.push_str(&text[1..]);
                return;
            }
            self.pad(&text);
            return;
        }
        self.pad(&text[1..]);
    }

    /// pp's `badVerb`.
    fn bad_verb(&mut self, verb: char, argument: &Value) {
        self.output.push_str("%!");
        self.output.push(verb);
        self.output.push('(');
        if matches!(argument, Value::Nil) {
            self.output.push_str("<nil>");
        } else {
            self.output.push_str(argument.type_name());
            self.output.push('=');
            self.print_argument(argument, 'v');
        }
        self.output.push(')');
    }

    fn print_boolean(&mut self, value: bool, verb: char, argument: &Value) {
        match verb {
            't' | 'v' => self.format_boolean(value),
            _ => self.bad_verb(verb, argument),
        }
    }

    /// pp's `fmtInteger` for a signed `int`.
    fn print_integer(&mut self, value: i64, verb: char, argument: &Value) {
        // Go formats the two's-complement bits of the int as a uint64.
        #[allow(clippy::cast_sign_loss)]
        let bits = value as u64;
        match verb {
            'v' | 'd' => self.format_integer(bits, 10, true, verb, false),
            'b' => self.format_integer(bits, 2, true, verb, false),
            'o' | 'O' => self.format_integer(bits, 8, true, verb, false),
            'x' => self.format_integer(bits, 16, true, verb, false),
            'X' => self.format_integer(bits, 16, true, verb, true),
            'c' => self.format_character(bits),
            'q' => self.format_quoted_character(bits),
            'U' => self.format_unicode(bits),
            _ => self.bad_verb(verb, argument),
        }
    }

    /// pp's `fmtFloat`.
    fn print_float(&mut self, value: f64, verb: char, argument: &Value) {
        match verb {
            'v' => self.format_float(value, b'g', -1),
            'b' | 'g' | 'G' | 'x' | 'X' => {
                self.format_float(value, u8::try_from(verb).unwrap_or(b'g'), -1);
            }
            'f' | 'e' | 'E' => self.format_float(value, u8::try_from(verb).unwrap_or(b'f'), 6),
            'F' => self.format_float(value, b'f', 6),
            _ => self.bad_verb(verb, argument),
        }
    }

    /// pp's `fmtString`.
    fn print_string(&mut self, text: &str, verb: char, argument: &Value) {
        match verb {
            'v' if self.flags.sharp_v => self.format_quoted(text),
            'v' | 's' => self.format_string_plain(text),
            'x' => self.format_string_hex(text, false),
            'X' => self.format_string_hex(text, true),
            'q' => self.format_quoted(text),
            _ => self.bad_verb(verb, argument),
        }
    }

    /// pp's `printArg`.
    fn print_argument(&mut self, argument: &Value, verb: char) {
        if matches!(argument, Value::Nil) {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(verb, argument),
            }
            return;
        }
        match verb {
            'T' => {
                self.format_string_plain(argument.type_name());
                return;
            }
            // Go prints the address of a list or map: nothing a template
            // can reproduce, so every %p is refused the way Go refuses a
            // %p of a number.
            'p' => {
                self.bad_verb(verb, argument);
                return;
            }
            _ => {}
        }
        self.print_value(argument, verb, 0);
    }

    /// pp's `printValue` (depth > 0 inside lists and maps).
    fn print_value(&mut self, value: &Value, verb: char, depth: usize) {
        match value {
            Value::Nil => {
                // An element holding nil: an interface{} with nothing in it.
                if self.flags.sharp_v {
                    self.output.push_str("interface {}(nil)");
                } else if depth == 0 {
                    self.print_argument(value, verb);
                } else {
                    self.output.push_str("<nil>");
                }
            }
            Value::Bool(boolean) => self.print_boolean(*boolean, verb, value),
            Value::Int(number) => self.print_integer(*number, verb, value),
            Value::Float(number) => self.print_float(*number, verb, value),
            Value::String(text) => self.print_string(text, verb, value),
            Value::Map(map) => {
                if self.flags.sharp_v {
                    self.output.push_str("map[string]interface {}{");
                } else {
                    self.output.push_str("map[");
                }
                for (index, (key, item)) in map.iter().enumerate() {
                    if index > 0 {
                        if self.flags.sharp_v {
                            self.output.push_str(", ");
                        } else {
                            self.output.push(' ');
                        }
                    }
                    self.print_string(key, verb, &Value::String(key.clone()));
                    self.output.push(':');
                    self.print_value(item, verb, depth + 1);
                }
                self.output.push(if self.flags.sharp_v { '}' } else { ']' });
            }
            Value::List(items) => {
                if self.flags.sharp_v {
                    self.output.push_str("[]interface {}{");
                } else {
                    self.output.push('[');
                }
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        if self.flags.sharp_v {
                            self.output.push_str(", ");
                        } else {
                            self.output.push(' ');
                        }
                    }
                    self.print_value(item, verb, depth + 1);
                }
                self.output.push(if self.flags.sharp_v { '}' } else { ']' });
            }
        }
    }

    /// pp's `argNumber`.
    fn argument_number(
        &mut self,
        argument: usize,
        format: &[u8],
        index: usize,
        count: usize,
    ) -> (usize, usize, bool) {
        if format.len() <= index || format[index] != b'[' {
            return (argument, index, false);
        }
        self.reordered = true;
        let (number, width, parsed) = parse_argument_number(&format[index..]);
        if let Some(number) = usize::try_from(number)
            .ok()
            .filter(|number| parsed && *number < count)
        {
            return (number, index + width, true);
        }
        self.good_argument_number = false;
        (argument, index + width, parsed)
    }

    /// pp's `doPrintf`.
    #[allow(clippy::too_many_lines)]
    fn print_formatted(&mut self, format: &str, arguments: &[Value]) {
        let bytes = format.as_bytes();
        let end = bytes.len();
        let mut argument = 0;
        let mut after_index;
        self.reordered = false;
        let mut index = 0;
        while index < end {
            self.good_argument_number = true;
            let literal_start = index;
            while index < end && bytes[index] != b'%' {
                index += 1;
            }
            if index > literal_start {
                self.output.push_str(&format[literal_start..index]);
            }
            if index >= end {
                break;
            }
            index += 1;
            self.clear_flags();
            while index < end {
                match bytes[index] {
                    b'#' => self.flags.sharp = true,
                    b'0' => self.flags.zero = !self.flags.minus,
                    b'+' => self.flags.plus = true,
                    b'-' => {
                        self.flags.minus = true;
                        self.flags.zero = false;
                    }
                    b' ' => self.flags.space = true,
                    _ => break,
                }
                index += 1;
            }
            (argument, index, after_index) =
                self.argument_number(argument, bytes, index, arguments.len());
            if index < end && bytes[index] == b'*' {
                index += 1;
                let (width, present, next) = int_from_argument(arguments, argument);
                self.width = width;
                self.flags.width_present = present;
                argument = next;
                if !present {
                    self.output.push_str("%!(BADWIDTH)");
                }
                if self.width < 0 {
                    self.width = -self.width;
                    self.flags.minus = true;
                    self.flags.zero = false;
                }
                after_index = false;
            } else {
                let (width, present, next) = parse_number(bytes, index, end);
                self.width = width;
                self.flags.width_present = present;
                index = next;
                if after_index && present {
                    self.good_argument_number = false;
                }
            }
            if index + 1 < end && bytes[index] == b'.' {
                index += 1;
                if after_index {
                    self.good_argument_number = false;
                }
                (argument, index, after_index) =
                    self.argument_number(argument, bytes, index, arguments.len());
                if index < end && bytes[index] == b'*' {
                    index += 1;
                    let (precision, present, next) = int_from_argument(arguments, argument);
                    self.precision = precision;
                    self.flags.precision_present = present;
                    argument = next;
                    if self.precision < 0 {
                        self.precision = 0;
                        self.flags.precision_present = false;
                    }
                    if !self.flags.precision_present {
                        self.output.push_str("%!(BADPREC)");
                    }
                    after_index = false;
                } else {
                    let (precision, present, next) = parse_number(bytes, index, end);
                    self.precision = precision;
                    self.flags.precision_present = present;
                    index = next;
                    if !present {
                        self.precision = 0;
                        self.flags.precision_present = true;
                    }
                }
            }
            if !after_index {
                (argument, index, _) =
                    self.argument_number(argument, bytes, index, arguments.len());
            }
            if index >= end {
                self.output.push_str("%!(NOVERB)");
                break;
            }
            let verb = format[index..].chars().next().unwrap_or('%');
            index += verb.len_utf8();
            if verb == '%' {
                self.output.push('%');
            } else if !self.good_argument_number {
                self.output.push_str("%!");
                self.output.push(verb);
                self.output.push_str("(BADINDEX)");
            } else if argument >= arguments.len() {
                self.output.push_str("%!");
                self.output.push(verb);
                self.output.push_str("(MISSING)");
            } else {
                if verb == 'v' {
                    self.flags.sharp_v = self.flags.sharp;
                    self.flags.sharp = false;
                    self.flags.plus_v = self.flags.plus;
                    self.flags.plus = false;
                }
                self.print_argument(&arguments[argument], verb);
                argument += 1;
            }
        }
        if !self.reordered && argument < arguments.len() {
            self.clear_flags();
            self.output.push_str("%!(EXTRA ");
            for (position, extra) in arguments[argument..].iter().enumerate() {
                if position > 0 {
                    self.output.push_str(", ");
                }
                if matches!(extra, Value::Nil) {
                    self.output.push_str("<nil>");
                } else {
                    self.output.push_str(extra.type_name());
                    self.output.push('=');
                    self.print_argument(extra, 'v');
                }
            }
            self.output.push(')');
        }
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant, clippy::unreadable_literal)]
mod tests {
    use super::*;

    fn int(number: i64) -> Value {
        Value::Int(number)
    }

    fn float(number: f64) -> Value {
        Value::Float(number)
    }

    fn string(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[track_caller]
    fn check(format: &str, arguments: &[Value], expected: &str) {
        assert_eq!(
            sprintf(format, arguments),
            expected,
            "{format:?} {arguments:?}"
        );
    }

    #[test]
    fn the_issue_example() {
        check(
            "%.2f|%03d|%5d",
            &[float(3.14159), int(7), int(7)],
            "3.14|007|    7",
        );
    }

    #[test]
    fn integers() {
        check(
            "%d|%5d|%-5d|%05d|%+d|% d",
            &[int(42), int(42), int(42), int(-42), int(42), int(42)],
            "42|   42|42   |-0042|+42| 42",
        );
        check(
            "%b|%o|%O|%x|%X|%#x|%#o|%#b",
            &[
                int(5),
                int(8),
                int(8),
                int(255),
                int(255),
                int(255),
                int(8),
                int(5),
            ],
            "101|10|0o10|ff|FF|0xff|010|0b101",
        );
        check(
            "%.3d|%.0d|%6.3d|%08.3d",
            &[int(7), int(0), int(-7), int(7)],
            "007||  -007|     007",
        );
        check("%x|%X", &[int(-255), int(-255)], "-ff|-FF");
        check(
            "%c|%q|%U|%#U",
            &[int(65), int(0x263a), int(0x263a), int(0x263a)],
            "A|'☺'|U+263A|U+263A '☺'",
        );
        check(
            "%q|%+q|%c",
            &[int(0x7), int(0xe9), int(-1)],
            "'\\a'|'\\u00e9'|\u{FFFD}",
        );
        check("%U", &[int(-1)], "U+FFFFFFFFFFFFFFFF");
        check("%v|%+v|%#v", &[int(-3), int(3), int(3)], "-3|3|3");
    }

    #[test]
    fn floats() {
        check(
            "%e|%E|%f|%F|%g|%G",
            &[
                float(3.14),
                float(3.14),
                float(3.14),
                float(3.14),
                float(3.14),
                float(3.14),
            ],
            "3.140000e+00|3.140000E+00|3.140000|3.140000|3.14|3.14",
        );
        check(
            "%v|%v|%v|%v",
            &[float(1e6), float(123456.0), float(1e-5), float(1e21)],
            "1e+06|123456|1e-05|1e+21",
        );
        check(
            "%.3g|%.3g|%g|%.0f|%.0f|%.0f",
            &[
                float(1234.5678),
                float(0.000012345),
                float(100_000.0),
                float(0.5),
                float(1.5),
                float(2.5),
            ],
            "1.23e+03|1.23e-05|100000|0|2|2",
        );
        check(
            "%8.3f|%-8.3f|%08.3f|%+.1e|% f",
            &[
                float(3.14159),
                float(3.14159),
                float(-3.14159),
                float(12345.0),
                float(1.0),
            ],
            "   3.142|3.142   |-003.142|+1.2e+04| 1.000000",
        );
        check(
            "%#g|%#.3g|%#v|%#.0f|%#.0e",
            &[float(1.0), float(1.0), float(1.0), float(3.0), float(3.0)],
            "1.00000|1.00|1|3.|3.e+00",
        );
        check(
            "%x|%X|%.1x|%b",
            &[float(1.0), float(3.14), float(1.0), float(1.0)],
            "0x1p+00|0X1.91EB851EB851FP+01|0x1.0p+00|4503599627370496p-52",
        );
        check(
            "%f|%5.1f|%v|%+f|%05v",
            &[
                float(f64::INFINITY),
                float(f64::NEG_INFINITY),
                float(f64::NAN),
                float(f64::NAN),
                float(f64::INFINITY),
            ],
            "+Inf| -Inf|NaN|+NaN| +Inf",
        );
        check(
            "%e|%g|%v",
            &[float(0.0), float(-0.0), float(1e-320)],
            "0.000000e+00|-0|1e-320",
        );
        check("%e", &[float(1e100)], "1.000000e+100");
    }

    #[test]
    fn strings() {
        check(
            "%s|%5s|%-5s|%.2s|%05s",
            &[
                string("hi"),
                string("hi"),
                string("hi"),
                string("héllo"),
                string("hi"),
            ],
            "hi|   hi|hi   |hé|000hi",
        );
        check(
            "%q|%+q|%#q|%#q",
            &[string("a\"b\n"), string("é"), string("a b"), string("a`b")],
            "\"a\\\"b\\n\"|\"\\u00e9\"|`a b`|\"a`b\"",
        );
        check(
            "%x|%X|% x|%#x|%# x|%.1x",
            &[
                string("hi"),
                string("hi"),
                string("hi"),
                string("hi"),
                string("hi"),
                string("hi"),
            ],
            "6869|6869|68 69|0x6869|0x68 0x69|68",
        );
        check(
            "%v|%#v|%T",
            &[string("a"), string("a"), string("a")],
            "a|\"a\"|string",
        );
        check(
            "%q",
            &[string("\u{a0}\u{200b}\u{feff}😀")],
            "\"\\u00a0\\u200b\\ufeff😀\"",
        );
    }

    #[test]
    fn containers_and_nil() {
        let list = Value::List(vec![float(1.0), string("a"), Value::Nil]);
        let map = Value::Map(
            [("b".to_owned(), float(2.0)), ("a".to_owned(), string("x"))]
                .into_iter()
                .collect(),
        );
        check(
            "%v|%v",
            &[list.clone(), map.clone()],
            "[1 a <nil>]|map[a:x b:2]",
        );
        check(
            "%#v",
            std::slice::from_ref(&list),
            "[]interface {}{1, \"a\", interface {}(nil)}",
        );
        check(
            "%#v",
            std::slice::from_ref(&map),
            "map[string]interface {}{\"a\":\"x\", \"b\":2}",
        );
        check(
            "%d",
            std::slice::from_ref(&list),
            "[%!d(float64=1) %!d(string=a) <nil>]",
        );
        check("%4v", &[list], "[   1    a <nil>]");
        check(
            "%T|%T|%T|%T",
            &[map, Value::List(Vec::new()), Value::Nil, Value::Bool(true)],
            "map[string]interface {}|[]interface {}|<nil>|bool",
        );
        check(
            "%v|%d|%t|%5t",
            &[
                Value::Nil,
                Value::Nil,
                Value::Bool(true),
                Value::Bool(false),
            ],
            "<nil>|%!d(<nil>)|true|false",
        );
    }

    #[test]
    fn errors_follow_go() {
        check("%d", &[string("hi")], "%!d(string=hi)");
        check("%s", &[int(1)], "%!s(int=1)");
        check("%d %d", &[int(1)], "1 %!d(MISSING)");
        check(
            "%d",
            &[int(1), int(2), string("x")],
            "1%!(EXTRA int=2, string=x)",
        );
        check("%z", &[int(1)], "%!z(int=1)");
        check("%[3]d", &[int(1)], "%!d(BADINDEX)");
        check("%", &[], "%!(NOVERB)");
        check("%*d", &[string("x"), int(1)], "%!(BADWIDTH)1");
        check("%.*d", &[int(-1), int(1)], "%!(BADPREC)1");
        check("%!", &[], "%!!(MISSING)");
        check("%d", &[Value::Nil, Value::Nil], "%!d(<nil>)%!(EXTRA <nil>)");
        check("%5z", &[int(1)], "%!z(int=    1)");
        check("%é", &[int(1)], "%!é(int=1)");
    }

    #[test]
    fn argument_indexes_and_stars() {
        check("%[2]d %[1]d", &[int(1), int(2)], "2 1");
        check("%[1]d %[1]x %d", &[int(10), int(11)], "10 a 11");
        check("%[2]*[1]d", &[int(12), int(5)], "   12");
        check(
            "%*d|%-*d|%.*f",
            &[int(4), int(1), int(4), int(1), int(2), float(3.14159)],
            "   1|1   |3.14",
        );
        check("%[3]*.[2]*[1]f", &[float(12.0), int(2), int(6)], " 12.00");
        check("%[1]d %d", &[int(1)], "1 %!d(MISSING)");
        check(
            "%[0]d|%[x]d|%[1d",
            &[int(1)],
            "%!d(BADINDEX)|%!d(BADINDEX)|%!d(BADINDEX)",
        );
        check("%%|%5%|%d%%", &[int(3)], "%|%|3%");
    }

    #[test]
    fn quote_matches_strconv() {
        assert_eq!(quote("a\tb\"c\\"), "\"a\\tb\\\"c\\\\\"");
        assert_eq!(
            quote("é\u{1}\u{7f}\u{e000}\u{10ffff}"),
            "\"é\\x01\\x7f\\ue000\\U0010ffff\""
        );
        assert!(is_print(u32::from('a')) && !is_print(0xd800) && !is_print(0x11_0000));
    }
}
