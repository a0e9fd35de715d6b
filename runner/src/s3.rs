//! S3 transfers for artifacts, through aws-sdk-s3 with the artifact's own
//! endpoint and credentials. Large objects move in parts, several at once:
//! ranged GETs (pinned to the `ETag` seen first, so a changing object is
//! never stitched together) written in place into the target file, and
//! multipart uploads whose parts are streamed from the file. Memory stays
//! bounded by the chunks in flight, not the object's size.
//!
//! Every request has timeouts ([`Timeouts`]): connecting, each attempt of a
//! small request, each part upload (in proportion to its size), and every
//! chunk of a download body (an idle timeout), so a stalled transfer fails
//! with a [`Class::Transient`] error instead of hanging an experiment's
//! thread. The calls run on the process's runtime ([`crate::runtime`]).
//!
//! Classification ([`S3Error`]): 403 (the request's credentials may not do
//! this), 404 `NoSuchBucket` (the request names a bucket that does not
//! exist) and 301 (the bucket is in another region than the request says)
//! are [`Class::Rejected`]: trying again cannot help. Everything else (5xx,
//! throttling, 404 of an object that was there a moment ago, 412 of an
//! object replaced mid-download, network failures, timeouts, a full disk)
//! is [`Class::Transient`].

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures_util::{StreamExt as _, TryStreamExt as _};
use thiserror::Error;

use crate::failure::{Class, Classify};
use crate::runtime::RuntimeError;
use crate::storage::{S3Object, StorageError};

/// The size of one part.
const PART: u64 = 16 << 20;
/// Parts in flight at once.
const CONCURRENCY: usize = 8;
/// Objects smaller than this move in one request.
const SINGLE: u64 = 2 * PART;
/// How much of a file is read at once for an upload.
const READ_BUFFER: usize = 256 << 10;

/// How long connecting to S3 may take, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transfer may go without a byte, by default (and how long a
/// request without a body may take to be answered).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_mins(1);
/// How much longer than the idle timeout an upload attempt may take, per
/// MiB it sends.
pub const UPLOAD_TIME_PER_MIB: Duration = Duration::from_secs(1);

/// The timeouts of S3 requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// The longest wait for the next chunk of a download, and for the
    /// answer to a request without a body (HEAD, the start of a GET); the
    /// floor of an upload attempt's time.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: CONNECT_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The defaults with another idle timeout (`--s3-idle-timeout`).
    #[must_use]
    pub const fn with_idle(idle: Duration) -> Self {
        Self {
            connect: CONNECT_TIMEOUT,
            idle,
        }
    }

    /// How long one attempt to upload `bytes` may take: the idle timeout
    /// plus [`UPLOAD_TIME_PER_MIB`] per started MiB.
    #[must_use]
    pub fn upload_attempt(&self, bytes: u64) -> Duration {
        let mebibytes = u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        self.idle
            .saturating_add(UPLOAD_TIME_PER_MIB.saturating_mul(mebibytes))
    }
}

static CONFIGURED: OnceLock<Timeouts> = OnceLock::new();

/// Set the timeouts of every S3 transfer of this process, once, at start
/// (from `--s3-idle-timeout`); false when they were set already.
pub fn configure(timeouts: Timeouts) -> bool {
    CONFIGURED.set(timeouts).is_ok()
}

/// The timeouts in force: those given to [`configure`], else the defaults.
#[must_use]
pub fn timeouts() -> Timeouts {
    CONFIGURED.get().copied().unwrap_or_default()
}

/// An S3 request failed.
#[derive(Debug, Error)]
#[error("S3 {action} {target} failed: {reason}")]
pub struct S3Error {
    /// `HEAD`, `GET` or `PUT`.
    pub action: &'static str,
    /// `s3://bucket/key at endpoint`.
    pub target: String,
    /// Why.
    #[source]
    pub reason: S3Failure,
}

