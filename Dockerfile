# syntax=docker/dockerfile:1
# rolewatch container image: a static musl binary on distroless/static (no shell, no libc,
# CA certificates and /etc/passwd only), running as an unprivileged user.
#
#   docker build -t rolewatch .
#   docker run -d --name rolewatch -v rolewatch-state:/var/lib/rolewatch \
#       -v /etc/rolewatch:/etc/rolewatch:ro -e AWS_REGION=us-east-1 rolewatch
#
# Without a Docker engine, deploy/build-image.sh runs the same steps: it builds the same static
# binary and assembles the same root filesystem in target/image-rootfs/ (and a tarball for
# `docker import`). `deploy/build-image.sh --check` verifies that this file and the script
# agree on the target, user, paths and health check; the test suite runs it.

# --- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin rolewatch \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/rolewatch /out/rolewatch

# --- run --------------------------------------------------------------------------------------
# distroless/static: /etc/passwd with "nonroot" (65532), CA certificates, tzdata; nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rolewatch /usr/local/bin/rolewatch
# The state (SQLite, WAL) lives on a volume; STATE_DIRECTORY is where rolewatch puts state.db
# when the config names no [state] path (as systemd's StateDirectory= does).
ENV STATE_DIRECTORY=/var/lib/rolewatch
VOLUME /var/lib/rolewatch
USER 65532:65532
# Liveness is the admin endpoint's /healthz on 127.0.0.1:9464 (readiness: /readyz).
# Kubernetes and load balancers probe it over HTTP (deploy/kubernetes.yaml). Docker's own
# HEALTHCHECK runs a command inside the image, which has no shell, curl or wget: rolewatch
# probes itself (`rolewatch healthcheck`: exit 0 on 200, 1 otherwise, within --timeout-secs).
# If your config moves [admin] listen, change the URL here too.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/usr/local/bin/rolewatch", "healthcheck", "--timeout-secs", "5", "--url", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/usr/local/bin/rolewatch"]
CMD ["run", "--config", "/etc/rolewatch/rolewatch.toml"]
