package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// `reservationd health`, the compose file's probe: 0 and SERVING for a serving replica found
// through the server's own environment (a wildcard address means this machine), 1 for none.
func TestHealthSubcommand(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	_, port, _ := strings.Cut(d.addr, ":")
	probe := func(addr string) (string, error) {
		cmd := exec.CommandContext(ctx, d.cmd.Path, "health")
		cmd.Env = append(os.Environ(), "RESERVATION_GRPC_ADDR="+addr)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, addr := range []string{d.addr, "0.0.0.0:" + port, ":" + port} {
		if out, err := probe(addr); err != nil || strings.TrimSpace(out) != "SERVING" {
			t.Errorf("health with RESERVATION_GRPC_ADDR=%s: %v %q, want exit 0 and SERVING", addr, err, out)
		}
	}
	out, err := probe(freeAddr(t))
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !strings.Contains(out, "Unavailable") {
		t.Errorf("health with nothing listening: %v %q, want exit 1 naming the failure", err, out)
	}
}

// TestAppUserGrants runs a replica as a MySQL user with exactly the privileges that
// ops/mysql/init-app-user.sh grants (the compose file's app user): it migrates the schema,
// leads the feed, reserves, confirms, cancels, reaps holds, and a listener hears it all.
func TestAppUserGrants(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "ops", "mysql", "init-app-user.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^GRANT ([A-Z, ]+) ON reservation\.\* TO 'reservation'@'%';$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("init-app-user.sh has no GRANT … ON reservation.* line")
	}
	root, dsn := repotest.NewDB(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	user := fmt.Sprintf("app_%d", time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'app-secret'", user),
		fmt.Sprintf("GRANT %s ON `%s`.* TO '%s'@'%%'", m[1], cfg.DBName, user),
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { root.ExecContext(context.Background(), fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
	cfg.User, cfg.Passwd = user, "app-secret"

	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+cfg.FormatDSN(), "RESERVATION_REDIS_ADDR="+locktest.Addr(), "RESERVATION_LOCK=redis")
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)
	c := pb.NewReservationServiceClient(conn)
	zero := uint64(0)
	feed, err := c.Listen(ctx, &pb.ListenRequest{AfterSeq: &zero})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2032, 1, 1, 10, 0, 0, 0, time.UTC)
	r, err := c.Reserve(ctx, &pb.ReserveRequest{RequestId: "app-1", Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-1",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
	if err != nil {
		t.Fatalf("Reserve as the app user: %v\n%s", err, d.logs.String())
	}
	if _, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: r.Reservation.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, &pb.CancelRequest{Id: r.Reservation.Id}); err != nil {
		t.Fatal(err)
	}
	hold, err := c.Reserve(ctx, &pb.ReserveRequest{Hold: durationpb.New(time.Second), Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-2",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	// create, update, delete; then the hold's create and, once the reaper removed it, its delete.
	for i, want := range []pb.ReservationUpdateType{1, 2, 3, 1, 3} {
		m, err := feed.Recv()
		if err != nil || m.Op != want {
			t.Fatalf("change %d: %v, %v; want %v\n%s", i+1, m, err, want, d.logs.String())
		}
		if i == 4 && m.Reservation.Id != hold.Reservation.Id {
			t.Fatalf("the reaped hold's delete names %s", m.Reservation.Id)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited // the logs are complete, and no longer written
	if strings.Contains(d.logs.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged as the app user:\n%s", d.logs.String())
	}
}