/// Why an S3 request failed.
#[derive(Debug, Error)]
pub enum S3Failure {
    /// The service answered with an error, or could not be reached, or did
    /// not answer in time.
    #[error("{message}")]
    Request {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// The SDK's account of it.
        message: String,
        /// Its class (see the module documentation).
        class: Class,
    },
    /// A download's body stopped flowing.
    #[error("no data for {:.1} s: the transfer stalled", .idle.as_secs_f64())]
    Stalled {
        /// The idle timeout that ran out.
        idle: Duration,
    },
    /// The local file could not be read or written.
    #[error("cannot {action} {}", .path.display())]
    File {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The process's runtime cannot be used.
    #[error(transparent)]
    Runtime(RuntimeError),
}

impl Classify for S3Error {
    fn class(&self) -> Class {
        match &self.reason {
            S3Failure::Request { class, .. } => *class,
            S3Failure::Stalled { .. } | S3Failure::File { .. } => Class::Transient,
            S3Failure::Runtime(error) => error.class(),
        }
    }
}

/// The class of an error answer: see the module documentation.
fn class_of_answer(status: u16, code: Option<&str>) -> Class {
    match (status, code) {
        (301 | 403, _) | (404, Some("NoSuchBucket")) => Class::Rejected,
        _ => Class::Transient,
    }
}

fn target(object: &S3Object) -> String {
    format!(
        "s3://{}/{} at {}",
        object.bucket, object.key, object.endpoint
    )
}

fn failure(action: &'static str, object: &S3Object, reason: S3Failure) -> S3Error {
    S3Error {
        action,
        target: target(object),
        reason,
    }
}

/// An SDK failure as an [`S3Error`], classified.
fn request_failure<E>(
    action: &'static str,
    object: &S3Object,
) -> impl FnOnce(SdkError<E>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |error| {
        let status = error.raw_response().map(|answer| answer.status().as_u16());
        let class = match (&error, status) {
            (SdkError::ServiceError(_), Some(status)) => class_of_answer(status, error.code()),
            _ => Class::Transient,
        };
        failure(
            action,
            object,
            S3Failure::Request {
                status,
                message: crate::error_text(&error),
                class,
            },
        )
    }
}

fn file_failure(
    action: &'static str,
    object: &S3Object,
    file_action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> S3Error {
    move |source| {
        failure(
            action,
            object,
            S3Failure::File {
                action: file_action,
                path: path.to_path_buf(),
                source,
            },
        )
    }
}

/// An [`S3Error`] as the storage layer's error for artifact `label`.
#[must_use]
pub fn into_storage(label: &str, error: S3Error) -> StorageError {
    let class = error.class();
    match error.reason {
        S3Failure::File {
            action,
            path,
            source,
        } => StorageError::Io {
            label: label.to_owned(),
            action,
            path,
            source,
        },
        reason => StorageError::S3 {
            label: label.to_owned(),
            action: error.action,
            target: error.target,
            message: crate::error_text(&reason),
            class,
        },
    }
}

fn timeout_config(timeouts: &Timeouts, attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(attempt)
        .build()
}

fn client(object: &S3Object, timeouts: &Timeouts) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(object.region.clone()))
        .endpoint_url(&object.endpoint)
        .force_path_style(!object.endpoint.ends_with("amazonaws.com"))
        .timeout_config(timeout_config(timeouts, timeouts.idle));
    if let (Some(access), Some(secret)) = (&object.access_key, &object.secret_key) {
        builder = builder.credentials_provider(aws_sdk_s3::config::Credentials::new(
            access.clone(),
            secret.clone(),
            None,
            None,
            "studioml-request",
        ));
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The configuration override of one upload request of `bytes`.
fn upload_override(timeouts: &Timeouts, bytes: u64) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .timeout_config(timeout_config(timeouts, timeouts.upload_attempt(bytes)))
}

/// Run `future` on the process's runtime (the runner's experiment threads
/// are plain threads).
fn block_on<T>(
    action: &'static str,
    object: &S3Object,
    future: impl Future<Output = Result<T, S3Error>>,
) -> Result<T, S3Error> {
    crate::runtime::block_on(future)
        .map_err(|error| failure(action, object, S3Failure::Runtime(error)))?
}

/// Log a transfer with its rate.
fn transferred(label: &str, done: &str, object: &S3Object, bytes: u64, took: Duration) {
    #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
    let rate = bytes as f64 / took.as_secs_f64().max(1e-6);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rate for people"
    )]
    let rate = rate as u64;
    crate::log::emit(
        crate::log::Level::Info,
        &format!(
            "artifact {label}: {done} s3://{}/{} ({} in {:.2} s, {}/s)",
            object.bucket,
            object.key,
            crate::resources::human(bytes),
            took.as_secs_f64(),
            crate::resources::human(rate)
        ),
        &[
            ("artifact", label),
            ("bytes", &bytes.to_string()),
            ("seconds", &format!("{:.3}", took.as_secs_f64())),
        ],
    );
}

