//! The HTTP side: discovery, routing each REST path to the store, the
//! logs and the job controller, and the JSON and streamed answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::jobs::run_job;
use super::logs::logs;
use super::store::{apply_merge, json_merge, matches_selector, remove, store, watch};
use super::{Body, State, WatchEvent, lock};

/// `(api prefix, plural, kind, namespaced)` of every kind served.
pub(super) const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("/api/v1", "namespaces", "Namespace", false),
    ("/api/v1", "configmaps", "ConfigMap", true),
    ("/api/v1", "secrets", "Secret", true),
    ("/api/v1", "services", "Service", true),
    ("/api/v1", "serviceaccounts", "ServiceAccount", true),
    ("/api/v1", "pods", "Pod", true),
    (
        "/api/v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    (
        "/api/v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
    ),
    ("/apis/apps/v1", "deployments", "Deployment", true),
    ("/apis/batch/v1", "jobs", "Job", true),
    ("/apis/rbac.authorization.k8s.io/v1", "roles", "Role", true),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
];

pub(super) fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response =
        Response::new(http_body_util::Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code.is_success() {"Success"} else {"Failure"},
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

pub(super) fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), decode(value)))
        })
        .collect()
}

pub(super) fn decode(text: &str) -> String {
    let mut bytes = Vec::new();
    let raw = text.as_bytes();
    let mut index = 0;
    while index < raw.len() {
        if raw[index] == b'%'
            && index + 2 < raw.len()
            && let Ok(byte) = u8::from_str_radix(
                std::str::from_utf8(&raw[index + 1..index + 3]).unwrap_or(""),
                16,
            )
        {
            bytes.push(byte);
            index += 3;
            continue;
        }
        bytes.push(if raw[index] == b'+' { b' ' } else { raw[index] });
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(super) fn discovery(path: &str) -> Option<Value> {
    match path {
        "/api" => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        "/apis" => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
                {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
                {"name": "rbac.authorization.k8s.io", "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}}
            ]}),
        ),
        _ => {
            let prefix = path;
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|(api, ..)| *api == prefix)
                .flat_map(|(_, plural, kind, namespaced)| {
                    let main = json!({"name": plural, "singularName": kind.to_ascii_lowercase(), "namespaced": namespaced, "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
                    let log = (*plural == "pods").then(|| json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
                    std::iter::once(main).chain(log)
                })
                .collect();
            if resources.is_empty() {
                return None;
            }
            let group_version = prefix
                .trim_start_matches("/apis/")
                .trim_start_matches("/api/");
            Some(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
            )
        }
    }
}

#[allow(clippy::too_many_lines)]
pub(super) async fn handle(
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path().to_owned();
    let query = query(&uri);
    let merge_patch = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(b"application/merge-patch+json")
        });
    let body_bytes = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    lock(&state).received.push((
        method.to_string(),
        uri.to_string(),
        String::from_utf8_lossy(&body_bytes).into_owned(),
    ));
    if method == Method::GET
        && let Some(answer) = discovery(&path)
    {
        return full(StatusCode::OK, &answer);
    }
    let Some((prefix, plural, kind, namespaced)) =
        RESOURCES.iter().copied().find(|(prefix, plural, ..)| {
            path.strip_prefix(prefix).is_some_and(|rest| {
                let segments: Vec<&str> = rest
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .collect();
                match segments.as_slice() {
                    ["namespaces", _, resource, ..] => resource == plural,
                    [first, ..] => first == plural,
                    [] => false,
                }
            })
        })
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find {path}"),
        );
    };
    let rest: Vec<&str> = path[prefix.len()..]
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let (namespace, name, subresource) = match rest.as_slice() {
        ["namespaces", namespace, resource, name, sub] if *resource == plural => (
            (*namespace).to_owned(),
            Some((*name).to_owned()),
            Some(*sub),
        ),
        ["namespaces", namespace, resource, name] if *resource == plural => {
            ((*namespace).to_owned(), Some((*name).to_owned()), None)
        }
        ["namespaces", namespace, resource] if *resource == plural && namespaced => {
            ((*namespace).to_owned(), None, None)
        }
        ["namespaces", name] if plural == "namespaces" => {
            (String::new(), Some((*name).to_owned()), None)
        }
        [resource] if *resource == plural => (String::new(), None, None),
        [resource, name] if *resource == plural => (String::new(), Some((*name).to_owned()), None),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the server could not find {path}"),
            );
        }
    };
    let key = |name: &str| (plural.to_owned(), namespace.clone(), name.to_owned());
    match (method, name, subresource) {
        (Method::GET, Some(name), Some("log")) => logs(state, &namespace, &name, &query),
        (Method::GET, Some(name), None) => match lock(&state).objects.get(&key(&name)) {
            Some(object) => full(StatusCode::OK, object),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{plural} \"{name}\" not found"),
            ),
        },
        (Method::GET, None, _)
            if query
                .get("watch")
                .is_some_and(|watch| watch == "true" || watch == "1") =>
        {
            watch(&state, &events, plural, &namespace, &query)
        }
        (Method::GET, None, _) => {
            let state = lock(&state);
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|((resource, object_namespace, _), object)| {
                    resource == plural
                        && (namespace.is_empty() || *object_namespace == namespace)
                        && matches_selector(object, query.get("labelSelector"))
                })
                .map(|(_, object)| object.clone())
                .collect();
            full(
                StatusCode::OK,
                &json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": state.version.to_string()}, "items": items}),
            )
        }
        (Method::PATCH, Some(name), None) => {
            let Ok(applied) = serde_json::from_slice::<Value>(&body_bytes) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the patch is not JSON",
                );
            };
            if merge_patch {
                // RFC 7386 JSON merge patch of an existing object.
                let Some(mut stored) = lock(&state).objects.get(&key(&name)).cloned() else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{plural} \"{name}\" not found"),
                    );
                };
                json_merge(&mut stored, &applied);
                let stored = store(&state, &events, plural, &namespace, stored, "MODIFIED");
                return full(StatusCode::OK, &stored);
            }
            if applied["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "metadata.name does not match the URL",
                );
            }
            let existing = lock(&state).objects.get(&key(&name)).cloned();
            let created = existing.is_none();
            let merged = match existing {
                Some(stored) => apply_merge(stored, &applied),
                None => applied,
            };
            let stored = store(&state, &events, plural, &namespace, merged, "ADDED");
            if created && plural == "jobs" {
                tokio::spawn(run_job(
                    Arc::clone(&state),
                    events.clone(),
                    namespace.clone(),
                    stored.clone(),
                ));
            }
            full(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &stored,
            )
        }
        (Method::POST, None, _) => {
            let Ok(object) = serde_json::from_slice::<Value>(&body_bytes) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON",
                );
            };
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if lock(&state).objects.contains_key(&key(&name)) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{plural} \"{name}\" already exists"),
                );
            }
            let stored = store(&state, &events, plural, &namespace, object, "ADDED");
            if plural == "jobs" {
                tokio::spawn(run_job(
                    Arc::clone(&state),
                    events.clone(),
                    namespace.clone(),
                    stored.clone(),
                ));
            }
            full(StatusCode::CREATED, &stored)
        }
        (Method::DELETE, Some(name), None) => {
            match remove(&state, &events, plural, &namespace, &name) {
                Some(removed) => full(StatusCode::OK, &removed),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the fake",
        ),
    }
}

pub(super) fn stream_response(receiver: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = tokio_stream(receiver).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(http_body_util::BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn tokio_stream(
    mut receiver: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |context| receiver.poll_recv(context))
}
