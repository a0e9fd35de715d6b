//! Builds through BuildKit: `POST /v<api>/build?version=2` with the context as a
//! streamed tar body, on the engine's own socket.
//!
//! bollard sends `version=2` only with its `buildkit` feature, which also insists
//! on a gRPC session (tonic, prost, a hijacked `/session` connection) that a tar
//! context does not need: the engine reads the context from the request body, as
//! it does for the classic builder. So this one request is made here, with hyper
//! (already in the build through bollard), and everything else still goes through
//! bollard. Only `unix://` and plain `tcp://` engine addresses are served; others
//! build with the classic builder.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{BuildLog, CONNECT_TIMEOUT};

/// The longest JSON message of the build stream that is read; a longer one ends the build.
pub(super) const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How much of an error answer is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the engine is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port` or `http://host:port`, without TLS.
    Tcp(String),
}

impl Transport {
    /// The transport for `host` (`DOCKER_HOST`'s form), when it is one sgr speaks itself.
    pub(super) fn from_host(host: &str) -> Option<Self> {
        if let Some(path) = host.strip_prefix("unix://") {
            return (!path.is_empty()).then(|| Self::Unix(PathBuf::from(path)));
        }
        let authority = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))?
            .trim_end_matches('/');
        // host:port, the port given (the connection is made as written).
        let port = authority.rsplit_once(':').map(|(_, port)| port);
        (port.is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
            && !authority.starts_with(':')
            && !authority.contains(['/', '@', '?', '#']))
        .then(|| Self::Tcp(authority.to_owned()))
    }

    fn host_header(&self) -> &str {
        match self {
            Self::Unix(_) => "localhost",
            Self::Tcp(authority) => authority,
        }
    }
}

/// What one BuildKit build asks for.
pub(super) struct Options<'a> {
    /// The first tag.
    pub tag: &'a str,
    /// The Dockerfile's name inside the context.
    pub dockerfile: &'a str,
    /// Build args.
    pub build_args: &'a BTreeMap<String, String>,
    /// Labels set on the image config (no step under BuildKit).
    pub labels: &'a BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: bool,
    /// `--target`.
    pub target: Option<&'a str>,
    /// `--network` (`default`, `host` or `none` under BuildKit).
    pub network: Option<&'a str>,
}

impl Options<'_> {
    /// The query string of `POST /build`.
    pub(super) fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("version", "2")
            .append_pair("t", self.tag)
            .append_pair("dockerfile", self.dockerfile)
            .append_pair("rm", "1")
            .append_pair("forcerm", "1");
        if !self.build_args.is_empty() {
            query.append_pair("buildargs", &json_map(self.build_args));
        }
        if !self.labels.is_empty() {
            query.append_pair("labels", &json_map(self.labels));
        }
        if self.no_cache {
            query.append_pair("nocache", "1");
        }
        if self.pull {
            query.append_pair("pull", "1");
        }
        if let Some(target) = self.target {
            query.append_pair("target", target);
        }
        if let Some(network) = self.network {
            query.append_pair("networkmode", network);
        }
        query.finish()
    }
}

fn json_map(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(map).unwrap_or_default()
}

/// Why the build did not start.
#[derive(Debug)]
pub(super) enum Failure {
    /// The engine answered with an error status before building; the classic
    /// builder may still work.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine could not be reached or dropped the connection.
    Connection(String),
}

/// A build under way: the engine's output, and the connection carrying it.
pub(super) struct Exchange {
    /// The engine's output.
    pub output: Incoming,
    _connection: Connection,
}

