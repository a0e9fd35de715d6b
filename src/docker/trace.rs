//! BuildKit's progress as the engine relays it, and its plain-text rendering.
//!
//! Through `POST /build?version=2` the engine sends, among its JSON messages,
//! `{"id":"moby.buildkit.trace","aux":"<base64>"}`: the aux is a protobuf
//! `StatusResponse` of moby/buildkit (`api/services/control/control.proto`).
//! Only a few fields are shown, so they are read from the wire format here
//! rather than through generated code and a gRPC stack:
//!
//! ```text
//! StatusResponse { repeated Vertex vertexes = 1; repeated VertexStatus statuses = 2;
//!                  repeated VertexLog logs = 3; }
//! Vertex         { string digest = 1; string name = 3; bool cached = 4;
//!                  Timestamp started = 5; Timestamp completed = 6; string error = 7; }
//! VertexStatus   { string ID = 1; string vertex = 2; int64 current = 4; int64 total = 5;
//!                  Timestamp completed = 8; }
//! VertexLog      { string vertex = 1; Timestamp timestamp = 2; bytes msg = 4; }
//! Timestamp      { int64 seconds = 1; int32 nanos = 2; }
//! ```
//!
//! Every other field, and every field of an unknown number, is skipped. The
//! engine's content is not trusted: a malformed message is an error value,
//! never a panic, and what is remembered across messages is bounded.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

/// Vertices remembered for numbering; later ones share number 0.
const MAX_VERTICES: usize = 65_536;
/// Entries of each kind read from one message (a real one has a handful); the rest are skipped.
const MAX_ENTRIES: usize = 4096;
/// Bytes kept of an identity (a digest is 71) and of a name or an error; longer ones are cut.
const MAX_ID: usize = 256;
const MAX_TEXT: usize = 64 * 1024;

/// A message that is not a well-formed `StatusResponse`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// It ends inside a field.
    #[error("the message ends inside field {0}")]
    Truncated(u32),
    /// A varint longer than ten bytes.
    #[error("a varint runs past ten bytes")]
    Varint,
    /// A wire type protobuf does not define (or the deprecated groups).
    #[error("field {field} has wire type {wire}, which is not supported")]
    WireType {
        /// The field number.
        field: u32,
        /// The wire type.
        wire: u8,
    },
}

/// A point in time as protobuf's `Timestamp` has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i64,
}

impl Timestamp {
    /// Seconds from `earlier` to `self`, never negative.
    #[must_use]
    pub fn since(self, earlier: Self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // a display value
        let seconds = (self.seconds.saturating_sub(earlier.seconds)) as f64
            + (self.nanos.saturating_sub(earlier.nanos)) as f64 / 1e9;
        seconds.max(0.0)
    }
}

/// One step of the build graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vertex {
    /// Its identity across messages.
    pub digest: String,
    /// What it does (`[2/3] RUN make`).
    pub name: String,
    /// Its result came from the cache.
    pub cached: bool,
    /// When it started.
    pub started: Option<Timestamp>,
    /// When it ended.
    pub completed: Option<Timestamp>,
    /// Why it failed.
    pub error: String,
}

/// Progress of a part of a step (a transfer, an extraction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexStatus {
    /// What is progressing.
    pub id: String,
    /// The step's digest.
    pub vertex: String,
    /// Units done.
    pub current: i64,
    /// Units in all, 0 when unknown.
    pub total: i64,
    /// When it ended.
    pub completed: Option<Timestamp>,
}

/// Output of a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexLog {
    /// The step's digest.
    pub vertex: String,
    /// When it was written.
    pub timestamp: Option<Timestamp>,
    /// The bytes written.
    pub msg: Vec<u8>,
}

/// One `StatusResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Steps that changed.
    pub vertexes: Vec<Vertex>,
    /// Progress of parts of steps.
    pub statuses: Vec<VertexStatus>,
    /// Output.
    pub logs: Vec<VertexLog>,
}

/// Reads protobuf fields off a byte slice.
struct Wire<'a> {
    bytes: &'a [u8],
}

