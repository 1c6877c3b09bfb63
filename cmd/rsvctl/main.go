// Command rsvctl is a command-line client of the reservation service, with the habits of
// kubectl and gh: flags go anywhere on the line, "rsvctl help" and "rsvctl <command> --help"
// explain, a mistyped command or flag gets a suggestion, and errors name the flag to fix.
//
//	rsvctl <command> [args] [flags]
//
// Run "rsvctl help" for the commands. Times and durations: see times.go. Output is a table
// with times in --tz, or with -o json one JSON object per line as the API spells it. The exit
// code tells scripts what happened; see exitCode.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // --tz works where the system has no zone database (containers)

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"reservation/auth"
	"reservation/buildinfo"
	pb "reservation/proto/reservation/v1"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// defaultPort is reservationd's gRPC port, used when --addr names only a host.
const defaultPort = "50051"

// cli is one invocation: its global flags, where it writes, how it prints, its connection.
type cli struct {
	out, errOut io.Writer

	addr, token, caFile, certFile, keyFile, output, tzName string
	timeout                                                time.Duration

	json   bool
	tz     *time.Location
	now    time.Time
	client pb.ReservationServiceClient

	// fields names, for the command being run, the flag behind a request field where it is
	// not the usual one (flagFor): reserve --for gives "end".
	fields map[string]string
	root   *cobra.Command
}

// run executes one command line and returns the process's exit code.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	c := &cli{out: out, errOut: errOut, fields: map[string]string{}}
	root := c.commands()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		return c.fail(c.commandError(err))
	}
	return exitOK
}