/// The task driving the connection, stopped (and the connection closed) when this is
/// dropped: once the output has been read or given up on, or when the wait for the answer
/// ends, even if the context is still being sent. An engine that stopped reading it
/// without closing would otherwise hold the context writer forever.
struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Send the build request; the body is the context as it is produced. The engine answers
/// with its status at once, while the context is still arriving; `patience` bounds the wait
/// for that answer (and for the body of an error answer), as bollard's timeout does for the
/// classic build. The build's own output may then take as long as the build does.
pub(super) async fn start(
    transport: &Transport,
    api_version: &str,
    options: &Options<'_>,
    context: impl Stream<Item = Bytes> + Send + 'static,
    patience: std::time::Duration,
) -> Result<Exchange, Failure> {
    let request = Request::post(format!("/v{api_version}/build?{}", options.query()))
        .header(hyper::header::HOST, transport.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(StreamBody::new(
            context.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
        ))
        .map_err(|error| Failure::Connection(error.to_string()))?;
    let answered = async {
        match transport {
            Transport::Unix(path) => {
                let stream = connect(tokio::net::UnixStream::connect(path)).await?;
                exchange(stream, request).await
            }
            Transport::Tcp(authority) => {
                let stream = connect(tokio::net::TcpStream::connect(authority.as_str())).await?;
                exchange(stream, request).await
            }
        }
    };
    let silent = || {
        Failure::Connection(format!(
            "the engine did not answer within {} s",
            patience.as_secs()
        ))
    };
    let (response, connection) = tokio::time::timeout(patience, answered)
        .await
        .map_err(|_| silent())??;
    let status = response.status();
    let exchange = Exchange {
        output: response.into_body(),
        _connection: connection,
    };
    if status.is_success() {
        return Ok(exchange);
    }
    let message = tokio::time::timeout(patience, error_message(exchange))
        .await
        .unwrap_or_else(|_| "(the engine did not finish its answer)".to_owned());
    Err(Failure::Refused {
        status: status.as_u16(),
        message,
    })
}

async fn connect<S>(connecting: impl Future<Output = std::io::Result<S>>) -> Result<S, Failure> {
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            Failure::Connection(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|error| Failure::Connection(error.to_string()))
}

async fn exchange<S, B>(
    stream: S,
    request: Request<B>,
) -> Result<(Response<Incoming>, Connection), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| Failure::Connection(error.to_string()))?;
    // Drives the connection until both bodies are done (or it fails, which the
    // response or its body then reports).
    // Dropped with this future too (the wait for the answer ran out): the connection closes.
    let connection = Connection(tokio::spawn(async move {
        let _ = connection.await;
    }));
    match sender.send_request(request).await {
        Ok(response) => Ok((response, connection)),
        Err(error) => Err(Failure::Connection(error.to_string())),
    }
}

/// The `message` of an error answer, or its first bytes.
async fn error_message(mut exchange: Exchange) -> String {
    #[derive(Deserialize)]
    struct Answer {
        message: String,
    }
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match exchange.output.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY);
    serde_json::from_slice::<Answer>(&bytes).map_or_else(
        |_| String::from_utf8_lossy(&bytes).trim().to_owned(),
        |answer| answer.message,
    )
}

/// One JSON message of the build stream.
#[derive(Debug, Deserialize)]
struct Message {
    id: Option<String>,
    stream: Option<String>,
    error: Option<String>,
    #[serde(rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
    aux: Option<Aux>,
}

/// A message's `aux`: BuildKit's trace (a base64 string), the image id (`{"ID": …}`), or
/// something else, skipped without being held (no `serde_json::Value` of engine content).
#[derive(Debug, PartialEq, Eq)]
enum Aux {
    Text(String),
    Image(Option<String>),
    Other,
}