/// A field's value, by wire type.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Wire<'a> {
    fn varint(&mut self, field: u32) -> Result<u64, DecodeError> {
        let mut value = 0_u64;
        for (index, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        if self.bytes.len() >= 10 {
            Err(DecodeError::Varint)
        } else {
            Err(DecodeError::Truncated(field))
        }
    }

    fn take(&mut self, length: u64, field: u32) -> Result<&'a [u8], DecodeError> {
        let length = usize::try_from(length).map_err(|_| DecodeError::Truncated(field))?;
        if length > self.bytes.len() {
            return Err(DecodeError::Truncated(field));
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    /// The next field, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint(0)?;
        let field = u32::try_from(key >> 3).unwrap_or(u32::MAX);
        let wire = (key & 7) as u8;
        let value = match wire {
            0 => Value::Varint(self.varint(field)?),
            1 => {
                self.take(8, field)?;
                Value::Fixed
            }
            2 => {
                let length = self.varint(field)?;
                Value::Bytes(self.take(length, field)?)
            }
            5 => {
                self.take(4, field)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::WireType { field, wire }),
        };
        Ok(Some((field, value)))
    }
}

/// Walk the fields of `bytes`, handing each to `visit`.
fn fields<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(u32, Value<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut wire = Wire { bytes };
    while let Some((field, value)) = wire.next()? {
        visit(field, value)?;
    }
    Ok(())
}

