#!/usr/bin/env bash
# The Dockerfile's steps without a Docker engine: a static musl build of rolewatch and the
# final image's root filesystem, assembled in a directory and packed as a tarball.
#
#   deploy/build-image.sh            # build + assemble target/image-rootfs/ and
#                                    # target/image-rootfs.tar, then smoke-test the binary
#   deploy/build-image.sh --check    # cheap: verify that the Dockerfile and this script agree
#                                    # (target, user, paths, env, volume, health check)
#
# The tarball is the final stage's filesystem (binary, /etc/passwd and /etc/group with the
# unprivileged user, CA certificates, the state directory owned by that user); load it with
#   docker import --change 'USER 65532:65532' --change 'ENV STATE_DIRECTORY=/var/lib/rolewatch' \
#       --change 'ENTRYPOINT ["/usr/local/bin/rolewatch"]' target/image-rootfs.tar rolewatch
#
# Environment: IMAGE_TARGET_DIR (cargo target dir for the musl build, default
# target/image-build: a directory of its own, so the long build does not hold the lock of the
# main target dir), ROOTFS (default target/image-rootfs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What the Dockerfile and this script must agree on.
TARGET=x86_64-unknown-linux-musl
BIN_PATH=/usr/local/bin/rolewatch
RUN_UID=65532
RUN_USER=nonroot
STATE_DIR=/var/lib/rolewatch
HEALTH_URL=http://127.0.0.1:9464/healthz

IMAGE_TARGET_DIR=${IMAGE_TARGET_DIR:-target/image-build}
ROOTFS=${ROOTFS:-target/image-rootfs}

fail() {
    echo "build-image: $*" >&2
    exit 1
}

check_dockerfile() {
    local df=Dockerfile problems=0
    [[ -f $df ]] || fail "no Dockerfile at the repository root"
    expect() { # description, extended regex that must match a line of the Dockerfile
        if ! grep -Eq -- "$2" "$df"; then
            echo "build-image: the Dockerfile does not $1 (no line matching: $2)" >&2
            problems=$((problems + 1))
        fi
    }
    expect "build for $TARGET" "cargo build .*--release .*--target $TARGET"
    expect "add the $TARGET target" "rustup target add $TARGET"
    expect "copy the binary to $BIN_PATH" "^COPY --from=build .* $BIN_PATH\$"
    expect "run as uid $RUN_UID" "^USER $RUN_UID(:$RUN_UID)?\$"
    expect "set STATE_DIRECTORY=$STATE_DIR" "^ENV STATE_DIRECTORY=$STATE_DIR\$"
    expect "declare the state volume $STATE_DIR" "^VOLUME $STATE_DIR\$"
    expect "have a HEALTHCHECK instruction" "^HEALTHCHECK "
    expect "name the health probe on $HEALTH_URL" "CMD \[\"$BIN_PATH\", .*\"$HEALTH_URL\"\]"
    expect "use $BIN_PATH as the entrypoint" "^ENTRYPOINT \[\"$BIN_PATH\"\]"
    expect "be multi-stage" "^FROM .* AS build\$"
    # The final stage must be a small base without a shell or package manager.
    local final
    final=$(grep -E '^FROM ' "$df" | tail -1)
    [[ $final =~ (distroless/static|scratch) ]] ||
        { echo "build-image: the final stage is not distroless/static or scratch: $final" >&2; problems=$((problems + 1)); }
    # The health probe's subcommand: an active HEALTHCHECK must run one the CLI declares; a
    # commented-out one waits for it (reported, so it is not forgotten).
    local sub declared=no
    sub=$(sed -nE "s|.*CMD \[\"$BIN_PATH\", \"([a-z-]+)\".*|\1|p" "$df" | head -1)
    if [[ -n $sub ]] && sed -n '/^pub enum Command/,/^}/p' src/cli.rs | tr -d ' ' |
        grep -Eqi "^${sub//-/}(\(|,|$)"; then
        declared=yes
    fi
    if grep -Eq '^HEALTHCHECK .*CMD' "$df" && [[ $declared == no ]]; then
        echo "build-image: the HEALTHCHECK runs \`rolewatch $sub\`, which src/cli.rs does not declare" >&2
        problems=$((problems + 1))
    elif grep -Eq '^HEALTHCHECK NONE' "$df"; then
        if [[ $declared == yes ]]; then
            echo "build-image: note: \`rolewatch $sub\` exists now; enable the Dockerfile's HEALTHCHECK"
        else
            echo "build-image: note: no HEALTHCHECK command yet (\`rolewatch $sub\` does not exist)"
        fi
    fi
    ((problems == 0)) || fail "$problems disagreement(s) between the Dockerfile and deploy/build-image.sh"
    echo "build-image: the Dockerfile and deploy/build-image.sh agree ($TARGET, $BIN_PATH, uid $RUN_UID, $STATE_DIR)"
}

