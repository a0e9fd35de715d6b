//! Executes a parsed Go template against a value, as text/template does.

use super::functions::{self, Host};
use super::parser::{Command, Node, Operand, Pipeline};
use super::value::Value;
use super::{Position, TemplateError};

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Execution<'a> {
    root: &'a Value,
    host: &'a dyn Host,
    output: String,
    variables: Vec<(String, Value)>,
    /// A missing key is an error instead of nil (Go's `missingkey=error`).
    strict: bool,
    /// The first `RaiseError` message; rendering goes on, as in duat, and fails at the end.
    pub(crate) raised: Option<(Position, String)>,
    /// The most bytes the output may hold.
    max_output: usize,
}

impl<'a> Execution<'a> {
    pub(crate) fn new(
        root: &'a Value,
        host: &'a dyn Host,
        strict: bool,
        max_output: usize,
    ) -> Self {
        Self {
            root,
            host,
            output: String::new(),
            variables: vec![("$".to_owned(), root.clone())],
            strict,
            raised: None,
            max_output,
        }
    }

    /// Append to the output, within `max_output`.
    fn write(&mut self, text: &str) -> Result<(), TemplateError> {
        if self.output.len().saturating_add(text.len()) > self.max_output {
            return Err(TemplateError::TooLarge {
                limit: self.max_output,
            });
        }
        self.output.push_str(text);
        Ok(())
    }

