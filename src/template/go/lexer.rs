//! Tokens of Go's text/template syntax, with positions for error messages.

use super::{Position, TemplateError};

/// One token inside an action, or a piece of text between actions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
    /// Text outside `{{ }}`, copied verbatim (after trim markers).
    Text(String),
    /// `{{` (the trim marker already applied to the text before it).
    Open,
    /// `}}`.
    Close,
    /// `.Name` (a field step; `.` alone is `Dot`).
    Field(String),
    /// `.`.
    Dot,
    /// `$` or `$name` (the name includes the `$`).
    Variable(String),
    /// A bare word: function name or keyword.
    Identifier(String),
    /// A string literal, already unquoted.
    String(String),
    /// A number literal, as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `|`.
    Pipe,
    /// `(`.
    LeftParen,
    /// `)`.
    RightParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,`.
    Comma,
    /// Whitespace inside an action (it separates arguments and ends field chains).
    Space,
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spanned {
    pub(crate) token: Token,
    pub(crate) position: Position,
}

struct Lexer<'a> {
    source: &'a str,
    offset: usize,
    tokens: Vec<Spanned>,
    /// The last position computed and its offset: tokens come in order, so
    /// each position is found by scanning forward from the previous one.
    last: std::cell::Cell<(usize, Position)>,
}

/// Split `source` into tokens. Comments are dropped here; trim markers are applied.
pub(crate) fn lex(source: &str) -> Result<Vec<Spanned>, TemplateError> {
    let mut lexer = Lexer {
        source,
        offset: 0,
        tokens: Vec::new(),
        last: std::cell::Cell::new((0, Position { line: 1, column: 1 })),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

impl Lexer<'_> {
    fn position(&self, offset: usize) -> Position {
        let (last_offset, last_position) = self.last.get();
        let position = if offset >= last_offset && offset <= self.source.len() {
            let mut position = last_position;
            for character in self.source[last_offset..offset].chars() {
                if character == '\n' {
                    position.line += 1;
                    position.column = 1;
                } else {
                    position.column += 1;
                }
            }
            position
        } else {
            Position::of(self.source, offset)
        };
        self.last.set((offset.min(self.source.len()), position));
        position
    }

    fn push(&mut self, token: Token, offset: usize) {
        self.tokens.push(Spanned {
            token,
            position: self.position(offset),
        });
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            position: self.position(offset),
            message: message.into(),
        }
    }

    #[allow(clippy::too_many_lines)] // one state machine over the text and its actions
    fn run(&mut self) -> Result<(), TemplateError> {
        let mut trim_next_text = false;
        loop {
            let rest = &self.source[self.offset..];
            let Some(open) = rest.find("{{") else {
                let mut text = rest;
                if trim_next_text {
                    text = text.trim_start_matches([' ', '\t', '\r', '\n']);
                }
                if !text.is_empty() {
                    let start = self.source.len() - text.len();
                    self.push(Token::Text(text.to_owned()), start);
                }
                return Ok(());
            };
            let action_start = self.offset + open;
            let after_open = &self.source[action_start + 2..];
            let trim_before = after_open.len() >= 2
                && after_open.as_bytes()[0] == b'-'
                && is_space(after_open.as_bytes()[1]);
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if trim_before {
                text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                self.push(Token::Text(text.to_owned()), self.offset);
            }
            let mut cursor = action_start + 2 + if trim_before { 2 } else { 0 };
            // A comment: {{/* ... */}} with optional trim markers.
            if self.source[cursor..].starts_with("/*") {
                let Some(end) = self.source[cursor + 2..].find("*/") else {
                    return Err(self.error(action_start, "unclosed comment"));
                };
                let mut after = cursor + 2 + end + 2;
                let trim_after = self.source[after..].starts_with(" -}}")
                    || self.source[after..].starts_with("\t-}}")
                    || self.source[after..].starts_with("\n-}}")
                    || self.source[after..].starts_with("\r-}}");
                if trim_after {
                    after += 1;
                }
                let close = if trim_after { "-}}" } else { "}}" };
                if !self.source[after..].starts_with(close) {
                    return Err(self.error(action_start, "comment ends before closing delimiter"));
                }
                self.offset = after + close.len();
                trim_next_text = trim_after;
                continue;
            }
            self.push(Token::Open, action_start);
            trim_next_text = false;
            loop {
                let bytes = self.source.as_bytes();
                if cursor >= bytes.len() {
                    return Err(self.error(action_start, "unclosed action"));
                }
                let byte = bytes[cursor];
                // Trim marker before the closing delimiter: " -}}".
                if is_space(byte) {
                    let mut end = cursor;
                    while end < bytes.len() && is_space(bytes[end]) {
                        end += 1;
                    }
                    if self.source[end..].starts_with("-}}") {
                        self.push(Token::Close, end);
                        self.offset = end + 3;
                        trim_next_text = true;
                        break;
                    }
                    self.push(Token::Space, cursor);
                    cursor = end;
                    continue;
                }
                if self.source[cursor..].starts_with("}}") {
                    self.push(Token::Close, cursor);
                    self.offset = cursor + 2;
                    break;
                }
                cursor = self.lex_item(cursor)?;
            }
        }
    }

    /// Lex one item inside an action starting at `cursor`; returns the offset after it.
    #[allow(clippy::too_many_lines)] // one arm per token kind
    fn lex_item(&mut self, cursor: usize) -> Result<usize, TemplateError> {
        let source = self.source;
        let bytes = source.as_bytes();
        let byte = bytes[cursor];
        let word_end = |from: usize| {
            let mut end = from;
            while end < bytes.len() {
                let character = source[end..].chars().next().unwrap_or(' ');
                if character == '_' || character.is_alphanumeric() {
                    end += character.len_utf8();
                } else {
                    break;
                }
            }
            end
        };
        match byte {
            b'|' => {
                self.push(Token::Pipe, cursor);
                Ok(cursor + 1)
            }
            b'(' => {
                self.push(Token::LeftParen, cursor);
                Ok(cursor + 1)
            }
            b')' => {
                self.push(Token::RightParen, cursor);
                Ok(cursor + 1)
            }
            b',' => {
                self.push(Token::Comma, cursor);
                Ok(cursor + 1)
            }
            b':' if bytes.get(cursor + 1) == Some(&b'=') => {
                self.push(Token::Declare, cursor);
                Ok(cursor + 2)
            }
            b'=' => {
                self.push(Token::Assign, cursor);
                Ok(cursor + 1)
            }
            b'"' => {
                let (value, end) = self.lex_quoted(cursor)?;
                self.push(Token::String(value), cursor);
                Ok(end)
            }
            b'`' => {
                let Some(length) = source[cursor + 1..].find('`') else {
                    return Err(self.error(cursor, "unterminated raw quoted string"));
                };
                self.push(
                    Token::String(source[cursor + 1..cursor + 1 + length].to_owned()),
                    cursor,
                );
                Ok(cursor + length + 2)
            }
            b'$' => {
                let end = word_end(cursor + 1);
                self.push(Token::Variable(source[cursor..end].to_owned()), cursor);
                Ok(end)
            }
            b'.' => {
                let next = bytes.get(cursor + 1).copied().unwrap_or(b' ');
                if next.is_ascii_digit() {
                    return self.lex_number(cursor);
                }
                let end = word_end(cursor + 1);
                if end == cursor + 1 {
                    self.push(Token::Dot, cursor);
                } else {
                    self.push(Token::Field(source[cursor + 1..end].to_owned()), cursor);
                }
                Ok(end)
            }
            b'+' | b'-' | b'0'..=b'9' => self.lex_number(cursor),
            b'\'' => {
                let mut characters = source[cursor + 1..].chars();
                let value = match characters.next() {
                    Some('\\') => match characters.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('\\') => '\\',
                        Some('\'') => '\'',
                        Some(other) => other,
                        None => return Err(self.error(cursor, "unterminated character constant")),
                    },
                    Some(character) => character,
                    None => return Err(self.error(cursor, "unterminated character constant")),
                };
                let consumed: usize = source[cursor + 1..]
                    .chars()
                    .take_while(|character| *character != '\'')
                    .map(char::len_utf8)
                    .sum();
                if !source[cursor + 1 + consumed..].starts_with('\'') {
                    return Err(self.error(cursor, "unterminated character constant"));
                }
                self.push(Token::Number((value as u32).to_string()), cursor);
                Ok(cursor + consumed + 2)
            }
            _ => {
                let character = source[cursor..].chars().next().unwrap_or(' ');
                if character == '_' || character.is_alphabetic() {
                    let end = word_end(cursor);
                    let word = &source[cursor..end];
                    let token = match word {
                        "true" => Token::Bool(true),
                        "false" => Token::Bool(false),
                        "nil" => Token::Nil,
                        _ => Token::Identifier(word.to_owned()),
                    };
                    self.push(token, cursor);
                    return Ok(end);
                }
                Err(self.error(cursor, format!("unexpected {character:?} in command")))
            }
        }
    }

    fn lex_number(&mut self, cursor: usize) -> Result<usize, TemplateError> {
        let bytes = self.source.as_bytes();
        let mut end = cursor;
        if matches!(bytes[end], b'+' | b'-') {
            end += 1;
        }
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric()
                || matches!(bytes[end], b'.' | b'_')
                || (matches!(bytes[end], b'+' | b'-')
                    && matches!(bytes[end - 1], b'e' | b'E' | b'p' | b'P')))
        {
            end += 1;
        }
        let text = &self.source[cursor..end];
        if text == "+" || text == "-" {
            return Err(self.error(cursor, format!("unexpected {text:?} in command")));
        }
        self.push(Token::Number(text.to_owned()), cursor);
        Ok(end)
    }

    fn lex_quoted(&self, cursor: usize) -> Result<(String, usize), TemplateError> {
        let mut value = String::new();
        let mut characters = self.source[cursor + 1..].char_indices();
        while let Some((index, character)) = characters.next() {
            match character {
                '"' => return Ok((value, cursor + 1 + index + 1)),
                '\n' => break,
                '\\' => {
                    let Some((_, escaped)) = characters.next() else {
                        break;
                    };
                    match escaped {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'a' => value.push('\u{7}'),
                        'b' => value.push('\u{8}'),
                        'f' => value.push('\u{c}'),
                        'v' => value.push('\u{b}'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        '\'' => value.push('\''),
                        'x' | 'u' | 'U' => {
                            let digits = match escaped {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut code = 0_u32;
                            for _ in 0..digits {
                                let Some((_, digit)) = characters.next() else {
                                    break;
                                };
                                code = code * 16
                                    + digit.to_digit(16).ok_or_else(|| {
                                        self.error(cursor, "invalid escape in string")
                                    })?;
                            }
                            match char::from_u32(code) {
                                Some(decoded) => value.push(decoded),
                                None => return Err(self.error(cursor, "invalid escape in string")),
                            }
                        }
                        '0'..='7' => {
                            let mut code = escaped.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                let Some((_, digit)) = characters.next() else {
                                    break;
                                };
                                code = code * 8
                                    + digit.to_digit(8).ok_or_else(|| {
                                        self.error(cursor, "invalid escape in string")
                                    })?;
                            }
                            value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => {
                            return Err(
                                self.error(cursor, format!("unknown escape sequence \\{escaped}"))
                            );
                        }
                    }
                }
                other => value.push(other),
            }
        }
        Err(self.error(cursor, "unterminated quoted string"))
    }
}
