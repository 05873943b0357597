# syntax=docker/dockerfile:1
# One image with both cluster-side binaries, /usr/local/bin/sks-ccm and
# /usr/local/bin/sks-apiserver (deploy/ sets the command of each Deployment):
#   docker build -t registry.example.com/sks:0.1.0 .
# Without a daemon or these registries, hack/image builds the same layout with
# buildah (hack/image.layout lists it; tests/tests/image.rs checks both).
#
# TLS is rustls with ring (no OpenSSL), so the binaries need only glibc (libc,
# libm, libgcc_s): distroless/cc is the runtime, as a non-root user. They are
# deliberately not static: musl's allocator is much slower for these
# multi-threaded servers, and a static glibc cannot load the NSS modules that
# resolve the orchestrator's and the cluster's host names.

FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
# Cargo's registry and the target directory are cached between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sks-ccm -p sks-apiserver \
 && install -D -m 0755 -t /out target/release/sks-ccm target/release/sks-apiserver

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
