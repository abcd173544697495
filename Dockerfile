# One image, both roles: docker run IMAGE server | client | check | dlq list ...
# Stage 1 builds the static musl binary (the same as scripts/build-static.sh).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/crm-relay /crm-relay \
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
ENTRYPOINT ["/usr/local/bin/crm-relay"]
CMD ["--help"]
