# updraft's container image, for CI systems with a container daemon. `scripts/image` builds the
# same image without one (an OCI layout in target/image), and its test runs it.
#
#   docker build -t updraft .
#   docker run -p 8080:8080 updraft            # updraft standalone, SQLite in /home/updraft
#   docker run updraft scheduler               # or server, db migrate, ...

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p updraft-cli --bin updraft \
 && strip --strip-all target/release/updraft

# The runtime: glibc, OpenSSL and CA certificates (distroless "cc"), zlib from the build stage,
# the binary, a non-root user. No shell: the control plane needs none.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1
COPY --from=build /src/target/release/updraft /usr/local/bin/updraft
ENV UPDRAFT_HOME=/home/nonroot \
    UPDRAFT__API__HOST=0.0.0.0 \
    UPDRAFT__CORE__LOAD_EXAMPLES=false
WORKDIR /home/nonroot
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/updraft"]
CMD ["standalone"]
