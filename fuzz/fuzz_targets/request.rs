//! Arbitrary bytes as a queue message: `Request::parse` must never panic,
//! and whatever it accepts must be within the limits it promises.

#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use runner_request::{MAX_CPUS, MAX_DURATION, MAX_GPUS, Policy, Request, is_plain_label};

fuzz_target!(|data: &[u8]| {
    for policy in [Policy::default(), Policy { allow_urls: true }] {
        let Ok(request) = Request::parse_with(data, &policy) else {
            continue;
        };
        let experiment = &request.experiment;
        for duration in [
            experiment.max_duration(),
            request.config.experiment_lifetime(),
            request.config.save_workspace_frequency(),
        ]
        .into_iter()
        .chain(experiment.artifacts.values().map(runner_request::Artifact::save_frequency))
        .flatten()
        {
            assert!(duration <= MAX_DURATION);
        }
        if let Some(added) = experiment.time_added() {
            assert!(added <= SystemTime::now() + MAX_DURATION);
        }
        assert!(experiment.artifacts.keys().all(|label| is_plain_label(label)));
        assert!(experiment.resources_needed.cpus <= MAX_CPUS);
        assert!(experiment.resources_needed.gpus <= MAX_GPUS);
        let _ = (request.ram(), request.hdd(), experiment.resources_needed.gpu_memory());
    }
});