async fn head(
    client: &aws_sdk_s3::Client,
    object: &S3Object,
) -> Result<Option<(String, u64)>, S3Error> {
    match client
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
    {
        Ok(head) => Ok(Some((
            head.e_tag().unwrap_or_default().to_owned(),
            head.content_length()
                .and_then(|length| u64::try_from(length).ok())
                .unwrap_or(0),
        ))),
        Err(error) => {
            if matches!(&error, SdkError::ServiceError(service) if service.err().is_not_found()) {
                return Ok(None);
            }
            Err(request_failure("HEAD", object)(error))
        }
    }
}

/// The object's `ETag` and size; `None` when there is no such object.
///
/// # Errors
/// The service fails or refuses.
pub fn s3_head(label: &str, object: &S3Object) -> Result<Option<(String, u64)>, StorageError> {
    s3_head_with(object, &timeouts()).map_err(|error| into_storage(label, error))
}

/// [`s3_head`] with these timeouts.
///
/// # Errors
/// The service fails or refuses.
pub fn s3_head_with(
    object: &S3Object,
    timeouts: &Timeouts,
) -> Result<Option<(String, u64)>, S3Error> {
    let client = client(object, timeouts);
    block_on("HEAD", object, head(&client, object))
}

/// Download to `target`; false when there is no such object.
///
/// # Errors
/// The service fails or refuses, or `target` cannot be written.
pub fn s3_get(label: &str, object: &S3Object, target: &Path) -> Result<bool, StorageError> {
    s3_get_with(label, object, target, &timeouts()).map_err(|error| into_storage(label, error))
}

/// [`s3_get`] with these timeouts.
///
/// # Errors
/// As [`s3_get`].
pub fn s3_get_with(
    label: &str,
    object: &S3Object,
    target: &Path,
    timeouts: &Timeouts,
) -> Result<bool, S3Error> {
    let client = client(object, timeouts);
    block_on("GET", object, async {
        let Some((etag, size)) = head(&client, object).await? else {
            return Ok(false);
        };
        download(&client, timeouts, label, object, target, &etag, size).await?;
        Ok(true)
    })
}

