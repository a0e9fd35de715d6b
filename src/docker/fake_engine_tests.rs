//! `Engine::build` against a fake engine that speaks the Engine API over TCP:
//! the BuildKit request, its refusal and the classic fallback, and hostile or
//! broken build streams. The BuildKit streams served are the real engine's
//! bytes (`tests/engine/`) or are derived from them.

// Tests: a failed expectation is the failure (CONVENTIONS.md: no expect outside tests).
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use sgr_test_support::LoopbackServer;

use super::*;

/// What the fake answers to `POST /build?version=2`.
#[derive(Clone)]
enum BuildKitAnswer {
    /// 400 with this message, before reading the context.
    Refuse(&'static str),
    /// 200 with this body, after reading the context.
    Stream(Bytes),
    /// No answer at all.
    Silent,
}

struct FakeEngine {
    _server: LoopbackServer,
    host: String,
    /// `METHOD path?query` of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// The context each build request carried.
    received: Arc<Mutex<Vec<Bytes>>>,
}

const IMAGE_ID: &str = "sha256:7286edcfa813dac39a754f71f63733eaadf6159286d7e920aecf4a75e5d5f9a5";

fn json(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid response")
}

async fn body(request: Request<Incoming>) -> Bytes {
    request
        .into_body()
        .collect()
        .await
        .map_or_else(|_| Bytes::new(), http_body_util::Collected::to_bytes)
}

fn fake_engine(bridge: bool, answer: BuildKitAnswer) -> FakeEngine {
    let server = LoopbackServer::new("fake-engine").expect("a runtime");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (seen, sizes) = (Arc::clone(&requests), Arc::clone(&received));
    let address = server
        .listen_http(move |request: Request<Incoming>| {
            let (seen, sizes, answer) = (Arc::clone(&seen), Arc::clone(&sizes), answer.clone());
            async move {
                let path = request.uri().path().to_owned();
                let query = request.uri().query().unwrap_or("").to_owned();
                seen.lock()
                    .expect("not poisoned")
                    .push(format!("{} {path}?{query}", request.method()));
                let buildkit = query.split('&').any(|pair| pair == "version=2");
                match path.trim_start_matches("/v1.41") {
                    "/version" => json(
                        200,
                        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Version":"20.10.24"}"#,
                    ),
                    "/_ping" => json(200, "OK"),
                    "/networks/bridge" if bridge => json(200, r#"{"Name":"bridge","Id":"b"}"#),
                    "/networks/bridge" => json(404, r#"{"message":"network bridge not found"}"#),
                    "/build" if buildkit => match answer {
                        BuildKitAnswer::Refuse(message) => {
                            let mut answer = json(400, &format!(r#"{{"message":"{message}"}}"#));
                            // As an engine that checks the options first: the context unread.
                            answer.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                            answer
                        }
                        BuildKitAnswer::Silent => {
                            tokio::time::sleep(std::time::Duration::from_mins(10)).await;
                            json(500, "{}")
                        }
                        BuildKitAnswer::Stream(bytes) => {
                            let context = body(request).await;
                            sizes.lock().expect("not poisoned").push(context);
                            Response::new(Full::new(bytes))
                        }
                    },
                    "/build" => {
                        let context = body(request).await;
                        sizes.lock().expect("not poisoned").push(context);
                        json(
                            200,
                            &format!(
                                "{{\"stream\":\"Step 1/1 : FROM scratch\\n\"}}\r\n{{\"aux\":{{\"ID\":\"{IMAGE_ID}\"}}}}\r\n{{\"stream\":\"Successfully built 7286edcfa813\\n\"}}\r\n"
                            ),
                        )
                    }
                    other if other == format!("/images/{IMAGE_ID}/json") => json(
                        200,
                        &format!(r#"{{"Id":"{IMAGE_ID}","Size":1979024}}"#),
                    ),
                    other if other.ends_with("/tag") => json(201, ""),
                    _ => json(404, r#"{"message":"no such route"}"#),
                }
            }
        })
        .expect("a listener");
    FakeEngine {
        _server: server,
        host: format!("tcp://{address}"),
        requests,
        received,
    }
}

/// A context of `size` bytes in one file.
fn context(size: usize) -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(directory.path().join("data"), vec![7_u8; size]).expect("writable");
    directory
}

fn request(directory: &Path, dockerfile: &str, builder: BuilderChoice) -> BuildRequest {
    BuildRequest {
        image: "org/image".to_owned(),
        context: directory.to_path_buf(),
        ignore: DockerIgnore::default(),
        include_git: false,
        dockerfile: dockerfile.as_bytes().to_vec(),
        tags: vec![
            "org/image:main".to_owned(),
            "localhost:32000/org/image:main".to_owned(),
        ],
        build_args: BTreeMap::new(),
        labels: BTreeMap::new(),
        no_cache: false,
        pull: false,
        target: None,
        network: None,
        builder,
        sent: std::sync::Arc::default(),
    }
}

/// Build `request` on `engine`: the result and every output line.
fn build(
    engine: &FakeEngine,
    request: BuildRequest,
) -> (Result<BuiltImage, DockerError>, Vec<String>) {
    build_within(&engine.host, request, RESPONSE_TIMEOUT)
}

/// [`build`] with the engine's answer to the BuildKit request awaited at most `patience`.
fn build_within(
    host: &str,
    request: BuildRequest,
    patience: Duration,
) -> (Result<BuiltImage, DockerError>, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut lines = Vec::new();
    let result = runtime.block_on(async {
        let docker = Engine::connect(Some(host))
            .await?
            .with_response_timeout(patience);
        let building = docker.build(request, |line| lines.push(line.to_owned()));
        // A hang detector, not a speed check.
        tokio::time::timeout(Duration::from_mins(1), building)
            .await
            .expect("the build did not hang")
    });
    (result, lines)
}

fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/engine")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display())))
}

#[test]
fn the_real_engines_buildkit_stream_is_followed_to_its_image() {
    let engine = fake_engine(
        true,
        BuildKitAnswer::Stream(fixture("buildkit-run-ok.jsonl")),
    );
    let directory = context(300 * 1024);
    let dockerfile = "FROM scratch\nCOPY data /data\nRUN [\"/bin/busybox\", \"true\"]\n";
    let (result, lines) = build(
        &engine,
        request(directory.path(), dockerfile, BuilderChoice::Auto),
    );
    let built = result.expect("built");
    assert_eq!(built.id, IMAGE_ID);
    assert_eq!(built.size, 1_979_024);
    assert_eq!(
        lines[0],
        "sgr: building with BuildKit (the engine offers it (API 1.41))"
    );
    for expected in [
        r#"[2/2] RUN ["/bin/busybox","sh","-c","echo hello from run; echo second line"]"#,
        " hello from run",
        " second line",
        "exporting to image",
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with('#') && line.contains(expected)),
            "no line with {expected:?} in {lines:#?}"
        );
    }
    // The context went to the BuildKit request, whole, once; the second tag was added after.
    let requests = engine.requests.lock().expect("not poisoned").clone();
    let builds: Vec<&String> = requests
        .iter()
        .filter(|line| line.contains("/build"))
        .collect();
    assert_eq!(builds.len(), 1, "{requests:#?}");
    assert!(builds[0].contains("version=2") && builds[0].contains("t=org%2Fimage%3Amain"));
    assert!(engine.received.lock().expect("not poisoned")[0].len() > 300 * 1024);
    assert!(
        requests
            .iter()
            .any(|line| line.contains("/tag?") && line.contains("localhost%3A32000")),
        "{requests:#?}"
    );
}

#[test]
fn a_failing_step_fails_the_build_with_its_output_and_the_engines_reason() {
    let engine = fake_engine(
        true,
        BuildKitAnswer::Stream(fixture("buildkit-run-fails.jsonl")),
    );
    let directory = context(10);
    let (result, _) = build(
        &engine,
        request(
            directory.path(),
            "FROM scratch\nRUN x\n",
            BuilderChoice::BuildKit,
        ),
    );
    let error = result.expect_err("the build fails").to_string();
    assert!(
        error.starts_with("building org/image failed: executor failed running"),
        "{error}"
    );
    assert!(error.contains("exit code: 3"), "{error}");
    assert!(
        error.contains(" about-to-fail"),
        "the step's output: {error}"
    );
}

#[test]
fn an_engine_that_refuses_buildkit_gets_the_classic_build_unless_buildkit_was_demanded() {
    // The refusal comes while the context is still being sent, and the engine closes the
    // connection: the answer is read when it arrives first, and the closed connection is
    // a failure before the build started otherwise; either way the classic build follows.
    for size in [4, 48, 48, 48] {
        let directory = context(size * 1024 * 1024);
        let engine = fake_engine(true, BuildKitAnswer::Refuse("buildkit not supported"));
        let build_request = request(directory.path(), "FROM scratch\n", BuilderChoice::Auto);
        let sent = Arc::clone(&build_request.sent);
        let (result, lines) = build(&engine, build_request);
        assert_eq!(result.expect("built by the classic builder").id, IMAGE_ID);
        assert!(
            lines.iter().any(|line| line.contains(
                "refused the BuildKit build (400: buildkit not supported); building with the classic builder"
            ) || line.contains(
                "request failed before the build started"
            )),
            "{lines:#?}"
        );
        assert!(lines.iter().any(|line| line == "Step 1/1 : FROM scratch"));
        let contexts = engine.received.lock().expect("not poisoned").clone();
        assert_eq!(contexts.len(), 1);
        assert!(
            contexts[0].len() > size * 1024 * 1024,
            "the whole context went to the classic build"
        );
        // The progress count is the classic build's context, not both attempts'.
        assert_eq!(
            sent.load(std::sync::atomic::Ordering::Relaxed),
            contexts[0].len() as u64
        );
    }
    // Demanded: the refusal is the error (its wording depends on which of the answer and the
    // closed connection sgr sees first; both say the engine may have refused it).
    let directory = context(1024);
    let engine = fake_engine(true, BuildKitAnswer::Refuse("buildkit not supported"));
    let (result, _) = build(
        &engine,
        request(directory.path(), "FROM scratch\n", BuilderChoice::BuildKit),
    );
    let error = result.expect_err("BuildKit was demanded").to_string();
    assert!(
        error.contains("the engine refused the BuildKit build (400): buildkit not supported")
            || error.contains("failed before the build started")
                && error.contains("the engine may have refused it"),
        "{error}"
    );
    assert!(error.ends_with("hint: --builder auto builds with the classic builder when the BuildKit request fails before the build starts"), "{error}");
}

#[test]
fn without_a_bridge_network_run_steps_take_the_classic_builder() {
    let directory = context(10);
    let engine = fake_engine(false, BuildKitAnswer::Refuse("must not be asked"));
    let (result, lines) = build(
        &engine,
        request(
            directory.path(),
            "FROM scratch\n  run echo x\n",
            BuilderChoice::Auto,
        ),
    );
    result.expect("built");
    assert!(
        lines[0].starts_with(
            "sgr: building with the classic builder (the engine has no bridge network"
        ),
        "{lines:#?}"
    );
    let requests = engine.requests.lock().expect("not poisoned").clone();
    assert!(
        !requests.iter().any(|line| line.contains("version=2")),
        "{requests:#?}"
    );
    // No RUN step: BuildKit is fine without a bridge.
    let engine = fake_engine(
        false,
        BuildKitAnswer::Stream(fixture("buildkit-run-ok.jsonl")),
    );
    let (result, lines) = build(
        &engine,
        request(
            directory.path(),
            "FROM scratch\nCOPY data /d\n",
            BuilderChoice::Auto,
        ),
    );
    result.expect("built");
    assert!(
        lines[0].starts_with("sgr: building with BuildKit"),
        "{lines:#?}"
    );
}

/// The fixture's messages with `replace` applied to the first trace message.
fn hostile(replace: impl Fn(&str) -> String) -> Bytes {
    let text = String::from_utf8(fixture("buildkit-run-ok.jsonl").to_vec()).expect("UTF-8");
    let mut done = false;
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if !done && line.contains("moby.buildkit.trace") {
            out.push_str(&replace(line));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    Bytes::from(out)
}

#[test]
fn hostile_build_streams_are_refused_or_skipped_never_trusted() {
    let directory = context(10);
    let run = |bytes: Bytes| {
        let engine = fake_engine(true, BuildKitAnswer::Stream(bytes));
        build(
            &engine,
            request(directory.path(), "FROM scratch\n", BuilderChoice::BuildKit),
        )
    };
    // Progress that cannot be decoded is said once and skipped; the image is still built.
    let (result, lines) = run(hostile(|_| {
        "{\"id\":\"moby.buildkit.trace\",\"aux\":\"not base64!\"}\r\n{\"id\":\"moby.buildkit.trace\",\"aux\":\"Cv8=\"}\r\n".to_owned()
    }));
    assert_eq!(result.expect("built").id, IMAGE_ID);
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.contains("could not be read"))
            .count(),
        1,
        "{lines:#?}"
    );
    // A line that is not JSON ends the build, naming the image.
    let (result, _) = run(hostile(|_| "<html>proxy error</html>\r\n".to_owned()));
    let error = result.expect_err("not JSON").to_string();
    assert!(
        error.contains("org/image") && error.contains("unreadable build message"),
        "{error}"
    );
    // A message over the bound ends the build instead of filling memory.
    let huge = format!("{{\"stream\":\"{}", "x".repeat(buildkit::MAX_MESSAGE + 1));
    let (result, _) = run(hostile(move |_| huge.clone()));
    let error = result.expect_err("oversized").to_string();
    assert!(error.contains("over 16 MiB"), "{error}");
    // A stream without the image id is a failure, not a success without an image.
    let text = String::from_utf8(fixture("buildkit-run-ok.jsonl").to_vec()).expect("UTF-8");
    let without_id: String = text
        .split_inclusive('\n')
        .filter(|line| !line.contains("moby.image.id"))
        .collect();
    let (result, _) = run(Bytes::from(without_id));
    let error = result.expect_err("no id").to_string();
    assert!(error.contains("did not report an image id"), "{error}");
    // Deeply nested JSON: skipped where it is ignored (an aux of no use), refused by the
    // parser's depth limit where it is read; never the stack.
    let deep = format!(
        "{{\"aux\":{}{}}}\r\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (result, _) = run(hostile(move |_| deep.clone()));
    assert_eq!(result.expect("skipped").id, IMAGE_ID);
    let deep = format!(
        "{{\"errorDetail\":{{\"message\":{}{}}}}}\r\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (result, _) = run(hostile(move |_| deep.clone()));
    let error = result.expect_err("too deep").to_string();
    assert!(error.contains("unreadable build message"), "{error}");
}

#[test]
fn docker_buildkit_reads_as_the_docker_cli_reads_it() {
    for (value, choice) in [
        ("1", BuilderChoice::BuildKit),
        ("true", BuilderChoice::BuildKit),
        ("TRUE", BuilderChoice::BuildKit),
        ("0", BuilderChoice::Classic),
        ("false", BuilderChoice::Classic),
    ] {
        assert_eq!(
            BuilderChoice::from_docker_buildkit(value),
            Ok(choice),
            "{value}"
        );
    }
    assert!(BuilderChoice::from_docker_buildkit("yes").is_err());
}

#[test]
fn the_builder_decision() {
    let linux = Facts {
        linux: Some(true),
        api: (1, 41),
        bridge: true,
    };
    let auto = |facts, network, runs| decide(BuilderChoice::Auto, true, facts, network, runs);
    assert!(auto(linux, None, true).expect("decided").buildkit);
    assert!(auto(linux, Some("host"), true).expect("decided").buildkit);
    assert!(
        !auto(linux, Some("my-net"), false)
            .expect("decided")
            .buildkit
    );
    let old = Facts {
        api: (1, 38),
        ..linux
    };
    assert!(!auto(old, None, false).expect("decided").buildkit);
    let windows = Facts {
        linux: Some(false),
        ..linux
    };
    assert!(!auto(windows, None, false).expect("decided").buildkit);
    let bridgeless = Facts {
        bridge: false,
        ..linux
    };
    assert!(!auto(bridgeless, None, true).expect("decided").buildkit);
    assert!(
        !auto(bridgeless, Some("default"), true)
            .expect("decided")
            .buildkit
    );
    assert!(
        auto(bridgeless, Some("none"), true)
            .expect("decided")
            .buildkit
    );
    assert!(auto(bridgeless, None, false).expect("decided").buildkit);
    // Not over ssh:// and the like.
    assert!(
        !decide(BuilderChoice::Auto, false, linux, None, false)
            .expect("decided")
            .buildkit
    );
    // Demanded where impossible: an error saying why.
    let error =
        decide(BuilderChoice::BuildKit, true, windows, None, false).expect_err("no BuildKit");
    assert!(error.contains("not Linux"), "{error}");
    // An engine whose version could not be read is not called "not Linux".
    let unknown = Facts {
        linux: None,
        ..linux
    };
    assert!(!auto(unknown, None, false).expect("decided").buildkit);
    let error =
        decide(BuilderChoice::BuildKit, true, unknown, None, false).expect_err("no BuildKit");
    assert!(error.contains("did not say what it runs on"), "{error}");
    assert!(decide(BuilderChoice::BuildKit, false, linux, None, false).is_err());
    assert!(decide(BuilderChoice::BuildKit, true, linux, Some("my-net"), false).is_err());
    // Demanded without a bridge: tried (the failure then carries a hint).
    assert!(
        decide(BuilderChoice::BuildKit, true, bridgeless, None, true)
            .expect("decided")
            .buildkit
    );
    assert!(
        !decide(BuilderChoice::Classic, true, linux, None, false)
            .expect("decided")
            .buildkit
    );
}

#[test]
fn run_steps_are_found_in_any_case_and_form() {
    assert!(has_run_step(b"FROM x\nRUN make\n"));
    assert!(has_run_step(b"FROM x\n  run [\"make\"]\n"));
    assert!(has_run_step(b"FROM x\nRUN\tmake"));
    assert!(!has_run_step(
        b"FROM x\nRUNNER=1\nCOPY run /run\n# run later\n"
    ));
    assert!(!has_run_step(&[0xff, 0xfe, b'\n']));
}

#[test]
fn syntax_directives_are_found_only_where_they_are_directives() {
    let syntax = |text: &[u8]| syntax_directive(text);
    assert_eq!(
        syntax(b"# syntax=docker/dockerfile:1\nFROM x\n").as_deref(),
        Some("docker/dockerfile:1")
    );
    assert_eq!(
        syntax(b"#escape=`\n#  SYNTAX = x/y\nFROM x\n").as_deref(),
        Some("x/y")
    );
    assert_eq!(syntax(b"FROM x\n# syntax=docker/dockerfile:1\n"), None);
    assert_eq!(syntax(b"# syntaxes are nice\nFROM x\n"), None);
    assert_eq!(syntax(b"#\xc3\xa9\nFROM x\n"), None);
}

#[test]
fn hints_follow_the_builder_that_ran_and_the_failure() {
    let dockerfile = b"# syntax=docker/dockerfile:1\nFROM scratch\nRUN x\n";
    let pull = r#"failed to solve with frontend dockerfile.v0: failed to solve with frontend gateway.v0: failed to do request: Head "https://registry-1.docker.io/v2/docker/dockerfile/manifests/1": dial tcp: lookup registry-1.docker.io: no such host"#;
    assert!(buildkit_hint(true, pull, dockerfile).is_some_and(|hint| hint.contains("# syntax=")));
    // The classic builder ran (after a fallback): no BuildKit hint.
    assert_eq!(buildkit_hint(false, pull, dockerfile), None);
    // Another failure of the same Dockerfile: no frontend hint.
    let missing = r#"failed to solve with frontend dockerfile.v0: failed to build LLB: failed to compute cache key: "/missing" not found"#;
    assert_eq!(buildkit_hint(true, missing, dockerfile), None);
    assert!(
        buildkit_hint(
            true,
            "executor failed running [x]: network bridge not found",
            b"FROM x"
        )
        .is_some_and(|hint| hint.contains("--network none"))
    );
}

/// Serve one connection of an engine that answers the build with an error at once and
/// then neither reads the context nor closes: every other request is answered.
async fn stalling_engine(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    loop {
        head.clear();
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let request = String::from_utf8_lossy(&head).into_owned();
        let body = if request.starts_with("POST") && request.contains("/build?") {
            let message = "{\"errorDetail\":{\"message\":\"no space left on device\"}}\r\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{message}\r\n",
                message.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            tokio::time::sleep(std::time::Duration::from_mins(10)).await;
            return;
        } else if request.contains("/version") {
            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux"}"#
        } else {
            r#"{"Name":"bridge"}"#
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[test]
fn an_engine_that_stops_reading_the_context_does_not_hold_the_build() {
    let server = LoopbackServer::new("stalling-engine").expect("a runtime");
    let address = server.listen(stalling_engine).expect("a listener");
    // Far more than the socket buffers hold: the build ends as soon as the error is read.
    let directory = context(32 * 1024 * 1024);
    let (result, _) = build_within(
        &format!("tcp://{address}"),
        request(directory.path(), "FROM scratch\n", BuilderChoice::BuildKit),
        RESPONSE_TIMEOUT,
    );
    let error = result.expect_err("the engine's error").to_string();
    assert!(error.contains("no space left on device"), "{error}");
}

/// The Dockerfile inside a context tar.
fn dockerfile_in(context: &[u8]) -> String {
    let mut archive = tar::Archive::new(context);
    let mut text = String::new();
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        if entry.path().expect("a path").to_string_lossy() == crate::build::context::DOCKERFILE_NAME
        {
            std::io::Read::read_to_string(&mut entry, &mut text).expect("UTF-8");
        }
    }
    text
}

#[test]
fn buildkit_gets_the_labels_as_config_and_the_same_context_every_time() {
    let directory = context(64 * 1024);
    let engine = fake_engine(
        true,
        BuildKitAnswer::Stream(fixture("buildkit-run-ok.jsonl")),
    );
    for created in ["2026-11-30T10:00:00Z", "2026-11-30T10:05:00Z"] {
        let mut build_request = request(
            directory.path(),
            "FROM scratch\nCOPY data /data\n",
            BuilderChoice::Auto,
        );
        build_request.labels = BTreeMap::from([
            (
                "org.opencontainers.image.created".to_owned(),
                created.to_owned(),
            ),
            ("dev.sgr.module".to_owned(), "m".to_owned()),
        ]);
        let (result, _) = build(&engine, build_request);
        result.expect("built");
    }
    let contexts = engine.received.lock().expect("not poisoned").clone();
    assert_eq!(contexts.len(), 2);
    // Byte for byte: the engine can reuse the context it already unpacked.
    assert!(contexts[0] == contexts[1], "the two contexts differ");
    assert_eq!(
        dockerfile_in(&contexts[0]),
        "FROM scratch\nCOPY data /data\n"
    );
    let requests = engine.requests.lock().expect("not poisoned").clone();
    let builds: Vec<&String> = requests
        .iter()
        .filter(|line| line.contains("/build?"))
        .collect();
    assert!(
        builds[1].contains("labels=") && builds[1].contains("2026-11-30T10%3A05%3A00Z"),
        "{builds:#?}"
    );

    // The classic builder: the labels join the Dockerfile as one LABEL, not the option.
    let engine = fake_engine(true, BuildKitAnswer::Refuse("unused"));
    let mut build_request = request(
        directory.path(),
        "FROM scratch\nCOPY data /data\n",
        BuilderChoice::Classic,
    );
    build_request.labels = BTreeMap::from([("dev.sgr.module".to_owned(), "m".to_owned())]);
    let (result, _) = build(&engine, build_request);
    result.expect("built");
    let contexts = engine.received.lock().expect("not poisoned").clone();
    let dockerfile = dockerfile_in(&contexts[0]);
    assert!(
        dockerfile == "FROM scratch\nCOPY data /data\nLABEL \"dev.sgr.module\"=\"m\"\n",
        "{dockerfile}"
    );
    let requests = engine.requests.lock().expect("not poisoned").clone();
    assert!(
        !requests.iter().any(|line| line.contains("labels=")),
        "{requests:#?}"
    );
}

#[test]
fn an_engine_that_does_not_answer_is_given_up_on() {
    let directory = context(1024);
    let engine = fake_engine(true, BuildKitAnswer::Silent);
    let (result, _) = build_within(
        &engine.host,
        request(directory.path(), "FROM scratch\n", BuilderChoice::BuildKit),
        Duration::from_secs(1),
    );
    let error = result.expect_err("no answer").to_string();
    assert!(
        error.contains("the engine did not answer within 1 s"),
        "{error}"
    );
    // Under auto, the classic build is tried next (and this engine answers that one).
    let (result, lines) = build_within(
        &engine.host,
        request(directory.path(), "FROM scratch\n", BuilderChoice::Auto),
        Duration::from_secs(1),
    );
    assert_eq!(result.expect("built").id, IMAGE_ID);
    assert!(
        lines
            .iter()
            .any(|line| line
                .contains("did not answer within 1 s); building with the classic builder")),
        "{lines:#?}"
    );
}

#[test]
fn an_engine_that_neither_answers_nor_reads_does_not_hold_the_build() {
    // Far more than the socket buffers hold: the context writer blocks until the
    // connection is closed when the wait for the answer ends.
    let directory = context(32 * 1024 * 1024);
    let engine = fake_engine(true, BuildKitAnswer::Silent);
    let (result, _) = build_within(
        &engine.host,
        request(directory.path(), "FROM scratch\n", BuilderChoice::BuildKit),
        Duration::from_secs(1),
    );
    let error = result.expect_err("no answer").to_string();
    assert!(error.contains("did not answer within 1 s"), "{error}");
}
