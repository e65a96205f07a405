# The mixdet command line in a slim image, for the cluster examples (examples/cluster/).
#   docker build -t mixdet .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mixdet

FROM debian:bookworm-slim
COPY --from=build /src/target/release/mixdet /usr/local/bin/mixdet
ENTRYPOINT []
CMD ["mixdet", "--help"]
