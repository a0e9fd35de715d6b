{#- The developer build image: the Rust toolchain and the tools the tests start, with the
    host user baked in so that files written to the mounted checkout belong to them.
    Render with `sgr render Dockerfile`, then `sgr build`. -#}
FROM {{ base_image | default(value="rust:1.95-bookworm") }}

ARG USER={{ user.name }}
ARG USER_ID={{ user.uid }}
ARG USER_GROUP_ID={{ user.gid }}

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates python3-venv busybox-static \
      docker.io docker-registry rabbitmq-server apache2-utils golang-go golang-github-masterminds-sprig-dev \
 && rm -rf /var/lib/apt/lists/*

RUN (getent group "${USER_GROUP_ID}" || groupadd -g "${USER_GROUP_ID}" "${USER}") \
 && (getent passwd "${USER_ID}" || useradd -m -u "${USER_ID}" -g "${USER_GROUP_ID}" -s /bin/bash "${USER}")

ENV CARGO_HOME=/project/.cargo-home CARGO_TARGET_DIR=/project/target
USER ${USER_ID}:${USER_GROUP_ID}
WORKDIR /project

LABEL org.opencontainers.image.title={{ (module ~ "-build") | quote }} \
      org.opencontainers.image.version={{ version.full | quote }} \
      org.opencontainers.image.revision={{ git.hash | quote }} \
      dev.sgr.module={{ module | quote }} \
      dev.sgr.branch={{ git.branch | quote }}

CMD ["scripts/test.sh"]