/// One ranged GET (`range` inclusive), written at its offset; each chunk
/// of the body must come within the idle timeout.
async fn get_range(
    client: &aws_sdk_s3::Client,
    idle: Duration,
    object: &S3Object,
    etag: &str,
    (file, target): (&std::fs::File, &Path),
    (start, end): (u64, u64),
) -> Result<(), S3Error> {
    let mut request = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .range(format!("bytes={start}-{end}"));
    if !etag.is_empty() {
        request = request.if_match(etag);
    }
    let mut body = request
        .send()
        .await
        .map_err(request_failure("GET", object))?
        .body;
    let mut offset = start;
    loop {
        let chunk = tokio::time::timeout(idle, body.try_next())
            .await
            .map_err(|_| failure("GET", object, S3Failure::Stalled { idle }))?
            .map_err(|error| {
                failure(
                    "GET",
                    object,
                    S3Failure::Request {
                        status: None,
                        message: crate::error_text(&error),
                        class: Class::Transient,
                    },
                )
            })?;
        let Some(chunk) = chunk else { break };
        file.write_all_at(&chunk, offset)
            .map_err(file_failure("GET", object, "write", target))?;
        offset += chunk.len() as u64;
    }
    if offset != end + 1 {
        return Err(failure(
            "GET",
            object,
            S3Failure::Request {
                status: None,
                message: format!(
                    "bytes {start}-{end}: the answer ended after {} bytes",
                    offset - start
                ),
                class: Class::Transient,
            },
        ));
    }
    Ok(())
}

