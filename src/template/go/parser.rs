//! The syntax tree of a Go template and the parser that builds it.

use super::lexer::{Spanned, Token};
use super::{Position, TemplateError};

/// A node of the template body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Text(String),
    Action(Pipeline),
    If {
        pipeline: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break(Position),
    Continue(Position),
}

/// `$a, $b := cmd | cmd`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pipeline {
    pub(crate) position: Position,
    pub(crate) variables: Vec<String>,
    /// `=` rather than `:=`.
    pub(crate) assign: bool,
    pub(crate) commands: Vec<Command>,
}

/// One command of a pipeline: an operand, or a function and its arguments.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Command {
    pub(crate) position: Position,
    pub(crate) arguments: Vec<Operand>,
}

/// An operand.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    /// `.a.b` (empty for `.`).
    Field(Vec<String>),
    /// `$x.a.b`.
    Variable(String, Vec<String>),
    /// `(pipeline).a.b`.
    Chain(Box<Pipeline>, Vec<String>),
    /// A function name.
    Function(String, Position),
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// Names the executor knows; anything else is "function not defined" at parse time, as in Go.
pub(crate) type IsFunction<'a> = &'a dyn Fn(&str) -> bool;

struct Parser<'a> {
    tokens: Vec<Spanned>,
    index: usize,
    is_function: IsFunction<'a>,
    /// Variables in scope, to report undefined ones at parse time as Go does.
    variables: Vec<String>,
    range_depth: usize,
    /// Control structures and parentheses open now; bounded so that hostile
    /// input cannot exhaust the stack.
    depth: usize,
    end: Position,
}

/// How deeply `if`/`range`/`with` and parentheses may nest.
const MAX_DEPTH: usize = 100;

enum Terminator {
    End(Position),
    Else(Position),
    Eof,
}