if [[ ${1:-} == --check ]]; then
    check_dockerfile
    exit 0
fi
[[ $# -eq 0 ]] || fail "usage: deploy/build-image.sh [--check]"
check_dockerfile

# --- build (the Dockerfile's build stage) ------------------------------------------------------
command -v musl-gcc >/dev/null 2>&1 || fail "musl-gcc is missing (Debian: apt-get install musl-tools)"
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
fi
echo "==> cargo build --release --target $TARGET (target dir $IMAGE_TARGET_DIR)"
CC_x86_64_unknown_linux_musl=musl-gcc CARGO_TARGET_DIR=$IMAGE_TARGET_DIR \
    cargo build --release --locked --target "$TARGET" --bin rolewatch
BUILT=$IMAGE_TARGET_DIR/$TARGET/release/rolewatch

# --- assemble (the Dockerfile's final stage) ---------------------------------------------------
echo "==> assembling $ROOTFS"
rm -rf "$ROOTFS"
install -D -m 0755 "$BUILT" "$ROOTFS$BIN_PATH"
mkdir -p "$ROOTFS/etc/ssl/certs" "$ROOTFS$STATE_DIR" "$ROOTFS/tmp" "$ROOTFS/etc/rolewatch"
chmod 1777 "$ROOTFS/tmp"
chmod 0700 "$ROOTFS$STATE_DIR"
cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
$RUN_USER:x:$RUN_UID:$RUN_UID:$RUN_USER:/home/$RUN_USER:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
$RUN_USER:x:$RUN_UID:
EOF
CA=/etc/ssl/certs/ca-certificates.crt
[[ -f $CA ]] || fail "no CA bundle at $CA (Debian: apt-get install ca-certificates)"
install -m 0644 "$CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# Owners inside the tarball: root for everything, the run user for the state directory.
TAR=${ROOTFS%/}.tar
tar --create --file "$TAR" --directory "$ROOTFS" --numeric-owner --owner=0 --group=0 \
    --exclude "./${STATE_DIR#/}" .
tar --append --file "$TAR" --directory "$ROOTFS" --numeric-owner --owner="$RUN_UID" \
    --group="$RUN_UID" --no-recursion "./${STATE_DIR#/}"

# --- smoke test -------------------------------------------------------------------------------
BIN=$ROOTFS$BIN_PATH
"$BIN" --version >/dev/null || fail "$BIN --version failed"
if command -v file >/dev/null 2>&1; then
    file -L "$BIN" | grep -Eq 'static(ally|-pie) linked' || fail "$BIN is not static: $(file -L "$BIN")"
fi
if command -v ldd >/dev/null 2>&1; then
    # glibc's ldd says "not a dynamic executable" (static) or "statically linked" (static-pie).
    deps=$(ldd "$BIN" 2>&1 || true)
    [[ $deps =~ (not\ a\ dynamic\ executable|statically\ linked) ]] ||
        fail "$BIN has dynamic dependencies: $deps"
fi
echo "==> $("$BIN" --version): $(stat -c %s "$BIN") bytes, static; rootfs tarball $TAR: $(stat -c %s "$TAR") bytes"
