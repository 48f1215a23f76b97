# syntax=docker/dockerfile:1
# Multi-stage build: static binaries (no cgo) on a distroless base, for any
# platform buildx asks for (the Go compiler cross-compiles; nothing runs
# under emulation).
#   docker build --target gopotency -t gopotency .
#   docker buildx build --platform linux/amd64,linux/arm64 --target gopotency \
#     --build-arg VERSION=v1.2.3 -t registry.example/gopotency:v1.2.3 --push .
#   docker build --target demo-upstream -t gopotency-demo-upstream .
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=""
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION, when given, is what `gopotency --version` prints; without it the
# binary reports the VCS revision the toolchain recorded, or "devel".
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags="-s -w ${VERSION:+-X github.com/gopotency/gopotency/pkg/version.version=$VERSION}" \
      -o /out/gopotency ./cmd/gopotency && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" \
      -o /out/demo-upstream ./cmd/demo-upstream

FROM gcr.io/distroless/static-debian12:nonroot AS demo-upstream
COPY --from=build /out/demo-upstream /demo-upstream
EXPOSE 8080
ENTRYPOINT ["/demo-upstream", "--addr", ":8080"]

FROM gcr.io/distroless/static-debian12:nonroot AS gopotency
ARG VERSION=""
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="gopotency" \
      org.opencontainers.image.description="Envoy ext_proc idempotency service: retried non-idempotent requests run once and get the stored answer" \
      org.opencontainers.image.source="https://github.com/gopotency/gopotency" \
      org.opencontainers.image.documentation="https://github.com/gopotency/gopotency#deployment" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/gopotency /gopotency
# The example config sets no store: gopotency then runs on memory:// and
# says so at warn level at start. Set GOPOTENCY_STORE (redis://…,
# postgres://…) in every deployment with more than one replica.
COPY envoy/gopotency.yaml /etc/gopotency/gopotency.yaml
# 9002: ext_proc gRPC (+ grpc.health.v1); 9003: /metrics, /healthz, /readyz
EXPOSE 9002 9003
USER nonroot:nonroot
ENTRYPOINT ["/gopotency", "--config", "/etc/gopotency/gopotency.yaml"]
