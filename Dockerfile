# syntax=docker/dockerfile:1
# Rampart server image. Written and reviewed, not built here (no container
# engine on the development machine): see docs/deploy.md for what that
# leaves untested.
#
#   docker build -t rampart .
#   docker run --ulimit nofile=65536:65536 -p 8016:8016 -p 8015:8015 \
#     -v $PWD/examples:/etc/rampart:ro rampart --flags /etc/rampart/flags.yaml
#
# --ulimit: every stream client holds a descriptor, and the listeners share
# the open-file limit (docs/limits.md#connections-and-streams); Docker's
# default soft limit (1,024 on many hosts) would cap the server near 900
# connections in all.
#
# Replicas share a Redis: add -e RAMPART_REDIS_URL=rediss://… and
# -e RAMPART_REDIS_PASSWORD=… (docs/deploy.md); the data volume is then unused.
#
# Inside a container the listeners bind 0.0.0.0 (loopback would be
# unreachable); publish the operator port (8014: admin API, metrics) only on
# a private network.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Protobuf compiles with protox: no protoc needed. The registry and the
# target folder are BuildKit cache mounts, so a source change rebuilds
# Rampart's crates only, not its ~330 dependencies (~6 min on two cores).
# --locked: the image is built from exactly the dependencies the tests ran.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rampart-server \
 && install -D target/release/rampart /out/rampart

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/rampart --create-home rampart
COPY --from=build /out/rampart /usr/local/bin/rampart
USER rampart
# The working directory is the writable data volume: relative defaults such
# as the relay's `relay-cache` land there, not in `/` (which the rampart
# user cannot write: a relay without --cache-dir exited 69).
WORKDIR /var/lib/rampart
ENV RAMPART_HTTP_ADDR=0.0.0.0:8016 \
    RAMPART_GRPC_ADDR=0.0.0.0:8013 \
    RAMPART_SYNC_ADDR=0.0.0.0:8015 \
    RAMPART_ADMIN_ADDR=0.0.0.0:8014 \
    RAMPART_DATA_DIR=/var/lib/rampart/data \
    RAMPART_CACHE_DIR=/var/lib/rampart/relay-cache \
    RAMPART_LOG_FORMAT=json
VOLUME /var/lib/rampart
EXPOSE 8013 8014 8015 8016
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["rampart", "health", "--url", "http://127.0.0.1:8014", "--ready"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["rampart", "serve"]
