//! The fake Kubernetes API server against kube-rs itself: the fakes are only
//! worth their tests if the production client reads them as a real API
//! server, so the protocol they speak is tested here, where they live.

use std::time::Duration;

use sgr_test_support::FakeKube;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn next_state(
    stream: &mut (
             impl futures_util::Stream<
        Item = Result<k8s_openapi::api::core::v1::ConfigMap, kube::runtime::watcher::Error>,
    > + Unpin
         ),
) -> Option<String> {
    use futures_util::StreamExt as _;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            // An error (410 Gone) makes the watcher relist; keep reading.
            Ok(Some(Err(_))) => {}
            Ok(Some(Ok(map))) => return map.data?.get("STATE").cloned(),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The fake's watch speaks the real protocol: kube-rs's watcher lists, watches,
/// gets 410 Gone after a reconnect into compacted history, and relists.
#[test]
fn the_watch_resyncs_after_410_gone() -> TestResult {
    use futures_util::StreamExt as _;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{WatchStreamExt as _, watcher};

    let kube_server = FakeKube::start()?;
    let map = |name: &str, state: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"STATE": state}});
    kube_server.put(
        "configmaps",
        "runners",
        map("studioml-go-runner", "Running"),
    );
    let runtime = sgr_test_support::runtime()?;
    let seen = runtime.block_on(async {
        let config = kube::Config::new(kube_server.url().parse()?);
        let client = kube::Client::try_from(config)?;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "runners");
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        let mut states = Vec::new();
        states.push(next_state(&mut stream).await);
        kube_server.put(
            "configmaps",
            "runners",
            map("studioml-go-runner", "DrainAndSuspend"),
        );
        states.push(next_state(&mut stream).await);
        // History is compacted and the connection dropped: the reconnect gets 410 and relists.
        kube_server.compact();
        kube_server.drop_watches();
        kube_server.put(
            "configmaps",
            "runners",
            map("studioml-go-runner", "DrainAndTerminate"),
        );
        let mut after = Vec::new();
        while let Some(state) = next_state(&mut stream).await {
            after.push(state);
            if after.last().map(String::as_str) == Some("DrainAndTerminate") {
                break;
            }
        }
        states.push(after.pop());
        Ok::<_, Box<dyn std::error::Error>>(states)
    })?;
    assert_eq!(
        seen,
        [
            Some("Running".to_owned()),
            Some("DrainAndSuspend".to_owned()),
            Some("DrainAndTerminate".to_owned())
        ]
    );
    let watches = kube_server
        .received()
        .iter()
        .filter(|(_, uri, _)| uri.contains("watch=true"))
        .count();
    let lists = kube_server
        .received()
        .iter()
        .filter(|(method, uri, _)| {
            method == "GET" && uri.contains("/configmaps") && !uri.contains("watch=true")
        })
        .count();
    assert!(
        watches >= 2 && lists >= 2,
        "no 410 resync: {watches} watches, {lists} lists"
    );
    Ok(())
}
