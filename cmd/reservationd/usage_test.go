package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
)

// TestHelp: every way of asking for the help prints it on stdout and succeeds: the
// subcommands first, then the required settings, then every flag with its environment
// variable, in lines of at most 100 columns. Needs no server.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"migrate", "--help"}, {"health", "-h"}, {"--lock", "local", "--help"}} {
		var out bytes.Buffer
		if err := run(args, &out, nil); err != nil {
			t.Fatalf("reservationd %q: %v", args, err)
		}
		help := out.String()
		order := []string{"Usage:", "reservationd migrate", "reservationd health", "reservationd --version", "reservationd help",
			"Required:", "--mysql-dsn (RESERVATION_MYSQL_DSN)", "root@tcp(127.0.0.1:3306)/reservation", "Flags:"}
		at := 0
		for _, want := range order {
			i := strings.Index(help[at:], want)
			if i < 0 {
				t.Fatalf("reservationd %q: no %q after offset %d (in this order: %q):\n%s", args, want, at, order, help)
			}
			at += i + len(want)
		}
		for i, line := range strings.Split(help, "\n") {
			if n := utf8.RuneCountInString(line); n > helpWidth {
				t.Errorf("reservationd %q: line %d has %d columns (at most %d): %q", args, i+1, n, helpWidth, line)
			}
		}
		c := DefaultConfig()
		c.flags().VisitAll(func(f *flag.Flag) {
			if !strings.Contains(help, "  --"+f.Name+" ") && !strings.Contains(help, "  --"+f.Name+"\n") || !strings.Contains(help, envName(f.Name)) {
				t.Errorf("reservationd %q: the help lacks --%s (%s)", args, f.Name, envName(f.Name))
			}
		})
	}
}

// asMainEnv makes the test binary run main instead of the tests (TestMain): a process with
// reservationd's exit code and output, without building the binary.
const asMainEnv = "RESERVATIOND_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHelpExitCode: the process's help exits 0 and writes to stdout alone; a bad flag, a bad
// value and a missing DSN exit 2, as in rsvctl, and point to the help instead of printing it.
// Needs no server.
func TestHelpExitCode(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	command := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), asMainEnv+"=1", "RESERVATION_MYSQL_DSN=")
		return cmd
	}
	for _, arg := range []string{"help", "--help", "-h"} {
		var stdout, stderr bytes.Buffer
		cmd := command(arg)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("reservationd %s: %v (want exit 0), stderr %q, stdout %d bytes", arg, err, stderr.String(), stdout.Len())
		}
	}
	for _, args := range [][]string{{"--no-such-flag"}, {"--drain", "soon"}, {"extra"}, {"--lock", "local"}} {
		out, err := command(args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "Run 'reservationd help' for usage.") || strings.Contains(string(out), "Usage:") {
			t.Errorf("reservationd %q: %v: %q; want exit 2 and a pointer to the help", args, err, out)
		}
	}
}

// TestMissingDSNNamesIt: without --mysql-dsn the error names the flag, its variable and the
// form. Needs no server.
func TestMissingDSNNamesIt(t *testing.T) {
	t.Setenv("RESERVATION_MYSQL_DSN", "")
	err := run([]string{"--lock", "local"}, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--mysql-dsn (RESERVATION_MYSQL_DSN) is required") || !strings.Contains(err.Error(), "root@tcp(") {
		t.Errorf("no DSN: %v", err)
	}
}

// TestBadDSNShowsTheForm: reservationd refuses a DSN in URL or host:port form naming the flag,
// with an example of the form it reads, as a bad command line (exit 2). Needs no server.
func TestBadDSNShowsTheForm(t *testing.T) {
	for _, dsn := range []string{"root@127.0.0.1:3306/reservation", "mysql://root@127.0.0.1:3306/reservation"} {
		err := run([]string{"--mysql-dsn", dsn, "--lock", "local"}, &bytes.Buffer{}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "--mysql-dsn: ") || !strings.Contains(err.Error(), "e.g. root@tcp(127.0.0.1:3306)/reservation") {
			t.Errorf("--mysql-dsn %s: %v; want the flag named and the example root@tcp(127.0.0.1:3306)/reservation", dsn, err)
		}
		if !errors.Is(err, errUsage) {
			t.Errorf("--mysql-dsn %s: %v is not a usage error: reservationd would exit 1, not 2", dsn, err)
		}
	}
}

func TestMigratedMessage(t *testing.T) {
	for _, tc := range []struct {
		m    repo.Migrated
		want string
	}{
		{repo.Migrated{Applied: 8, Version: 8}, "applied 8 migrations, now at version 8"},
		{repo.Migrated{Applied: 1, Version: 9}, "applied 1 migration, now at version 9"},
		{repo.Migrated{Version: 9}, "schema up to date at version 9: no migration to apply"},
	} {
		if got := migratedMessage(tc.m); got != tc.want {
			t.Errorf("migratedMessage(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

// TestRedisDownAtStart: a Redis that does not answer is a WARN at start, in the JSON log, and
// the replica still gets its locker; the locker's own messages go to the same log. Needs no
// server: nothing listens on the address.
func TestRedisDownAtStart(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	cfg, err := parseFlags([]string{"--redis-addr", freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	l, closeLocker, err := newLocker(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("newLocker with Redis down: %v; want a locker and a warning", err)
	}
	defer closeLocker()
	if err := lockOnce(t, l, "k"); err == nil {
		t.Fatal("a lock on a Redis that is down succeeded")
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		msgs = append(msgs, rec.Level+" "+rec.Msg)
	}
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{"WARN redis does not answer at start", "WARN redis unavailable; locks fail fast"} {
		if !strings.Contains(joined, want) {
			t.Errorf("log lacks %q:\n%s", want, joined)
		}
	}
}

// TestOneLogFormatWithRedisDown: the binary started with Redis down says so at start, serves,
// and every line it logs, go-redis's and the lock's among them, is JSON; its migration line
// says what it applied.
func TestOneLogFormatWithRedisDown(t *testing.T) {
	_, dsn := repotest.NewDB(t) // migrated already: the daemon applies nothing
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_REDIS_ADDR="+locktest.ClosedAddr(t), "RESERVATION_LOCK=redis")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)
	start := time.Date(2032, 1, 1, 10, 0, 0, 0, time.UTC)
	if _, err := pb.NewReservationServiceClient(conn).Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-1",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}}); err != nil {
		t.Errorf("Reserve with Redis down: %v; want it made under the database guard", err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.exited; err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(d.logs.String()), "\n") {
		var rec struct{ Level, Msg, Component string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a log line is not JSON: %q", line)
			continue
		}
		msgs = append(msgs, rec.Level+" "+rec.Component+" "+rec.Msg)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"WARN  redis does not answer at start", "WARN go-redis ", "WARN  redis unavailable; locks fail fast",
		"INFO  schema up to date at version "} {
		if !strings.Contains(all, want) {
			t.Errorf("no log line %q in:\n%s", want, all)
		}
	}
}