    pub(crate) fn run(
        mut self,
        nodes: &[Node],
    ) -> Result<(String, Option<(Position, String)>), TemplateError> {
        let root = self.root;
        self.walk(nodes, root)?;
        Ok((self.output, self.raised))
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            match node {
                Node::Text(text) => self.write(text)?,
                Node::Action(pipeline) => {
                    let value = self.pipeline(pipeline, dot)?;
                    if pipeline.variables.is_empty() {
                        self.write(&value.to_output())?;
                    }
                }
                Node::If {
                    pipeline,
                    then,
                    otherwise,
                } => {
                    let scope = self.variables.len();
                    let value = self.pipeline(pipeline, dot)?;
                    let flow = if value.is_true() {
                        self.walk(then, dot)?
                    } else {
                        self.walk(otherwise, dot)?
                    };
                    self.variables.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With {
                    pipeline,
                    body,
                    otherwise,
                } => {
                    let scope = self.variables.len();
                    let value = self.pipeline(pipeline, dot)?;
                    let flow = if value.is_true() {
                        self.walk(body, &value)?
                    } else {
                        self.walk(otherwise, dot)?
                    };
                    self.variables.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipeline,
                    body,
                    otherwise,
                } => {
                    let scope = self.variables.len();
                    let flow = self.range(pipeline, body, otherwise, dot)?;
                    self.variables.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Break(_) => return Ok(Flow::Break),
                Node::Continue(_) => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipeline: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<Flow, TemplateError> {
        // The pipeline is evaluated without declaring: range declares per element.
        let collection = self.commands(pipeline, dot)?;
        let items: Vec<(Value, Value)> = match collection {
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| (Value::Int(i64::try_from(index).unwrap_or(i64::MAX)), item))
                .collect(),
            Value::Map(map) => map
                .into_iter()
                .map(|(key, value)| (Value::String(key), value))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(TemplateError::Execute {
                    position: pipeline.position,
                    message: format!("range can't iterate over {}", other.to_go_string()),
                });
            }
        };
        if items.is_empty() {
            return self.walk(otherwise, dot);
        }
        let scope = self.variables.len();
        for (key, item) in items {
            self.variables.truncate(scope);
            match pipeline.variables.as_slice() {
                [] => {}
                [element] => self.variables.push((element.clone(), item.clone())),
                [index, element, ..] => {
                    self.variables.push((index.clone(), key));
                    self.variables.push((element.clone(), item.clone()));
                }
            }
            match self.walk(body, &item)? {
                Flow::Break => break,
                Flow::Normal | Flow::Continue => {}
            }
        }
        Ok(Flow::Normal)
    }

    fn pipeline(&mut self, pipeline: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let value = self.commands(pipeline, dot)?;
        for name in &pipeline.variables {
            if pipeline.assign {
                if let Some(slot) = self
                    .variables
                    .iter_mut()
                    .rev()
                    .find(|(existing, _)| existing == name)
                {
                    slot.1 = value.clone();
                }
            } else {
                self.variables.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, pipeline: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for command in &pipeline.commands {
            let value = self.command(command, dot, last)?;
            // A value larger than the output may hold is refused as soon as it is made:
            // a variable doubled in a loop (`$s = printf "%s%s" $s $s`) grows no further.
            if matches!(&value, Value::String(text) if text.len() > self.max_output) {
                return Err(TemplateError::TooLarge {
                    limit: self.max_output,
                });
            }
            last = Some(value);
        }
        Ok(last.unwrap_or(Value::Nil))
    }

    fn command(
        &mut self,
        command: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some(first) = command.arguments.first() else {
            return Ok(Value::Nil);
        };
        if let Operand::Function(name, position) = first {
            return self.call(name, *position, &command.arguments[1..], dot, piped);
        }
        if command.arguments.len() > 1 || piped.is_some() {
            let message = match first {
                Operand::Field(steps) | Operand::Variable(_, steps) if !steps.is_empty() => {
                    format!(
                        "{} has arguments but cannot be invoked as function",
                        steps.last().map(String::as_str).unwrap_or_default()
                    )
                }
                Operand::Nil => "nil is not a command".to_owned(),
                _ => "can't give argument to non-function".to_owned(),
            };
            return Err(TemplateError::Execute {
                position: command.position,
                message,
            });
        }
        if matches!(first, Operand::Nil) {
            return Err(TemplateError::Execute {
                position: command.position,
                message: "nil is not a command".to_owned(),
            });
        }
        self.operand(first, dot, command.position)
    }

    fn operand(
        &mut self,
        operand: &Operand,
        dot: &Value,
        position: Position,
    ) -> Result<Value, TemplateError> {
        match operand {
            Operand::Field(steps) => field_chain(dot, steps, position, self.strict),
            Operand::Variable(name, steps) => {
                let value = self
                    .variables
                    .iter()
                    .rev()
                    .find(|(existing, _)| existing == name)
                    .map(|(_, value)| value)
                    .ok_or_else(|| TemplateError::Execute {
                        position,
                        message: format!("undefined variable: {name}"),
                    })?;
                field_chain(value, steps, position, self.strict)
            }
            Operand::Chain(pipeline, steps) => {
                let value = self.commands(pipeline, dot)?;
                field_chain(&value, steps, position, self.strict)
            }
            Operand::Function(name, function_position) => {
                self.call(name, *function_position, &[], dot, None)
            }
            Operand::String(text) => Ok(Value::String(text.clone())),
            Operand::Int(number) => Ok(Value::Int(*number)),
            Operand::Float(number) => Ok(Value::Float(*number)),
            Operand::Bool(boolean) => Ok(Value::Bool(*boolean)),
            Operand::Nil => Ok(Value::Nil),
        }
    }

    fn call(
        &mut self,
        name: &str,
        position: Position,
        arguments: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        // and/or stop at the first argument that decides (Go 1.18+).
        if name == "and" || name == "or" {
            let count = arguments.len() + usize::from(piped.is_some());
            if count == 0 {
                return Err(TemplateError::Execute {
                    position,
                    message: format!("wrong number of args for {name}: want at least 1 got 0"),
                });
            }
            let mut last = Value::Nil;
            for argument in arguments {
                last = self.operand(argument, dot, position)?;
                if last.is_true() == (name == "or") {
                    return Ok(last);
                }
            }
            if let Some(value) = piped {
                last = value;
            }
            return Ok(last);
        }
        let mut values = Vec::with_capacity(arguments.len() + 1);
        for argument in arguments {
            values.push(self.operand(argument, dot, position)?);
        }
        if let Some(value) = piped {
            values.push(value);
        }
        if name == "RaiseError" {
            let message = values.first().map(Value::to_go_string).unwrap_or_default();
            if self.raised.is_none() {
                self.raised = Some((position, message));
            }
            return Ok(Value::String(String::new()));
        }
        functions::call(name, &values, self.host).map_err(|message| TemplateError::Execute {
            position,
            message: format!("error calling {name}: {message}"),
        })
    }
}

/// Follow `.a.b` from `value`, cloning only what is found at the end.
fn field_chain(
    value: &Value,
    steps: &[String],
    position: Position,
    strict: bool,
) -> Result<Value, TemplateError> {
    let mut current = value;
    for (index, step) in steps.iter().enumerate() {
        current = match current {
            Value::Map(map) => match map.get(step) {
                Some(found) => found,
                None if strict => {
                    return Err(TemplateError::Execute {
                        position,
                        message: format!(
                            "undefined variable: .{} has no entry for key {step:?}",
                            steps[..index].join(".")
                        ),
                    });
                }
                None => return Ok(Value::Nil),
            },
            Value::Nil if strict => {
                return Err(TemplateError::Execute {
                    position,
                    message: format!("undefined variable: .{} is nil", steps[..index].join(".")),
                });
            }
            Value::Nil => return Ok(Value::Nil),
            other => {
                return Err(TemplateError::Execute {
                    position,
                    message: format!("can't evaluate field {step} in type {}", other.type_name()),
                });
            }
        };
    }
    Ok(current.clone())
}
