# Developer build image (build.sh's <org>/<module>-build:<branch>): compiles and tests sgr and
# runner as the host user, with the work tree mounted at /project, so build outputs belong to
# that user. A template in duat's Go-template dialect: rendered by `sgr stencil` (or duat's
# stencil), then built by `sgr build`. Base images come from the registry the builder can reach.
FROM rust:1.95-bookworm

ARG USER={{.duat.userName}}
ARG USER_ID={{.duat.userID}}
ARG USER_GROUP_ID={{.duat.userGroupID}}
ARG RUNNER_BUILD_LOG={{ env "RUNNER_BUILD_LOG" | default "build.log" }}

RUN apt-get update \
 && apt-get install -y --no-install-recommends git python3-venv busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The user and group of the host (build.sh's Dockerfile wrote the group as "$USER}").
RUN (getent group "${USER_GROUP_ID}" || groupadd -g "${USER_GROUP_ID}" "${USER}") \
 && (getent passwd "${USER_ID}" || useradd -m -u "${USER_ID}" -g "${USER_GROUP_ID}" -s /bin/bash "${USER}")

ENV RUNNER_BUILD_LOG=${RUNNER_BUILD_LOG} CARGO_HOME=/project/.cargo-home CARGO_TARGET_DIR=/project/target
USER ${USER_ID}:${USER_GROUP_ID}
WORKDIR /project
VOLUME /project

LABEL org.opencontainers.image.title="{{.duat.module}}-build" \
      org.opencontainers.image.version="{{.duat.version}}" \
      org.opencontainers.image.revision="{{.duat.gitHash}}"

# pipefail keeps the build's exit status through tee (build.sh lost it).
CMD ["bash", "-c", "set -o pipefail; { cargo build --release --locked && cargo test --workspace --locked; } 2>&1 | tee \"$RUNNER_BUILD_LOG\""]
