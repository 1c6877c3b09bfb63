# Build: docker build -t reservationd .   (see docker-compose.yml to run it)

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that source edits don't invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary (no cgo) for the distroless static image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/reservationd ./cmd/reservationd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/reservationd /reservationd
USER nonroot
EXPOSE 50051 8080
ENTRYPOINT ["/reservationd"]
