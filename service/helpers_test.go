package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	"reservation/cache"
	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/server"
)

// quiet keeps expected warnings (a Redis that is down on purpose) out of the test output.
var quiet = slog.New(slog.DiscardHandler)

// ownSubscriptions is how many feed subscriptions a replica holds itself: its cache's.
const ownSubscriptions = 1

// following waits until r's cache follows the feed, so that its subscription is counted.
func following(t testing.TB, r *replica) {
	waitUntil(t, "the cache to follow the feed", func() bool { return r.taken.Stats().Following })
}

// replica is one service instance: its own pool, store, gRPC server and client.
type replica struct {
	addr   string
	http   string // the HTTP gateway's address
	client pb.ReservationServiceClient
	store  *repo.Store
	feed   *queue.Queue
	taken  *cache.Cache
}

// startReplica serves a store and its change feed on db through a real gRPC server on
// loopback.
func startReplica(t testing.TB, db *sqlx.DB, locker reservation.Locker) *replica {
	return startReplicaWith(t, db, locker, queue.Options{})
}

// replicasOn starts n replicas on the database dsn, each with its own connection pool and the
// locker newLocker makes: many replicas of one service.
func replicasOn(t testing.TB, dsn string, n int, newLocker func() reservation.Locker) []*replica {
	t.Helper()
	var replicas []*replica
	for range n {
		pool, err := repo.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pool.Close() })
		replicas = append(replicas, startReplica(t, pool, newLocker()))
	}
	return replicas
}

func startReplicaWith(t testing.TB, db *sqlx.DB, locker reservation.Locker, feedOpts queue.Options) *replica {
	t.Helper()
	return startReplicaOpts(t, db, locker, replicaOptions(feedOpts))
}

// replicaOptions are a test replica's: as reservationd runs it, with a cache of committed
// reservations following the feed (and no read index); the reaper runs every 20ms so that
// the tests of lapsing holds need not wait a second.
func replicaOptions(feedOpts queue.Options) server.Options {
	feedOpts.Logger = quiet
	if feedOpts.PollInterval == 0 {
		// The feed polls and stamps every 5ms, not every default interval, so that the Listen
		// tests see a change in milliseconds; rsvbench's TestWorkloads, cmd/reservationd's
		// tests and the chaos suite run the feed with its defaults.
		feedOpts.PollInterval, feedOpts.StampInterval = 5*time.Millisecond, 5*time.Millisecond
	}
	return server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ReapInterval: 20 * time.Millisecond,
		Feed: feedOpts, Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries}, Logger: quiet,
	}
}

// startReplicaOpts serves a replica made with opts.
func startReplicaOpts(t testing.TB, db *sqlx.DB, locker reservation.Locker, opts server.Options) *replica {
	t.Helper()
	d, err := server.New(t.Context(), db, locker, opts)
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })
	conn := dial(t, d.GRPCAddr())
	return &replica{addr: d.GRPCAddr(), http: d.HTTPAddr(), client: pb.NewReservationServiceClient(conn), store: d.Store(), feed: d.Feed(), taken: d.Cache()}
}

// dial connects a client to addr for the rest of the test.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newClient gives a test a fresh database and one replica in front of it.
func newClient(t *testing.T) (pb.ReservationServiceClient, *sqlx.DB) {
	t.Helper()
	db, _ := repotest.NewDB(t)
	return startReplica(t, db, nil).client, db
}

func ctxWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// ctxFor bounds a test's calls so that a stuck test fails instead of hanging. It bounds no
// behaviour: TestSlowListenerIsCutOff's 300 writes and receives on one stream took more than
// 30 s on a loaded 2-core machine.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// base is a fixed instant the tests book around.
var base = time.Date(2030, 3, 1, 9, 0, 0, 0, time.UTC)

func at(h float64) *timestamppb.Timestamp {
	return timestamppb.New(base.Add(time.Duration(h * float64(time.Hour))))
}

func booking(resource string, from, to float64) *pb.Reservation {
	return &pb.Reservation{UserId: "alice", ResourceId: resource, Start: at(from), End: at(to)}
}

func reserve(t *testing.T, c pb.ReservationServiceClient, r *pb.Reservation) *pb.Reservation {
	t.Helper()
	resp, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: r})
	if err != nil {
		t.Fatalf("Reserve(%v): %v", r, err)
	}
	return resp.GetReservation()
}

func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
	return st
}

// badFields returns the fields a status's BadRequest names.
func badFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

func conflictInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

func count(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Get(&n, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// overlaps counts pairs of stored reservations of one resource whose windows overlap.
func overlaps(t *testing.T, db *sqlx.DB) int { return repotest.Overlaps(t, db) }

func protoEqual(a, b *pb.Reservation) bool { return proto.Equal(a, b) }

func newDB(t testing.TB) *sqlx.DB {
	db, _ := repotest.NewDB(t)
	return db
}

// time2 is i half-hours.
func time2(i int) time.Duration { return time.Duration(i) * 30 * time.Minute }

// openLazily opens a pool without connecting, for a server that is not there.
func openLazily(t *testing.T, dsn string) *sqlx.DB {
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// concurrentLockers are the lockers the concurrency tests run each workload under: Redis, and
// a Redis that cannot be reached, so that the database alone guards. The waits are longer than
// the default (5s) so that 32 clients on one resource queue rather than give up: the tests
// count refusals, not timeouts.
func concurrentLockers() map[string]func(t *testing.T, prefix string) reservation.Locker {
	return map[string]func(t *testing.T, prefix string) reservation.Locker{
		"redis": func(t *testing.T, prefix string) reservation.Locker {
			return lock.NewRedis(locktest.Client(t), lock.RedisOptions{Prefix: prefix, Wait: 20 * time.Second, Logger: quiet})
		},
		"redis unreachable": func(t *testing.T, prefix string) reservation.Locker {
			client := redis.NewClient(lock.ClientOptions(locktest.ClosedAddr(t)))
			t.Cleanup(func() { client.Close() })
			return lock.NewRedis(client, lock.RedisOptions{Prefix: prefix, Logger: quiet})
		},
	}
}

// httpJSON calls the replica's HTTP gateway with body (nil for none) as JSON and returns the
// status code and the body answered.
func (r *replica) httpJSON(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var in io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctxFor(t), method, "http://"+r.http+path, in)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, out
}
