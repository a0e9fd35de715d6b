//! The object store: create, apply, delete with owner garbage collection,
//! and the watch over its numbered history (410 Gone once compacted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::server::stream_response;
use super::{Body, DROP_WATCHES, State, WatchEvent, lock};

pub(super) fn stamp(state: &mut State) -> String {
    state.clock += 1;
    let seconds = state.clock;
    let days = seconds / 86_400;
    let (year, month, day) = civil(i64::try_from(days).unwrap_or(0));
    let rest = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Store `object` (creating metadata as the API server does) and announce it.
pub(super) fn store(
    state: &Mutex<State>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    mut object: Value,
    kind: &'static str,
) -> Value {
    let event = {
        let mut state = lock(state);
        state.version += 1;
        let version = state.version;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (plural.to_owned(), namespace.to_owned(), name);
        let existing_uid = state
            .objects
            .get(&key)
            .and_then(|old| old["metadata"]["uid"].as_str().map(str::to_owned));
        let created = state.objects.get(&key).and_then(|old| {
            old["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_owned)
        });
        let uid = existing_uid.unwrap_or_else(|| {
            state.next_uid += 1;
            format!("00000000-0000-4000-8000-{:012}", state.next_uid)
        });
        let created = match created {
            Some(created) => created,
            None => stamp(&mut state),
        };
        let metadata = object["metadata"].as_object_mut();
        if let Some(metadata) = metadata {
            metadata.insert("uid".to_owned(), json!(uid));
            metadata.insert("resourceVersion".to_owned(), json!(version.to_string()));
            metadata.insert("creationTimestamp".to_owned(), json!(created));
            if !namespace.is_empty() {
                metadata.insert("namespace".to_owned(), json!(namespace));
            }
        }
        let kind = if state.objects.contains_key(&key)
            || kind == "MODIFIED" && state.objects.contains_key(&key)
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state.objects.insert(key, object.clone());
        let event = WatchEvent {
            kind,
            resource: plural.to_owned(),
            object: object.clone(),
            version,
        };
        state.history.push(event.clone());
        event
    };
    let _ = events.send(event);
    object
}

pub(super) fn remove(
    state: &Mutex<State>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let (removed, dependents) = {
        let mut state = lock(state);
        let removed =
            state
                .objects
                .remove(&(plural.to_owned(), namespace.to_owned(), name.to_owned()))?;
        let uid = removed["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Garbage collection: objects owned by it, and a Job's pods.
        let dependents: Vec<(String, String, String)> = state
            .objects
            .iter()
            .filter(|(_, object)| {
                object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == json!(uid)))
                    || (plural == "jobs"
                        && object["metadata"]["labels"]["job-name"].as_str() == Some(name))
            })
            .map(|(key, _)| key.clone())
            .collect();
        state.version += 1;
        let mut object = removed.clone();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.insert(
                "resourceVersion".to_owned(),
                json!(state.version.to_string()),
            );
        }
        let event = WatchEvent {
            kind: "DELETED",
            resource: plural.to_owned(),
            object,
            version: state.version,
        };
        state.history.push(event.clone());
        let _ = events.send(event);
        (removed, dependents)
    };
    for (plural, namespace, name) in dependents {
        remove(state, events, &plural, &namespace, &name);
    }
    Some(removed)
}

/// Merge an applied object into the stored one, field by field at the top
/// level (enough for what sgr applies): metadata labels/annotations merge,
/// everything else is replaced.
/// RFC 7386: objects merge recursively, `null` removes a member.
pub(super) fn json_merge(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(object) = target.as_object_mut() {
        for (key, value) in fields {
            if value.is_null() {
                object.remove(key);
            } else {
                json_merge(object.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

pub(super) fn apply_merge(mut stored: Value, applied: &Value) -> Value {
    if let (Some(target), Some(source)) = (stored.as_object_mut(), applied.as_object()) {
        for (key, value) in source {
            if key == "metadata" {
                for field in ["labels", "annotations", "ownerReferences"] {
                    if !value[field].is_null() {
                        target.entry("metadata").or_insert_with(|| json!({}))[field] =
                            value[field].clone();
                    }
                }
            } else if matches!(key.as_str(), "data" | "stringData")
                && let (Some(existing), Some(fields)) = (
                    target.get_mut(key).and_then(Value::as_object_mut),
                    value.as_object(),
                )
            {
                // Map fields are owned key by key: other managers' keys stay.
                for (field, field_value) in fields {
                    existing.insert(field.clone(), field_value.clone());
                }
            } else if key != "status" {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    stored
}

pub(super) fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|selector| !selector.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => {
            object["metadata"]["labels"][key.trim_end_matches('=')].as_str()
                == Some(value.trim_start_matches('='))
        }
        None => !object["metadata"]["labels"][term].is_null(),
    })
}

pub(super) fn watch(
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|version| version.parse().ok())
        .unwrap_or(0);
    let selector = query.get("labelSelector").cloned();
    let (sender, receiver) = mpsc::channel::<Bytes>(1024);
    let (backlog, gone) = {
        let state = lock(state);
        let gone = since != 0 && since < state.compacted_below;
        let backlog: Vec<WatchEvent> = state
            .history
            .iter()
            .filter(|event| event.version > since)
            .cloned()
            .collect();
        (backlog, gone)
    };
    let mut subscription = events.subscribe();
    let plural = plural.to_owned();
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        if gone {
            let error = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {since}"), "reason": "Expired", "code": 410}});
            let _ = sender.send(Bytes::from(format!("{error}\n"))).await;
            return;
        }
        let wanted = |event: &WatchEvent| {
            event.resource == plural
                && (namespace.is_empty()
                    || event.object["metadata"]["namespace"].as_str() == Some(namespace.as_str()))
                && matches_selector(&event.object, selector.as_ref())
        };
        let mut last = since;
        for event in backlog {
            if wanted(&event) {
                last = event.version;
                let line = json!({"type": event.kind, "object": event.object});
                if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
        }
        loop {
            match subscription.recv().await {
                // `drop_watches`: end every open watch, as a restarting API server does.
                Ok(event) if event.resource == DROP_WATCHES => return,
                Ok(event) if event.version > last && wanted(&event) => {
                    last = event.version;
                    let line = json!({"type": event.kind, "object": event.object});
                    if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    stream_response(receiver)
}
