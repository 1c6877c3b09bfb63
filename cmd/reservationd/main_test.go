package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// The binary, as an operator runs it: configured from the environment, it migrates, serves
// the API with health and reflection, and drains on SIGTERM.
func TestBinaryServesAndDrains(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_REDIS_ADDR="+locktest.Addr(), "RESERVATION_LOCK=redis")
	cmd, logs, exited := d.cmd, d.logs, d.exited
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)

	c := pb.NewReservationServiceClient(conn)
	start := time.Date(2032, 1, 1, 10, 0, 0, 0, time.UTC)
	r, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-1",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
	if err != nil {
		t.Fatalf("Reserve: %v\n%s", err, logs.String())
	}
	if _, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: r.GetReservation().GetId()}); err != nil {
		t.Fatal(err)
	}

	// A message past --max-msg-size (4 MiB) is refused before it is read.
	big := &pb.ReserveRequest{Reservation: &pb.Reservation{Note: strings.Repeat("n", 5<<20)}}
	if _, err := c.Reserve(ctx, big, grpc.MaxCallSendMsgSize(8<<20)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 5 MiB request: %v, want RESOURCE_EXHAUSTED", err)
	}

	// A listener open at shutdown is ended with UNAVAILABLE and does not hold up the drain.
	feed, err := c.Listen(ctx, &pb.ListenRequest{AfterSeq: new(uint64)})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []pb.ReservationUpdateType{pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_CREATE, pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE} {
		m, err := feed.Recv()
		if err != nil || m.GetOp() != op || m.GetReservation().GetId() != r.GetReservation().GetId() {
			t.Fatalf("Listen: %v, %v; want %v of %s", m, err, op, r.GetReservation().GetId())
		}
	}

	services := listServices(t, ctx, conn)
	for _, want := range []string{"reservation.v1.ReservationService", "grpc.health.v1.Health"} {
		if !strings.Contains(services, want) {
			t.Errorf("reflection lists %s, want %s among them", services, want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\n%s", logs.String())
	}
	if _, err := feed.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Listen at shutdown ended with %v, want UNAVAILABLE", err)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) || strings.Contains(logs.String(), "drain bound reached") {
		t.Errorf("logs do not show a clean stop:\n%s", logs.String())
	}
}

// daemon is a reservationd process started by a test.
type daemon struct {
	addr   string // gRPC
	http   string
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	exited chan error
}

// startDaemon builds reservationd and starts it on a free port with env added to the
// test's environment. The process is killed when the test ends, if it is still running.
func startDaemon(t testing.TB, env ...string) *daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("runs reservationd against a database: not run under -short (make check); make test runs it")
	}
	bin := filepath.Join(t.TempDir(), "reservationd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	d := &daemon{addr: freeAddr(t), http: freeAddr(t), logs: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd = exec.Command(bin)
	d.cmd.Env = append(append(os.Environ(), "RESERVATION_GRPC_ADDR="+d.addr, "RESERVATION_HTTP_ADDR="+d.http), env...)
	d.cmd.Stderr = d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
		}
	})
	return d
}

