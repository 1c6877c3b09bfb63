package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// probeHealth is `reservationd health [flags]`: it asks the replica on --grpc-addr (a wildcard
// host means this machine) for its gRPC health, prints the answer, and fails unless SERVING.
// It is the container's probe: the distroless image has no shell or curl. It reads the same
// flags and environment as the server, so it finds the port and TLS the server uses.
func probeHealth(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	creds := insecure.NewCredentials()
	if cfg.TLSCert != "" {
		// The probe checks liveness on this machine and sends nothing secret: the server's
		// name is not verified. (With --tls-client-ca the server wants a client certificate,
		// which the probe does not have: use grpc_health_probe with one there.)
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(net.JoinHostPort(host, port), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health of %s: %w", conn.Target(), err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health of %s: %v", conn.Target(), resp.GetStatus())
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	return nil
}
