# syntax=docker/dockerfile:1
# The operator and agent images, two targets of one build (`make image` builds both):
#   docker build --target operator -t palisade-operator:0.1.0 .
#   docker build --target agent    -t palisade-agent:0.1.0 .
ARG RUST_VERSION=1.91
ARG DEBIAN=trixie

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libseccomp-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p palisade-operator -p palisade-agent \
 && install -D -m 0755 -t /out target/release/palisade-operator target/release/palisade-agent

# Both components run apparmor_parser (the operator compiles without loading, to validate;
# the agent loads) and link libseccomp. Debian's apparmor package brings the parser
# (AppArmor userspace 4.1 in trixie, which also reads 3.x abstractions) and, for the
# operator, the abstractions and tunables it validates against (/etc/apparmor.d).
FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends apparmor libseccomp2 \
 && rm -rf /var/lib/apt/lists/*

FROM runtime AS operator
COPY --from=build /out/palisade-operator /usr/local/bin/palisade-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/palisade-operator"]

FROM runtime AS agent
COPY --from=build /out/palisade-agent /usr/local/bin/palisade-agent
# Root, for the root-owned host directories it writes (the kubelet's seccomp directory, its
# state dir); the chart drops every capability except MAC_ADMIN.
ENTRYPOINT ["/usr/local/bin/palisade-agent"]