/// At most `limit` bytes of `bytes` as text (cut bytes end in `…`).
fn text(bytes: &[u8], limit: usize) -> String {
    if bytes.len() <= limit {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut cut = String::from_utf8_lossy(&bytes[..limit]).into_owned();
    cut.push('…');
    cut
}

// protobuf's int64 is the varint's bits; its int32 the low 32 of them.
#[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
fn timestamp(bytes: &[u8]) -> Result<Timestamp, DecodeError> {
    let mut stamp = Timestamp::default();
    fields(bytes, |field, value| {
        if let Value::Varint(number) = value {
            match field {
                1 => stamp.seconds = number as i64,
                // int32: the low 32 bits, sign-extended.
                2 => stamp.nanos = i64::from(number as u32 as i32),
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(stamp)
}

fn vertex(bytes: &[u8]) -> Result<Vertex, DecodeError> {
    let mut vertex = Vertex::default();
    fields(bytes, |field, value| {
        match (field, value) {
            (1, Value::Bytes(data)) => vertex.digest = text(data, MAX_ID),
            (3, Value::Bytes(data)) => vertex.name = text(data, MAX_TEXT),
            (4, Value::Varint(flag)) => vertex.cached = flag != 0,
            (5, Value::Bytes(data)) => vertex.started = Some(timestamp(data)?),
            (6, Value::Bytes(data)) => vertex.completed = Some(timestamp(data)?),
            (7, Value::Bytes(data)) => vertex.error = text(data, MAX_TEXT),
            _ => {}
        }
        Ok(())
    })?;
    Ok(vertex)
}

#[allow(clippy::cast_possible_wrap)] // protobuf's int64 is the varint's bits
fn vertex_status(bytes: &[u8]) -> Result<VertexStatus, DecodeError> {
    let mut status = VertexStatus::default();
    fields(bytes, |field, value| {
        match (field, value) {
            (1, Value::Bytes(data)) => status.id = text(data, MAX_TEXT),
            (2, Value::Bytes(data)) => status.vertex = text(data, MAX_ID),
            (4, Value::Varint(number)) => status.current = number as i64,
            (5, Value::Varint(number)) => status.total = number as i64,
            (8, Value::Bytes(data)) => status.completed = Some(timestamp(data)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(status)
}

fn vertex_log(bytes: &[u8]) -> Result<VertexLog, DecodeError> {
    let mut log = VertexLog::default();
    fields(bytes, |field, value| {
        match (field, value) {
            (1, Value::Bytes(data)) => log.vertex = text(data, MAX_ID),
            (2, Value::Bytes(data)) => log.timestamp = Some(timestamp(data)?),
            (4, Value::Bytes(data)) => log.msg = data.to_vec(),
            _ => {}
        }
        Ok(())
    })?;
    Ok(log)
}

/// Decode one `StatusResponse`.
///
/// # Errors
/// The bytes are not a well-formed protobuf message.
pub fn decode(bytes: &[u8]) -> Result<Status, DecodeError> {
    let mut status = Status::default();
    fields(bytes, |field, value| {
        match (field, value) {
            (1, Value::Bytes(data)) if status.vertexes.len() < MAX_ENTRIES => {
                status.vertexes.push(vertex(data)?);
            }
            (2, Value::Bytes(data)) if status.statuses.len() < MAX_ENTRIES => {
                status.statuses.push(vertex_status(data)?);
            }
            (3, Value::Bytes(data)) if status.logs.len() < MAX_ENTRIES => {
                status.logs.push(vertex_log(data)?);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(status)
}

/// What is known of one step.
#[derive(Debug, Default)]
struct Step {
    number: u32,
    started: Option<Timestamp>,
    announced: bool,
    ended: bool,
}

/// Turns successive `StatusResponse`s into docker's plain progress lines:
/// `#3 [2/2] RUN make`, `#3 0.512 cc -o x x.c`, `#3 DONE 1.2s`, `#2 CACHED`,
/// `#3 ERROR: …`.
#[derive(Debug, Default)]
pub struct Progress {
    steps: HashMap<String, Step>,
    statuses_done: HashSet<(u32, String)>,
    next: u32,
}

impl Progress {
    fn step(&mut self, digest: &str) -> &mut Step {
        if !self.steps.contains_key(digest) && self.steps.len() >= MAX_VERTICES {
            // Past the bound a step is shown as #0 and forgotten.
            return self.steps.entry(String::new()).or_default();
        }
        let next = &mut self.next;
        self.steps.entry(digest.to_owned()).or_insert_with(|| {
            *next = next.saturating_add(1);
            Step {
                number: *next,
                ..Step::default()
            }
        })
    }

    /// The lines `status` adds, each handed to `out`.
    pub fn render(&mut self, status: &Status, out: &mut impl FnMut(&str)) {
        for vertex in &status.vertexes {
            let step = self.step(&vertex.digest);
            if vertex.started.is_some() {
                step.started = vertex.started;
            }
            let number = step.number;
            let happened = vertex.started.is_some()
                || vertex.completed.is_some()
                || vertex.cached
                || !vertex.error.is_empty();
            if happened && !step.announced {
                step.announced = true;
                out(&format!("#{number} {}", vertex.name));
            }
            if step.ended {
                continue;
            }
            if !vertex.error.is_empty() {
                step.ended = true;
                out(&format!("#{number} ERROR: {}", vertex.error));
            } else if vertex.cached {
                step.ended = true;
                out(&format!("#{number} CACHED"));
            } else if let Some(completed) = vertex.completed {
                step.ended = true;
                let took = step.started.map_or(0.0, |started| completed.since(started));
                out(&format!("#{number} DONE {took:.1}s"));
            }
        }
        for part in &status.statuses {
            if part.completed.is_none() {
                continue;
            }
            let number = self.step(&part.vertex).number;
            if self.statuses_done.len() < MAX_VERTICES
                && self.statuses_done.insert((number, part.id.clone()))
            {
                let amount = match (part.current, part.total) {
                    (0, 0) => String::new(),
                    (current, 0) => format!(" {current}"),
                    (current, total) => format!(" {current}/{total}"),
                };
                out(&format!("#{number} {}{amount} done", part.id));
            }
        }
        for log in &status.logs {
            let step = self.step(&log.vertex);
            let number = step.number;
            let offset = match (log.timestamp, step.started) {
                (Some(at), Some(started)) => format!(" {:.3}", at.since(started)),
                _ => String::new(),
            };
            let text = String::from_utf8_lossy(&log.msg);
            for piece in text
                .split(['\n', '\r'])
                .filter(|piece| !piece.trim().is_empty())
            {
                out(&format!("#{number}{offset} {piece}"));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a failed expectation is the test's failure
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(field) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn varint_field(field: u32, value: u64, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3, out);
        varint(value, out);
    }

    fn stamp(seconds: u64, nanos: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint_field(1, seconds, &mut out);
        varint_field(2, nanos, &mut out);
        out
    }

    #[test]
    fn a_status_response_decodes_and_unknown_fields_are_skipped() {
        let mut vertex = Vec::new();
        bytes_field(1, b"sha256:aa", &mut vertex);
        bytes_field(2, b"sha256:input", &mut vertex); // inputs: skipped
        bytes_field(3, b"[2/2] RUN make", &mut vertex);
        bytes_field(5, &stamp(100, 500_000_000), &mut vertex);
        bytes_field(6, &stamp(101, 700_000_000), &mut vertex);
        // A fixed64 and a fixed32 field of numbers sgr does not know.
        varint(15 << 3 | 1, &mut vertex);
        vertex.extend_from_slice(&[0; 8]);
        varint(16 << 3 | 5, &mut vertex);
        vertex.extend_from_slice(&[0; 4]);
        let mut log = Vec::new();
        bytes_field(1, b"sha256:aa", &mut log);
        bytes_field(2, &stamp(101, 0), &mut log);
        varint_field(3, 1, &mut log);
        bytes_field(4, b"cc -o x x.c\nlinking\r", &mut log);
        let mut message = Vec::new();
        bytes_field(1, &vertex, &mut message);
        bytes_field(3, &log, &mut message);
        bytes_field(4, b"a warning, skipped", &mut message);

        let status = decode(&message).expect("decodes");
        assert_eq!(status.vertexes.len(), 1);
        assert_eq!(status.vertexes[0].name, "[2/2] RUN make");
        assert_eq!(
            status.vertexes[0].started,
            Some(Timestamp {
                seconds: 100,
                nanos: 500_000_000
            })
        );
        let mut lines = Vec::new();
        Progress::default().render(&status, &mut |line: &str| lines.push(line.to_owned()));
        assert_eq!(
            lines,
            [
                "#1 [2/2] RUN make",
                "#1 DONE 1.2s",
                "#1 0.500 cc -o x x.c",
                "#1 0.500 linking"
            ]
        );
    }

    #[test]
    fn steps_are_numbered_once_and_end_once() {
        let started = Some(Timestamp {
            seconds: 1,
            nanos: 0,
        });
        let running = |digest: &str, name: &str| Vertex {
            digest: digest.to_owned(),
            name: name.to_owned(),
            started,
            ..Vertex::default()
        };
        let mut progress = Progress::default();
        let mut lines = Vec::new();
        let mut out = |line: &str| lines.push(line.to_owned());
        progress.render(
            &Status {
                vertexes: vec![running("a", "load"), running("b", "[1/2] FROM x")],
                ..Status::default()
            },
            &mut out,
        );
        progress.render(
            &Status {
                vertexes: vec![
                    Vertex {
                        cached: true,
                        ..running("b", "[1/2] FROM x")
                    },
                    Vertex {
                        error: "exit code: 3".to_owned(),
                        ..running("a", "load")
                    },
                ],
                ..Status::default()
            },
            &mut out,
        );
        // Sent again after it ended: nothing more.
        progress.render(
            &Status {
                vertexes: vec![Vertex {
                    completed: started,
                    ..running("a", "load")
                }],
                ..Status::default()
            },
            &mut out,
        );
        assert_eq!(
            lines,
            [
                "#1 load",
                "#2 [1/2] FROM x",
                "#2 CACHED",
                "#1 ERROR: exit code: 3"
            ]
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(decode(&[0x0a, 0x05, 1]), Err(DecodeError::Truncated(1)));
        assert_eq!(decode(&[0x80; 11]), Err(DecodeError::Varint));
        assert_eq!(
            decode(&[0x0b]),
            Err(DecodeError::WireType { field: 1, wire: 3 })
        );
        // A length beyond usize on 32-bit targets and beyond the message anyway.
        assert!(decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }

    #[test]
    fn the_number_of_remembered_steps_is_bounded() {
        let mut progress = Progress::default();
        let mut count = 0_usize;
        for index in 0..MAX_VERTICES + 10 {
            progress.render(
                &Status {
                    logs: vec![VertexLog {
                        vertex: format!("sha256:{index}"),
                        msg: b"x".to_vec(),
                        ..VertexLog::default()
                    }],
                    ..Status::default()
                },
                &mut |_: &str| count += 1,
            );
        }
        assert_eq!(count, MAX_VERTICES + 10);
        assert!(progress.steps.len() <= MAX_VERTICES + 1);
    }

    #[test]
    fn what_one_message_can_make_sgr_hold_is_bounded() {
        let mut message = Vec::new();
        for _ in 0..MAX_ENTRIES * 3 {
            bytes_field(1, &[], &mut message);
        }
        let mut vertex = Vec::new();
        bytes_field(1, &vec![b'd'; 1 << 20], &mut vertex);
        bytes_field(3, &vec![b'n'; 1 << 20], &mut vertex);
        bytes_field(1, &vertex, &mut message);
        let status = decode(&message).expect("decodes");
        assert_eq!(status.vertexes.len(), MAX_ENTRIES);
        let mut one = Vec::new();
        bytes_field(1, &vertex, &mut one);
        let status = decode(&one).expect("decodes");
        assert_eq!(status.vertexes[0].digest.len(), MAX_ID + '…'.len_utf8());
        assert_eq!(status.vertexes[0].name.len(), MAX_TEXT + '…'.len_utf8());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(status) = decode(&bytes) {
                Progress::default().render(&status, &mut |_: &str| {});
            }
        }
    }
}
