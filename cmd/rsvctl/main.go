// Command rsvctl is a command-line client of the reservation service.
//
//	rsvctl [global flags] <command> [flags] [args]
//
// Commands: reserve, batch, confirm, update, cancel, get, query, free, listen, token.
// Run "rsvctl <command> -h" for a command's flags. Times are RFC 3339 (2030-03-01T14:00:00Z)
// or relative to now (+1h, -30m, now). Output is a table, or with -o json one JSON object per
// line. The exit code tells scripts what happened; see exitCode.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"reservation/auth"
	pb "reservation/proto/reservation/v1"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// cli is one invocation: where it writes, how it prints, and its connection.
type cli struct {
	out, errOut io.Writer
	json        bool
	client      pb.ReservationServiceClient
	now         time.Time
}

// run executes one command line and returns the process's exit code.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	global := flag.NewFlagSet("rsvctl", flag.ContinueOnError)
	global.SetOutput(errOut)
	addr := global.String("addr", env("RSVCTL_ADDR", "127.0.0.1:50051"), "server address (RSVCTL_ADDR)")
	token := global.String("token", os.Getenv("RSVCTL_TOKEN"), "bearer token, when the server has auth on (RSVCTL_TOKEN)")
	caFile := global.String("tls-ca", "", "PEM CA certificate: connect over TLS, trusting it")
	certFile := global.String("tls-cert", "", "PEM client certificate, for servers that require one")
	keyFile := global.String("tls-key", "", "PEM key of --tls-cert")
	output := global.String("o", "table", "output: table or json")
	timeout := global.Duration("timeout", 10*time.Second, "deadline of each call (listen: none)")
	global.Usage = func() {
		fmt.Fprintln(errOut, "usage: rsvctl [global flags] reserve|batch|confirm|update|cancel|get|query|free|listen|token [flags] [args]")
		global.PrintDefaults()
	}
	if err := global.Parse(args); err != nil {
		return exitUsage
	}
	if global.NArg() == 0 {
		global.Usage()
		return exitUsage
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(errOut, "rsvctl: -o must be table or json, got %q\n", *output)
		return exitUsage
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "token" {
		return newToken(out)
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(errOut, "rsvctl: unknown command %q\n", name)
		global.Usage()
		return exitUsage
	}
	creds, err := transport(*caFile, *certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(errOut, "rsvctl:", err)
		return exitUsage
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintln(errOut, "rsvctl:", err)
		return exitUsage
	}
	defer conn.Close()
	if *token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	}
	if name != "listen" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	c := &cli{out: out, errOut: errOut, json: *output == "json", client: pb.NewReservationServiceClient(conn), now: time.Now()}
	fs := flag.NewFlagSet("rsvctl "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	exec := cmd(c, fs)
	if err := fs.Parse(rest); err != nil {
		return exitUsage
	}
	if err := exec(ctx, fs.Args()); err != nil {
		return c.fail(err)
	}
	return exitOK
}

func env(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return fallback
}

// transport is plaintext, or TLS when a CA or client certificate is given.
func transport(caFile, certFile, keyFile string) (credentials.TransportCredentials, error) {
	if caFile == "" && certFile == "" {
		return insecure.NewCredentials(), nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(c), nil
}

// newToken prints a fresh random token and the line that grants it in reservationd's
// --auth-file; only the hash goes in the file.
func newToken(out io.Writer) int {
	b := make([]byte, 24)
	rand.Read(b)
	token := hex.EncodeToString(b)
	fmt.Fprintf(out, "token:  %s\nauth-file entry: {\"sha256\": %q, \"user\": \"<user id>\", \"role\": \"user\"}\n", token, auth.Hash(token))
	return exitOK
}

// errUsage is a command line that cannot be run.
var errUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// parseTime reads RFC 3339, "now", or a duration relative to now ("+1h", "-30m").
func (c *cli) parseTime(flagName, s string) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return c.now, nil
	case strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, usagef("--%s %q: want RFC 3339 or a duration like +1h", flagName, s)
		}
		return c.now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("--%s %q: want RFC 3339 (2030-03-01T14:00:00Z) or a duration like +1h", flagName, s)
	}
	return t, nil
}
