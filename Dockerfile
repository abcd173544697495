# One image, both roles: docker run IMAGE server | client | check | dlq list | events | health ...
# Stage 1 builds the static musl binary (the same as scripts/build-static.sh) for the
# architecture being built (TARGETARCH: amd64 or arm64), dependencies in a layer of their own.
FROM rust:1-bookworm AS build
ARG TARGETARCH
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /target \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(cat /target)" \
 && rustup component add rust-src
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
# cargo with the shipped binary's settings (std rebuilt without its backtrace symbolizer).
COPY scripts/static-cargo.sh scripts/static-cargo.sh
# Dependencies only, against empty sources: this layer is rebuilt when Cargo.toml or
# Cargo.lock change, not on every source change.
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && scripts/static-cargo.sh build --release --locked --target "$(cat /target)" --bin crm-relay \
 && rm -rf src
# build.rs only now: on x86_64 it links the binary's own small-copy memcpy (src/small_copy.rs),
# which the empty main.rs above does not have.
COPY build.rs ./
COPY src src
# touch: the real sources must be newer than the empty ones cargo just built.
RUN touch src/main.rs src/lib.rs \
 && scripts/static-cargo.sh build --release --locked --target "$(cat /target)" --bin crm-relay \
 && cp "target/$(cat /target)/release/crm-relay" /crm-relay \
 && /crm-relay version | grep -q '^crm-relay ' \
 && echo 'crm-relay:x:10001:10001:crm-relay:/:/sbin/nologin' > /passwd \
 && echo 'crm-relay:x:10001:' > /group

# Stage 2: nothing but the binary, CA certificates and a non-root user.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /passwd /etc/passwd
COPY --from=build /group /etc/group
COPY --from=build /crm-relay /usr/local/bin/crm-relay
USER 10001:10001
# server: 8080 public, 9090 admin; client: 9091 admin. Admin listeners default to loopback:
# set RELAY_ADMIN_LISTEN=0.0.0.0:9090 to scrape from another container, never publish it.
EXPOSE 8080 9090 9091
# Exec form (the image has no shell): asks the role's admin /health (RELAY_ADMIN_LISTEN, else
# 127.0.0.1:9090 or :9091), which answers 200 while Redis answers.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/crm-relay", "health"]
ENTRYPOINT ["/usr/local/bin/crm-relay"]
CMD ["--help"]
