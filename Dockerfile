# Multi-stage build: static binaries (no cgo) on a distroless base.
#   docker build --target gopotency -t gopotency .
#   docker build --target demo-upstream -t gopotency-demo-upstream .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/gopotency ./cmd/gopotency && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/demo-upstream ./cmd/demo-upstream

FROM gcr.io/distroless/static-debian12:nonroot AS demo-upstream
COPY --from=build /out/demo-upstream /demo-upstream
EXPOSE 8080
ENTRYPOINT ["/demo-upstream", "--addr", ":8080"]

FROM gcr.io/distroless/static-debian12:nonroot AS gopotency
COPY --from=build /out/gopotency /gopotency
COPY envoy/gopotency.yaml /etc/gopotency/gopotency.yaml
EXPOSE 9002 9003
ENTRYPOINT ["/gopotency", "--config", "/etc/gopotency/gopotency.yaml"]