impl<'de> Deserialize<'de> for Aux {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Aux;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string, an object or any JSON value")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Aux, E> {
                Ok(Aux::Text(text.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Aux, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "ID" && id.is_none() {
                        id = map.next_value::<Option<String>>()?;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Aux::Image(id))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Aux, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Aux::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Aux, E> {
                Ok(Aux::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Aux, E> {
                Ok(Aux::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Aux, E> {
                Ok(Aux::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Aux, E> {
                Ok(Aux::Other)
            }

            fn visit_unit<E>(self) -> Result<Aux, E> {
                Ok(Aux::Other)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// Read the build stream to its end or its first error, into `log`.
pub(super) async fn follow(mut exchange: Exchange, log: &mut BuildLog<impl FnMut(&str)>) {
    let mut pending: Vec<u8> = Vec::new();
    while log.failure.is_none() {
        let data = match exchange.output.frame().await {
            None => break,
            Some(Err(error)) => {
                log.fail(format!("the engine's build output ended early: {error}"));
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let mut rest = &data[..];
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            if pending.len() + end > MAX_MESSAGE {
                log.fail(oversized());
                return;
            }
            pending.extend_from_slice(&rest[..end]);
            handle(&pending, log);
            pending.clear();
            rest = &rest[end + 1..];
            if log.failure.is_some() {
                return;
            }
        }
        if pending.len() + rest.len() > MAX_MESSAGE {
            log.fail(oversized());
            return;
        }
        pending.extend_from_slice(rest);
    }
    if log.failure.is_none() {
        handle(&pending, log);
    }
}

fn oversized() -> String {
    format!(
        "the engine sent a build message over {} MiB",
        MAX_MESSAGE / (1024 * 1024)
    )
}

/// One line of the stream: a message, or nothing.
fn handle(line: &[u8], log: &mut BuildLog<impl FnMut(&str)>) {
    if line.trim_ascii().is_empty() {
        return;
    }
    let message: Message = match serde_json::from_slice(line) {
        Ok(message) => message,
        Err(error) => {
            log.fail(format!(
                "the engine sent an unreadable build message: {error}"
            ));
            return;
        }
    };
    if let Some(text) = &message.stream {
        log.text(text);
    }
    if let Some(detail) = message.error_detail.and_then(|detail| detail.message) {
        log.fail(detail);
        return;
    }
    if let Some(error) = message.error {
        log.fail(error);
        return;
    }
    match (message.id.as_deref(), message.aux) {
        (Some("moby.buildkit.trace"), Some(Aux::Text(encoded))) => log.trace(&encoded),
        (_, Some(Aux::Image(Some(id)))) => log.id = Some(id),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_addresses_sgr_can_speak_to() {
        assert_eq!(
            Transport::from_host("unix:///run/docker.sock"),
            Some(Transport::Unix(PathBuf::from("/run/docker.sock")))
        );
        assert_eq!(
            Transport::from_host("tcp://127.0.0.1:2375"),
            Some(Transport::Tcp("127.0.0.1:2375".to_owned()))
        );
        assert_eq!(
            Transport::from_host("http://docker:2375/"),
            Some(Transport::Tcp("docker:2375".to_owned()))
        );
        for other in [
            "ssh://user@host",
            "npipe:////./pipe/docker_engine",
            "https://host:2376",
            "unix://",
            "tcp://",
            "tcp://host:2375/path",
            "tcp://user@host:2375",
            "tcp://host",
            "tcp://host:",
            "tcp://:2375",
            "tcp://host:port",
        ] {
            assert_eq!(Transport::from_host(other), None, "{other}");
        }
    }

    #[test]
    fn aux_values_are_read_without_holding_what_is_not_needed() {
        let aux = |json: &str| {
            serde_json::from_str::<Message>(json)
                .map(|message| message.aux)
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            aux(r#"{"aux":"Cg=="}"#),
            Ok(Some(Aux::Text("Cg==".to_owned())))
        );
        assert_eq!(
            aux(r#"{"aux":{"x":[1,{"y":2}],"ID":"sha256:a","ID":"sha256:b"}}"#),
            Ok(Some(Aux::Image(Some("sha256:a".to_owned()))))
        );
        assert_eq!(aux(r#"{"aux":{"ID":null}}"#), Ok(Some(Aux::Image(None))));
        assert_eq!(aux(r#"{"aux":[0,0,0,[1]]}"#), Ok(Some(Aux::Other)));
        assert_eq!(aux(r#"{"aux":null}"#), Ok(None));
        assert_eq!(aux(r#"{"aux":12.5}"#), Ok(Some(Aux::Other)));
        assert!(aux(r#"{"aux":{"ID":5}}"#).is_err());
    }

    #[test]
    fn the_query_asks_for_buildkit_and_encodes_every_value() {
        let args = BTreeMap::from([("A".to_owned(), "x&y=z".to_owned())]);
        let labels = BTreeMap::from([("l".to_owned(), "é \"q\"".to_owned())]);
        let query = Options {
            tag: "org/img:feature-x",
            dockerfile: ".sgr.Dockerfile",
            build_args: &args,
            labels: &labels,
            no_cache: true,
            pull: false,
            target: Some("final"),
            network: Some("none"),
        }
        .query();
        let pairs: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(pairs["version"], "2");
        assert_eq!(pairs["t"], "org/img:feature-x");
        assert_eq!(pairs["buildargs"], r#"{"A":"x&y=z"}"#);
        assert_eq!(pairs["labels"], r#"{"l":"é \"q\""}"#);
        assert_eq!(pairs["nocache"], "1");
        assert_eq!(pairs["target"], "final");
        assert_eq!(pairs["networkmode"], "none");
        assert!(!pairs.contains_key("pull"));
    }
}