func (d *daemon) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitServing waits for the daemon's health service to answer SERVING.
func (d *daemon) waitServing(t testing.TB, ctx context.Context, conn *grpc.ClientConn) {
	t.Helper()
	health := healthpb.NewHealthClient(conn)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case err := <-d.exited:
			t.Fatalf("reservationd exited: %v\n%s", err, d.logs.String())
		case <-ctx.Done():
			t.Fatalf("reservationd never became healthy: %v\n%s", err, d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func listServices(t *testing.T, ctx context.Context, conn *grpc.ClientConn) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream, which would otherwise hold up the drain
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return strings.Join(names, " ")
}

func freeAddr(t testing.TB) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func TestFlagsFallBackToEnvironment(t *testing.T) {
	t.Setenv("RESERVATION_GRPC_ADDR", "127.0.0.1:6000")
	t.Setenv("RESERVATION_LOCK", "local")
	t.Setenv("RESERVATION_LOCK_WAIT", "2s")
	cfg, err := parseFlags([]string{"--lock", "redis"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.GRPCAddr != "127.0.0.1:6000" || cfg.Lock != "redis" || cfg.LockWait != 2*time.Second || !cfg.Migrate {
		t.Errorf("config %+v: want the address and wait from the environment and the lock from the flag", cfg)
	}
	if _, err := parseFlags([]string{"stray"}); err == nil {
		t.Error("a stray argument was accepted")
	}
	if _, err := parseFlags([]string{"--reap-interval", "0s"}); err == nil || !strings.Contains(err.Error(), "reap-interval") {
		t.Errorf("a zero --reap-interval gave %v, want an error naming it", err)
	}
	if _, err := parseFlags([]string{"--hold-min", "2h", "--hold-max", "1h"}); err == nil {
		t.Error("--hold-min above --hold-max was accepted")
	}
	if _, err := parseFlags([]string{"--one-statement-per-trip", "yes"}); err == nil || !strings.Contains(err.Error(), "one-statement-per-trip") {
		t.Errorf("--one-statement-per-trip yes gave %v, want an error naming it", err)
	}
	t.Setenv("RESERVATION_DRAIN", "soon")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "RESERVATION_DRAIN") {
		t.Errorf("a bad RESERVATION_DRAIN gave %v, want an error naming it", err)
	}
}

// TestOperationsDocListsEveryFlag keeps the configuration reference (docs/operations.md)
// complete.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	// A flag of one part may be documented in that part's page under docs/ instead.
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		readme = append(readme, b...)
	}
	c := DefaultConfig()
	c.flags().VisitAll(func(f *flag.Flag) {
		if !strings.Contains(string(readme), "`--"+f.Name+"`") || !strings.Contains(string(readme), envName(f.Name)) {
			t.Errorf("docs/operations.md's configuration table lacks --%s (%s)", f.Name, envName(f.Name))
		}
	})
}

// TestRedisFlags: each bad combination of the --redis-* flags is refused with an error naming
// the flag, and the password comes from the environment or a file, never both.
func TestRedisFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--redis-mode", "ring"}, "--redis-mode"},
		{[]string{"--redis-mode", "sentinel", "--redis-addr", "a:1,b:2"}, "--redis-master-name"},
		{[]string{"--redis-master-name", "m"}, "--redis-master-name"},
		{[]string{"--redis-addr", "a:1,b:2"}, "--redis-addr"},
		{[]string{"--redis-mode", "cluster", "--redis-addr", "a:1,b:2", "--redis-db", "2"}, "--redis-db"},
		{[]string{"--redis-db", "-1"}, "--redis-db"},
		{[]string{"--redis-tls-ca", "ca.pem"}, "--redis-tls-ca"},
		{[]string{"--redis-tls", "--redis-tls-cert", "c.pem"}, "--redis-tls-key"},
		{[]string{"--redis-prefix", ""}, "--redis-prefix"},
		{[]string{"--redis-prefix", "a{b}:"}, "--redis-prefix"},
		{[]string{"--lock-ttl", "100ms"}, "--lock-ttl"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("parseFlags(%q) = %v, want an error naming %s", tc.args, err, tc.flag)
		}
	}

	t.Setenv("RESERVATION_REDIS_MODE", "sentinel")
	t.Setenv("RESERVATION_REDIS_MASTER_NAME", "mymaster")
	t.Setenv("RESERVATION_REDIS_ADDR", "127.0.0.1:26379, 127.0.0.1:26380")
	t.Setenv("RESERVATION_REDIS_PREFIX", "blue:")
	cfg, err := parseFlags([]string{"--redis-db", "3", "--redis-username", "svc"})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RESERVATION_REDIS_PASSWORD": "s3cret"}
	cc, err := redisClientConfig(cfg, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.Addrs) != 2 || cc.Mode != "sentinel" || cc.MasterName != "mymaster" || cc.DB != 3 || cc.Username != "svc" || cc.Password != "s3cret" || cc.TLS != nil || cfg.RedisLock.Prefix != "blue:" {
		t.Errorf("client config %+v (prefix %q): want the sentinel settings from the environment and flags", cc, cfg.RedisLock.Prefix)
	}

	file := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Redis.PasswordFile = file
	if _, err := redisClientConfig(cfg, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "--redis-password-file") {
		t.Errorf("password in both the environment and a file: %v, want an error naming --redis-password-file", err)
	}
	cc, err = redisClientConfig(cfg, func(string) string { return "" })
	if err != nil || cc.Password != "from-file" {
		t.Errorf("password from the file = %q, %v; want from-file", cc.Password, err)
	}
}
