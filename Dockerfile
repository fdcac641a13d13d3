# syntax=docker/dockerfile:1
#
# Sluice's image: one binary, every stage (`docker run IMAGE collector`, ...).
# DuckDB is linked in with cgo, against glibc and libstdc++, so the runtime
# base is the build's own Debian release: TestDockerfile (cmd/sluice) checks
# the binary's GLIBC_ and GLIBCXX_ needs against that release.
ARG GO_VERSION=1.26.8
ARG DEBIAN=bookworm

FROM golang:${GO_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice

FROM debian:${DEBIAN}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 10001:10001
WORKDIR /var/lib/sluice
# The collector answers on 8080; the other stages serve their ops endpoints
# where SLUICE_OPS_ADDR says, and set SLUICE_HEALTH_URL to match.
ENV SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_LOG_FORMAT=json \
    SLUICE_HTTP_ADDR=0.0.0.0:8080 \
    SLUICE_HEALTH_URL=http://127.0.0.1:8080/healthz
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS "$SLUICE_HEALTH_URL" >/dev/null || exit 1
ENTRYPOINT ["sluice"]
CMD ["up"]