// commands builds the command tree.
func (c *cli) commands() *cobra.Command {
	root := &cobra.Command{
		Use:   "rsvctl",
		Short: "rsvctl is a command-line client of the reservation service",
		Long: `rsvctl books, changes and lists reservations on a reservationd server (its gRPC port).

Times are read and shown in --tz (default: the local zone): 2030-05-01, "2030-05-01 14:00",
RFC 3339 (2030-05-01T14:00:00+02:00), now, or now +/- a duration (+1h, -30m, +2d).
Durations: 90m, 2h30m, 1d, 2w (d is 24 hours, w is 7 days).

Exit codes: 0 ok; 1 anything else; 2 bad command line or invalid request; 3 not found;
4 conflict or wrong state; 5 stale --version or lost race; 6 unavailable or deadline;
7 unauthenticated or permission denied; 8 the change feed's cursor gone or listener too slow.`,
		Example: `  rsvctl reserve --user alice --resource room-1 --start "2030-05-01 14:00" --for 2h
  rsvctl confirm 0193c0de-7a6b-7c2e-9f1a-2b3c4d5e6f70 --version 1
  rsvctl free --resource room-1 --start 2030-05-01 --end 2030-05-02 --min 1h`,
		Version:           buildinfo.Read().String(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return c.setUp() },
	}
	root.SuggestionsMinimumDistance = 2
	root.SetVersionTemplate("rsvctl {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	root.CompletionOptions.HiddenDefaultCmd = true

	g := root.PersistentFlags()
	g.StringVar(&c.addr, "addr", env("RSVCTL_ADDR", "127.0.0.1:"+defaultPort), "reservationd's gRPC address, host[:port]; the port defaults to "+defaultPort+" (RSVCTL_ADDR)")
	g.StringVar(&c.token, "token", os.Getenv("RSVCTL_TOKEN"), "bearer token, when the server has auth on (RSVCTL_TOKEN)")
	g.StringVar(&c.caFile, "tls-ca", "", "PEM CA certificate: connect over TLS, trusting it")
	g.StringVar(&c.certFile, "tls-cert", "", "PEM client certificate, for servers that require one")
	g.StringVar(&c.keyFile, "tls-key", "", "PEM key of --tls-cert")
	g.StringVarP(&c.output, "output", "o", "table", "output: table, or json (one object per line, as the API spells it)")
	g.StringVar(&c.tzName, "tz", os.Getenv("RSVCTL_TZ"), "time zone that times are read and shown in, e.g. Europe/Berlin or UTC (RSVCTL_TZ; default: the local zone)")
	c.timeout = 10 * time.Second
	g.Var(durationFlag{&c.timeout}, "timeout", "deadline of each call (listen: none)")

	root.AddGroup(&cobra.Group{ID: "write", Title: "Book and change:"}, &cobra.Group{ID: "read", Title: "Look:"})
	for _, sub := range []*cobra.Command{c.reserveCmd(), c.batchCmd(), c.seriesCmd(), c.confirmCmd(), c.updateCmd(), c.moveCmd(), c.cancelCmd(), c.cancelSeriesCmd(), c.resourceCmd()} {
		sub.GroupID = "write"
		root.AddCommand(sub)
	}
	for _, sub := range []*cobra.Command{c.getCmd(), c.historyCmd(), c.queryCmd(), c.freeCmd(), c.searchCmd(), c.listenCmd()} {
		sub.GroupID = "read"
		root.AddCommand(sub)
	}
	root.AddCommand(c.tokenCmd(), c.versionCmd())
	c.root = root
	return root
}

// setUp checks the global flags, before any command runs.
func (c *cli) setUp() error {
	switch c.output {
	case "table":
	case "json":
		c.json = true
	default:
		return usagef("-o must be table or json, got %q", c.output)
	}
	c.tz = time.Local
	if c.tzName != "" {
		tz, err := time.LoadLocation(c.tzName)
		if err != nil {
			return usagef("--tz %q: not a time zone (want a name like Europe/Berlin, UTC or Local)", c.tzName)
		}
		c.tz = tz
	}
	c.now = time.Now().Truncate(time.Second)
	return nil
}

// call runs f with a client of the server: a deadline of --timeout unless unbounded, and the
// token, if any.
func (c *cli) call(ctx context.Context, unbounded bool, f func(ctx context.Context) error) error {
	creds, err := transport(c.caFile, c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(target(c.addr), grpc.WithTransportCredentials(creds))
	if err != nil {
		return usagef("--addr %q: %v", c.addr, err)
	}
	defer conn.Close()
	c.client = pb.NewReservationServiceClient(conn)
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	if !unbounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return f(ctx)
}

// target is the gRPC target for --addr: a host without a port gets reservationd's gRPC port
// (gRPC would dial 443). Targets with a scheme (dns:///, unix:) are left as they are.
func target(addr string) string {
	if strings.Contains(addr, ":///") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	return net.JoinHostPort(host, defaultPort)
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
			return nil, usagef("--tls-ca: %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usagef("--tls-cert/--tls-key: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(c), nil
}

func (c *cli) tokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "token",
		Short: "Make a random token and the line that grants it in reservationd's --auth-file",
		Long: `token makes a random bearer token and prints it with its line for reservationd's --auth-file,
which holds only the token's SHA-256. Fill in the user, and the role (user or admin).
Give the token to rsvctl with --token or RSVCTL_TOKEN.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			b := make([]byte, 24)
			rand.Read(b)
			token := hex.EncodeToString(b)
			fmt.Fprintf(c.out, "token:  %s\nauth-file entry: {\"sha256\": %q, \"user\": \"<user id>\", \"role\": \"user\"}\n", token, auth.Hash(token))
			return nil
		},
	}
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rsvctl's version, VCS revision and Go version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(c.out, "rsvctl", buildinfo.Read())
			return nil
		},
	}
}

// Errors of the command line exit 2 with a hint at the help to read.

// usageError is a command line that cannot be run.
type usageError struct {
	msg  string
	help string // the command whose help to point at, e.g. "rsvctl reserve --help"
}

func (e usageError) Error() string { return e.msg }

// errUsage matches every usageError with errors.Is.
var errUsage = errors.New("usage")

func (e usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

var unknownCommand = regexp.MustCompile(`^unknown command "(.*)" for "rsvctl"`)

// commandError rewords cobra's error for a word that is not a command, with one suggestion.
func (c *cli) commandError(err error) error {
	m := unknownCommand.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	msg := fmt.Sprintf("unknown command %q", m[1])
	if s := c.root.SuggestionsFor(m[1]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageError{msg: msg, help: "rsvctl help"}
}

// noArgs refuses positional arguments, naming the first.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{msg: fmt.Sprintf("%s takes no arguments, got %q", cmd.Name(), args[0]), help: cmd.CommandPath() + " --help"}
	}
	return nil
}

// oneID wants exactly one reservation id.
func oneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		got := "none"
		if len(args) > 1 {
			got = fmt.Sprintf("%d: %s", len(args), strings.Join(args, " "))
		}
		return usageError{msg: fmt.Sprintf("%s takes one reservation id, got %s", cmd.Name(), got), help: cmd.CommandPath() + " --help"}
	}
	return nil
}

// flagError rewords pflag's errors: the flag as typed, a suggestion for a mistyped name.
func flagError(cmd *cobra.Command, err error) error {
	help := cmd.CommandPath() + " --help"
	var notExist *pflag.NotExistError
	var invalid *pflag.InvalidValueError
	var noValue *pflag.ValueRequiredError
	switch {
	case errors.As(err, &notExist):
		name := notExist.GetSpecifiedName()
		typed := "--" + name
		if len(name) == 1 {
			typed = "-" + name
		}
		msg := fmt.Sprintf("unknown flag %s for %q", typed, cmd.CommandPath())
		if s := suggestFlag(cmd, name); s != "" {
			msg += "; did you mean --" + s + "?"
		}
		return usageError{msg: msg, help: help}
	case errors.As(err, &invalid):
		return usageError{msg: fmt.Sprintf("--%s %q: %v", invalid.GetFlag().Name, invalid.GetValue(), errors.Unwrap(invalid)), help: help}
	case errors.As(err, &noValue):
		return usageError{msg: fmt.Sprintf("--%s needs a value", noValue.GetFlag().Name), help: help}
	}
	return usageError{msg: err.Error(), help: help}
}

// suggestFlag is the flag of cmd that name is probably a typo of: the only one it begins, or
// the nearest within two edits.
func suggestFlag(cmd *cobra.Command, name string) string {
	var prefixed []string
	best, bestD := "", 3
	visit := func(f *pflag.Flag) {
		if strings.HasPrefix(f.Name, name) {
			prefixed = append(prefixed, f.Name)
		}
		if d := distance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if len(prefixed) == 1 && len(name) > 1 {
		return prefixed[0]
	}
	if len(name) < 3 && bestD > 1 {
		return ""
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
