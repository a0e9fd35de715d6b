//! `pods/{name}/log` with `follow`, `sinceTime` and `timestamps`, and the
//! scripted faults: dropped connections and rotation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::server::{status, stream_response};
use super::{Body, LogLine, State, lock};

/// `pods/{name}/log`: the container's lines from `sinceTime`, followed while it runs.
#[allow(clippy::too_many_lines)]
pub(super) fn logs(
    state: Arc<Mutex<State>>,
    namespace: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let container = query.get("container").cloned().unwrap_or_else(|| {
        lock(&state)
            .objects
            .get(&("pods".to_owned(), namespace.to_owned(), pod.to_owned()))
            .and_then(|object| {
                object["spec"]["containers"][0]["name"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    });
    let key = (namespace.to_owned(), pod.to_owned(), container);
    if !lock(&state).logs.contains_key(&key) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("container in pod {pod} is waiting to start"),
        );
    }
    let follow = query.get("follow").is_some_and(|value| value == "true");
    let timestamps = query.get("timestamps").is_some_and(|value| value == "true");
    let since = query.get("sinceTime").cloned();
    let (sender, receiver) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let mut index = {
            let state = lock(&state);
            let lines = &state.logs[&key].lines;
            match &since {
                // RFC 3339 strings of the same shape compare in time order; seconds precision as the API.
                Some(since) => lines
                    .iter()
                    .position(|line| line.timestamp[..19] >= since[..19.min(since.len())])
                    .unwrap_or(lines.len()),
                None => 0,
            }
        };
        let mut sent_here = 0;
        loop {
            let (batch, done, cut, rotate) = {
                let mut state = lock(&state);
                let faults = state.log_faults;
                let log = &state.logs[&key];
                let batch: Vec<LogLine> = log.lines[index.min(log.lines.len())..]
                    .iter()
                    .take(64)
                    .cloned()
                    .collect();
                let done = log.done;
                let cut = faults.cuts > state.cuts_done
                    && faults.cut_after > 0
                    && sent_here >= faults.cut_after;
                let rotate =
                    follow && !state.rotated && faults.rotate_at.is_some_and(|at| index >= at);
                if cut {
                    state.cuts_done += 1;
                }
                if rotate {
                    state.rotated = true;
                }
                (batch, done, cut, rotate)
            };
            if rotate {
                return;
            }
            if cut {
                // A dropped connection, mid-line.
                let partial = lock(&state).logs[&key].lines.get(index).map(|line| {
                    let text = if timestamps {
                        format!("{} {}", line.timestamp, line.text)
                    } else {
                        line.text.clone()
                    };
                    let half = text.len() / 2;
                    Bytes::from(text.as_bytes()[..half].to_vec())
                });
                if let Some(partial) = partial {
                    let _ = sender.send(partial).await;
                }
                return;
            }
            if batch.is_empty() {
                if done || !follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let mut chunk = String::new();
            for line in &batch {
                if timestamps {
                    chunk.push_str(&line.timestamp);
                    chunk.push(' ');
                }
                chunk.push_str(&line.text);
                chunk.push('\n');
                index += 1;
                sent_here += 1;
                let faults = lock(&state).log_faults;
                if faults.cut_after > 0 && sent_here >= faults.cut_after {
                    break;
                }
            }
            if sender.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut response = stream_response(receiver);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}
