//! S3 transfers for artifacts, through aws-sdk-s3 with the artifact's own
//! endpoint and credentials. Large objects move in parts, several at once:
//! ranged GETs (pinned to the `ETag` seen first, so a changing object is
//! never stitched together) written in place into the target file, and
//! multipart uploads whose parts are streamed from the file. Memory stays
//! bounded by the chunks in flight, not the object's size.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::storage::{S3Object, StorageError, io_failure};

/// The size of one part.
const PART: u64 = 16 << 20;
/// Parts in flight at once.
const CONCURRENCY: usize = 8;
/// Objects smaller than this move in one request.
const SINGLE: u64 = 2 * PART;
/// How much of a file is read at once for an upload.
const READ_BUFFER: usize = 256 << 10;

fn s3_error(label: &str, action: &'static str, object: &S3Object, message: String) -> StorageError {
    StorageError::S3 {
        label: label.to_owned(),
        action,
        target: format!(
            "s3://{}/{} at {}",
            object.bucket, object.key, object.endpoint
        ),
        message,
    }
}

fn client(object: &S3Object) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(object.region.clone()))
        .endpoint_url(&object.endpoint)
        .force_path_style(!object.endpoint.ends_with("amazonaws.com"));
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

/// Run `future` on a small runtime of its own (the runner's experiment
/// threads are plain threads).
fn block_on<T>(
    label: &str,
    object: &S3Object,
    future: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_failure(
            label,
            "start a runtime for",
            Path::new(&object.key),
        ))?
        .block_on(future)
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
    label: &str,
    object: &S3Object,
) -> Result<Option<(String, u64)>, StorageError> {
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
            let service = error.into_service_error();
            if service.is_not_found() {
                return Ok(None);
            }
            Err(s3_error(label, "HEAD", object, crate::error_text(&service)))
        }
    }
}

/// The object's `ETag` and size; `None` when there is no such object.
///
/// # Errors
/// The service fails or refuses.
pub fn s3_head(label: &str, object: &S3Object) -> Result<Option<(String, u64)>, StorageError> {
    let client = client(object);
    block_on(label, object, head(&client, label, object))
}

/// Download to `target`; false when there is no such object.
///
/// # Errors
/// The service fails or refuses, or `target` cannot be written.
pub fn s3_get(label: &str, object: &S3Object, target: &Path) -> Result<bool, StorageError> {
    let client = client(object);
    block_on(label, object, async {
        let Some((etag, size)) = head(&client, label, object).await? else {
            return Ok(false);
        };
        download(&client, label, object, target, &etag, size).await?;
        Ok(true)
    })
}

/// One ranged GET (`range` inclusive), written at its offset.
async fn get_range(
    client: &aws_sdk_s3::Client,
    label: &str,
    object: &S3Object,
    etag: &str,
    file: &std::fs::File,
    target: &Path,
    (start, end): (u64, u64),
) -> Result<(), StorageError> {
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
        .map_err(|error| {
            s3_error(
                label,
                "GET",
                object,
                crate::error_text(&error.into_service_error()),
            )
        })?
        .body;
    let mut offset = start;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|error| s3_error(label, "GET", object, crate::error_text(&error)))?
    {
        file.write_all_at(&chunk, offset)
            .map_err(io_failure(label, "write", target))?;
        offset += chunk.len() as u64;
    }
    if offset != end + 1 {
        return Err(s3_error(
            label,
            "GET",
            object,
            format!(
                "bytes {start}-{end}: the answer ended after {} bytes",
                offset - start
            ),
        ));
    }
    Ok(())
}

async fn download(
    client: &aws_sdk_s3::Client,
    label: &str,
    object: &S3Object,
    target: &Path,
    etag: &str,
    size: u64,
) -> Result<(), StorageError> {
    let started = Instant::now();
    let file = std::fs::File::create(target).map_err(io_failure(label, "write", target))?;
    if size == 0 {
        transferred(label, "downloaded", object, 0, started.elapsed());
        return Ok(());
    }
    file.set_len(size)
        .map_err(io_failure(label, "write", target))?;
    let file = Arc::new(file);
    let part = if size < SINGLE { size } else { PART };
    let ranges: Vec<(u64, u64)> = (0..size.div_ceil(part))
        .map(|index| (index * part, ((index + 1) * part).min(size) - 1))
        .collect();
    futures_util::stream::iter(ranges)
        .map(|range| {
            let file = Arc::clone(&file);
            async move { get_range(client, label, object, etag, &file, target, range).await }
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
    let client = client(object);
    block_on(
        label,
        object,
        download(&client, label, object, target, etag, size),
    )
}

async fn file_part(
    label: &str,
    object: &S3Object,
    source: &Path,
    offset: u64,
    length: u64,
) -> Result<ByteStream, StorageError> {
    ByteStream::read_from()
        .path(source)
        .offset(offset)
        .length(Length::Exact(length))
        .buffer_size(READ_BUFFER)
        .build()
        .await
        .map_err(|error| s3_error(label, "PUT", object, crate::error_text(&error)))
}

/// Upload `source`: in one PUT when small, else as a multipart upload
/// (aborted when a part fails, so no half object is left billed).
///
/// # Errors
/// The service fails or refuses, or `source` cannot be read.
pub fn s3_put(label: &str, object: &S3Object, source: &Path) -> Result<(), StorageError> {
    let client = client(object);
    block_on(label, object, async {
        let started = Instant::now();
        let size = std::fs::metadata(source)
            .map_err(io_failure(label, "read", source))?
            .len();
        let failed = |error: String| s3_error(label, "PUT", object, error);
        if size < SINGLE {
            client
                .put_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .body(file_part(label, object, source, 0, size).await?)
                .send()
                .await
                .map_err(|error| failed(crate::error_text(&error.into_service_error())))?;
            transferred(label, "stored", object, size, started.elapsed());
            return Ok(());
        }
        let upload = client
            .create_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|error| failed(crate::error_text(&error.into_service_error())))?;
        let id = upload.upload_id().unwrap_or_default().to_owned();
        let parts: Vec<(i32, u64)> = (0..size.div_ceil(PART))
            .map(|index| (i32::try_from(index + 1).unwrap_or(i32::MAX), index * PART))
            .collect();
        let uploaded = futures_util::stream::iter(parts)
            .map(|(number, offset)| {
                let client = &client;
                let id = &id;
                async move {
                    let body =
                        file_part(label, object, source, offset, PART.min(size - offset)).await?;
                    let answer = client
                        .upload_part()
                        .bucket(&object.bucket)
                        .key(&object.key)
                        .upload_id(id)
                        .part_number(number)
                        .body(body)
                        .send()
                        .await
                        .map_err(|error| failed(crate::error_text(&error.into_service_error())))?;
                    Ok::<_, StorageError>(
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
                    .map_err(|error| failed(crate::error_text(&error.into_service_error())))
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