async fn download(
    client: &aws_sdk_s3::Client,
    timeouts: &Timeouts,
    label: &str,
    object: &S3Object,
    target: &Path,
    etag: &str,
    size: u64,
) -> Result<(), S3Error> {
    let started = Instant::now();
    let written = file_failure("GET", object, "write", target);
    let file = match std::fs::File::create(target) {
        Ok(file) => file,
        Err(error) => return Err(written(error)),
    };
    if size == 0 {
        transferred(label, "downloaded", object, 0, started.elapsed());
        return Ok(());
    }
    file.set_len(size).map_err(written)?;
    let file = Arc::new(file);
    let part = if size < SINGLE { size } else { PART };
    let ranges: Vec<(u64, u64)> = (0..size.div_ceil(part))
        .map(|index| (index * part, ((index + 1) * part).min(size) - 1))
        .collect();
    futures_util::stream::iter(ranges)
        .map(|range| {
            let file = Arc::clone(&file);
            async move {
                get_range(
                    client,
                    timeouts.idle,
                    object,
                    etag,
                    (&file, target),
                    range,
                )
                .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    transferred(label, "downloaded", object, size, started.elapsed());
    Ok(())
}

/// Download an object whose `ETag` and size are known (the cache's path).
///
/// # Errors
/// As [`s3_get`].
pub fn s3_download(
    label: &str,
    object: &S3Object,
    target: &Path,
    etag: &str,
    size: u64,
) -> Result<(), StorageError> {
    let timeouts = timeouts();
    let client = client(object, &timeouts);
    block_on(
        "GET",
        object,
        download(&client, &timeouts, label, object, target, etag, size),
    )
    .map_err(|error| into_storage(label, error))
}

async fn file_part(
    object: &S3Object,
    source: &Path,
    offset: u64,
    length: u64,
) -> Result<ByteStream, S3Error> {
    ByteStream::read_from()
        .path(source)
        .offset(offset)
        .length(Length::Exact(length))
        .buffer_size(READ_BUFFER)
        .build()
        .await
        .map_err(|error| {
            failure(
                "PUT",
                object,
                S3Failure::File {
                    action: "read",
                    path: source.to_path_buf(),
                    source: std::io::Error::other(crate::error_text(&error)),
                },
            )
        })
}

/// Upload `source`: in one PUT when small, else as a multipart upload
/// (aborted when a part fails, so no half object is left billed).
///
/// # Errors
/// The service fails or refuses, or `source` cannot be read.
pub fn s3_put(label: &str, object: &S3Object, source: &Path) -> Result<(), StorageError> {
    s3_put_with(label, object, source, &timeouts()).map_err(|error| into_storage(label, error))
}

/// [`s3_put`] with these timeouts.
///
/// # Errors
/// As [`s3_put`].
pub fn s3_put_with(
    label: &str,
    object: &S3Object,
    source: &Path,
    timeouts: &Timeouts,
) -> Result<(), S3Error> {
    let client = client(object, timeouts);
    block_on("PUT", object, async {
        let started = Instant::now();
        let size = std::fs::metadata(source)
            .map_err(file_failure("PUT", object, "read", source))?
            .len();
        let failed = request_failure("PUT", object);
        if size < SINGLE {
            client
                .put_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .body(file_part(object, source, 0, size).await?)
                .customize()
                .config_override(upload_override(timeouts, size))
                .send()
                .await
                .map_err(failed)?;
            transferred(label, "stored", object, size, started.elapsed());
            return Ok(());
        }
        let upload = client
            .create_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(request_failure("PUT", object))?;
        let id = upload.upload_id().unwrap_or_default().to_owned();
        let parts: Vec<(i32, u64)> = (0..size.div_ceil(PART))
            .map(|index| (i32::try_from(index + 1).unwrap_or(i32::MAX), index * PART))
            .collect();
        let uploaded = futures_util::stream::iter(parts)
            .map(|(number, offset)| {
                let client = &client;
                let id = &id;
                async move {
                    let length = PART.min(size - offset);
                    let body = file_part(object, source, offset, length).await?;
                    let answer = client
                        .upload_part()
                        .bucket(&object.bucket)
                        .key(&object.key)
                        .upload_id(id)
                        .part_number(number)
                        .body(body)
                        .customize()
                        .config_override(upload_override(timeouts, length))
                        .send()
                        .await
                        .map_err(request_failure("PUT", object))?;
                    Ok::<_, S3Error>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(answer.e_tag().map(str::to_owned))
                            .build(),
                    )
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<CompletedPart>>()
            .await;
        let completed = match uploaded {
            Ok(mut parts) => {
                parts.sort_by_key(CompletedPart::part_number);
                client
                    .complete_multipart_upload()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map(drop)
                    .map_err(request_failure("PUT", object))
            }
            Err(error) => Err(error),
        };
        if let Err(error) = completed {
            let _ = client
                .abort_multipart_upload()
                .bucket(&object.bucket)
                .key(&object.key)
                .upload_id(&id)
                .send()
                .await;
            return Err(error);
        }
        transferred(label, "stored", object, size, started.elapsed());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_no_retry_can_fix_are_rejected() {
        assert_eq!(class_of_answer(403, Some("AccessDenied")), Class::Rejected);
        assert_eq!(class_of_answer(404, Some("NoSuchBucket")), Class::Rejected);
        assert_eq!(class_of_answer(301, None), Class::Rejected);
        for (status, code) in [
            (404, Some("NoSuchKey")),
            (412, Some("PreconditionFailed")),
            (500, None),
            (503, Some("SlowDown")),
            (400, Some("RequestTimeout")),
        ] {
            assert_eq!(class_of_answer(status, code), Class::Transient, "{status}");
        }
    }

    #[test]
    fn an_upload_attempt_may_take_the_idle_time_plus_a_second_per_mebibyte() {
        let timeouts = Timeouts::default();
        assert_eq!(timeouts.upload_attempt(0), Duration::from_mins(1));
        assert_eq!(timeouts.upload_attempt(1), Duration::from_secs(61));
        assert_eq!(timeouts.upload_attempt(16 << 20), Duration::from_secs(76));
        let short = Timeouts::with_idle(Duration::from_secs(2));
        assert_eq!(short.upload_attempt(3 << 20), Duration::from_secs(5));
        assert_eq!(short.connect, CONNECT_TIMEOUT);
    }

    #[test]
    fn a_stall_is_transient_and_says_so() {
        let error = S3Error {
            action: "GET",
            target: "s3://bucket/key at http://127.0.0.1:1".to_owned(),
            reason: S3Failure::Stalled {
                idle: Duration::from_secs(2),
            },
        };
        assert_eq!(error.class(), Class::Transient);
        let storage = into_storage("workspace", error);
        assert!(storage.is_transient());
        let text = storage.to_string();
        assert!(
            text.contains("stalled") && text.contains("s3://bucket/key"),
            "{text}"
        );
    }
}