/// Parse a token stream into nodes.
pub(crate) fn parse(
    tokens: Vec<Spanned>,
    end: Position,
    is_function: IsFunction<'_>,
) -> Result<Vec<Node>, TemplateError> {
    let mut parser = Parser {
        tokens,
        index: 0,
        is_function,
        variables: vec!["$".to_owned()],
        range_depth: 0,
        depth: 0,
        end,
    };
    let (nodes, terminator) = parser.list()?;
    match terminator {
        Terminator::Eof => Ok(nodes),
        Terminator::End(position) => Err(TemplateError::Parse {
            position,
            message: "unexpected {{end}}".to_owned(),
        }),
        Terminator::Else(position) => Err(TemplateError::Parse {
            position,
            message: "unexpected {{else}}".to_owned(),
        }),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index).map(|spanned| &spanned.token)
    }

    fn position(&self) -> Position {
        self.tokens
            .get(self.index)
            .map_or(self.end, |spanned| spanned.position)
    }

    fn error(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            position: self.position(),
            message: message.into(),
        }
    }

    fn next(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.index).cloned();
        self.index += 1;
        token
    }

    fn skip_space(&mut self) {
        while self.peek() == Some(&Token::Space) {
            self.index += 1;
        }
    }

    fn expect_close(&mut self, context: &str) -> Result<(), TemplateError> {
        self.skip_space();
        match self.next() {
            Some(Spanned {
                token: Token::Close,
                ..
            }) => Ok(()),
            Some(spanned) => Err(TemplateError::Parse {
                position: spanned.position,
                message: format!("unexpected {} in {context}", describe(&spanned.token)),
            }),
            None => Err(TemplateError::Parse {
                position: self.end,
                message: format!("unclosed action in {context}"),
            }),
        }
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, Terminator), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(spanned) = self.next() {
            match spanned.token {
                Token::Text(text) => nodes.push(Node::Text(text)),
                Token::Open => {
                    self.skip_space();
                    let keyword_position = self.position();
                    match self.peek().cloned() {
                        Some(Token::Identifier(word)) if word == "end" => {
                            self.index += 1;
                            self.expect_close("end")?;
                            return Ok((nodes, Terminator::End(keyword_position)));
                        }
                        Some(Token::Identifier(word)) if word == "else" => {
                            self.index += 1;
                            return Ok((nodes, Terminator::Else(keyword_position)));
                        }
                        Some(Token::Identifier(word))
                            if word == "if" || word == "range" || word == "with" =>
                        {
                            self.index += 1;
                            nodes.push(self.control(&word)?);
                        }
                        Some(Token::Identifier(word)) if word == "break" || word == "continue" => {
                            self.index += 1;
                            if self.range_depth == 0 {
                                return Err(TemplateError::Parse {
                                    position: keyword_position,
                                    message: format!("{{{{{word}}}}} outside {{{{range}}}}"),
                                });
                            }
                            self.expect_close(&word)?;
                            nodes.push(if word == "break" {
                                Node::Break(keyword_position)
                            } else {
                                Node::Continue(keyword_position)
                            });
                        }
                        Some(Token::Identifier(word))
                            if matches!(word.as_str(), "define" | "template" | "block") =>
                        {
                            return Err(TemplateError::Parse {
                                position: keyword_position,
                                message: format!("{{{{{word}}}}} is not supported by sgr stencil"),
                            });
                        }
                        _ => {
                            let pipeline = self.pipeline("command", true)?;
                            for variable in &pipeline.variables {
                                if !pipeline.assign {
                                    self.variables.push(variable.clone());
                                }
                            }
                            nodes.push(Node::Action(pipeline));
                        }
                    }
                }
                other => {
                    return Err(TemplateError::Parse {
                        position: spanned.position,
                        message: format!("unexpected {}", describe(&other)),
                    });
                }
            }
        }
        Ok((nodes, Terminator::Eof))
    }

    fn enter(&mut self) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn control(&mut self, keyword: &str) -> Result<Node, TemplateError> {
        self.enter()?;
        let node = self.control_body(keyword);
        self.depth -= 1;
        node
    }

    fn control_body(&mut self, keyword: &str) -> Result<Node, TemplateError> {
        let scope = self.variables.len();
        let pipeline = self.pipeline(
            keyword,
            keyword == "range" || keyword == "if" || keyword == "with",
        )?;
        if pipeline.assign {
            return Err(TemplateError::Parse {
                position: pipeline.position,
                message: format!("assignment is not allowed in {{{{{keyword}}}}}"),
            });
        }
        self.variables.extend(pipeline.variables.iter().cloned());
        if keyword == "range" {
            self.range_depth += 1;
        }
        let (body, terminator) = self.list()?;
        if keyword == "range" {
            self.range_depth -= 1;
        }
        let otherwise = match terminator {
            Terminator::End(_) => Vec::new(),
            Terminator::Eof => {
                return Err(TemplateError::Parse {
                    position: pipeline.position,
                    message: format!("unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"),
                });
            }
            Terminator::Else(else_position) => {
                self.skip_space();
                let chained = matches!(self.peek(), Some(Token::Identifier(word)) if (word == "if" && keyword == "if") || (word == "with" && keyword == "with"));
                if chained {
                    // {{else if ...}}: a nested control whose {{end}} closes both.
                    self.index += 1;
                    vec![self.control(keyword)?]
                } else {
                    self.expect_close("else")?;
                    let (otherwise, terminator) = self.list()?;
                    match terminator {
                        Terminator::End(_) => otherwise,
                        Terminator::Else(position) => {
                            return Err(TemplateError::Parse {
                                position,
                                message: format!(
                                    "expected {{{{end}}}}; found {{{{else}}}} (the {{{{{keyword}}}}} at {else_position} already has one)"
                                ),
                            });
                        }
                        Terminator::Eof => {
                            return Err(TemplateError::Parse {
                                position: pipeline.position,
                                message: format!(
                                    "unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}"
                                ),
                            });
                        }
                    }
                }
            }
        };
        self.variables.truncate(scope);
        Ok(match keyword {
            "if" => Node::If {
                pipeline,
                then: body,
                otherwise,
            },
            "range" => Node::Range {
                pipeline,
                body,
                otherwise,
            },
            _ => Node::With {
                pipeline,
                body,
                otherwise,
            },
        })
    }

    /// A pipeline up to `}}` (or `)` when nested).
    fn pipeline(
        &mut self,
        context: &str,
        allow_declaration: bool,
    ) -> Result<Pipeline, TemplateError> {
        self.skip_space();
        let position = self.position();
        let mut variables = Vec::new();
        let mut assign = false;
        // Look ahead for `$x :=`, `$x =`, or `$i, $v :=`.
        if allow_declaration {
            let start = self.index;
            let mut names = Vec::new();
            loop {
                self.skip_space();
                match self.peek().cloned() {
                    Some(Token::Variable(name)) => {
                        self.index += 1;
                        names.push(name);
                    }
                    _ => break,
                }
                self.skip_space();
                match self.peek() {
                    Some(Token::Comma) if context == "range" && names.len() == 1 => {
                        self.index += 1;
                    }
                    Some(Token::Declare) => {
                        self.index += 1;
                        variables.clone_from(&names);
                        break;
                    }
                    Some(Token::Assign) => {
                        self.index += 1;
                        variables.clone_from(&names);
                        assign = true;
                        break;
                    }
                    _ => break,
                }
            }
            if variables.is_empty() {
                self.index = start;
            } else if assign {
                for name in &variables {
                    if !self.variables.contains(name) {
                        return Err(TemplateError::Parse {
                            position,
                            message: format!("undefined variable {name:?}"),
                        });
                    }
                }
            }
        }
        let mut commands = Vec::new();
        loop {
            self.skip_space();
            let command_position = self.position();
            let mut arguments = Vec::new();
            loop {
                self.skip_space();
                match self.peek() {
                    None => return Err(self.error(format!("unclosed action in {context}"))),
                    Some(Token::Close | Token::Pipe | Token::RightParen) => break,
                    _ => arguments.push(self.operand(context)?),
                }
            }
            if arguments.is_empty() {
                return Err(TemplateError::Parse {
                    position: command_position,
                    message: format!("missing value for {context}"),
                });
            }
            commands.push(Command {
                position: command_position,
                arguments,
            });
            match self.peek() {
                Some(Token::Pipe) => {
                    self.index += 1;
                }
                Some(Token::Close) if context != "parenthesized pipeline" => {
                    self.index += 1;
                    break;
                }
                Some(Token::RightParen) if context == "parenthesized pipeline" => {
                    self.index += 1;
                    break;
                }
                _ => {
                    return Err(self.error(format!(
                        "unexpected {} in {context}",
                        self.peek().map_or("end of input".to_owned(), describe)
                    )));
                }
            }
        }
        Ok(Pipeline {
            position,
            variables,
            assign,
            commands,
        })
    }

    /// Field steps directly attached to the previous token (no space between).
    fn fields(&mut self) -> Vec<String> {
        let mut steps = Vec::new();
        while let Some(Token::Field(name)) = self.peek().cloned() {
            self.index += 1;
            steps.push(name);
        }
        steps
    }

    fn operand(&mut self, context: &str) -> Result<Operand, TemplateError> {
        let Some(spanned) = self.next() else {
            return Err(self.error(format!("unclosed action in {context}")));
        };
        let position = spanned.position;
        let operand = match spanned.token {
            Token::Dot => {
                if matches!(self.peek(), Some(Token::Field(_))) {
                    return Err(self.error("unexpected . after term"));
                }
                Operand::Field(Vec::new())
            }
            Token::Field(name) => {
                let mut steps = vec![name];
                steps.extend(self.fields());
                Operand::Field(steps)
            }
            Token::Variable(name) => {
                if !self.variables.contains(&name) {
                    return Err(TemplateError::Parse {
                        position,
                        message: format!("undefined variable {name:?}"),
                    });
                }
                Operand::Variable(name, self.fields())
            }
            Token::LeftParen => {
                self.enter()?;
                let inner = self.pipeline("parenthesized pipeline", true);
                self.depth -= 1;
                Operand::Chain(Box::new(inner?), self.fields())
            }
            Token::Identifier(name) => {
                if !(self.is_function)(&name) {
                    return Err(TemplateError::Parse {
                        position,
                        message: format!("function {name:?} not defined"),
                    });
                }
                Operand::Function(name, position)
            }
            Token::String(value) => Operand::String(value),
            Token::Number(text) => parse_number(&text).ok_or_else(|| TemplateError::Parse {
                position,
                message: format!("bad number syntax: {text:?}"),
            })?,
            Token::Bool(value) => Operand::Bool(value),
            Token::Nil => Operand::Nil,
            other => {
                return Err(TemplateError::Parse {
                    position,
                    message: format!("unexpected {} in {context}", describe(&other)),
                });
            }
        };
        if matches!(self.peek(), Some(Token::Field(_))) {
            return Err(self.error("unexpected field after term"));
        }
        Ok(operand)
    }
}

fn parse_number(text: &str) -> Option<Operand> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest.to_owned()),
        None => (false, cleaned.trim_start_matches('+').to_owned()),
    };
    let integer = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(octal, 8).ok()
    } else if let Some(binary) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(binary, 2).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|byte| byte.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(integer) = integer {
        return Some(Operand::Int(if negative { -integer } else { integer }));
    }
    let float: f64 = digits.parse().ok()?;
    Some(Operand::Float(if negative { -float } else { float }))
}

fn describe(token: &Token) -> String {
    match token {
        Token::Text(_) => "text".to_owned(),
        Token::Open => "{{".to_owned(),
        Token::Close => "}}".to_owned(),
        Token::Field(name) => format!("<.{name}>"),
        Token::Dot => "<.>".to_owned(),
        Token::Variable(name) | Token::Identifier(name) => format!("<{name}>"),
        Token::String(value) => format!("{value:?}"),
        Token::Number(text) => text.clone(),
        Token::Bool(value) => value.to_string(),
        Token::Nil => "nil".to_owned(),
        Token::Pipe => "|".to_owned(),
        Token::LeftParen => "(".to_owned(),
        Token::RightParen => ")".to_owned(),
        Token::Declare => ":=".to_owned(),
        Token::Assign => "=".to_owned(),
        Token::Comma => ",".to_owned(),
        Token::Space => "space".to_owned(),
    }
}
