package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
)

// overbookedSQL counts the reservations of a MySQL reservations table that start at an instant
// when their resource holds more live reservations than its capacity (0 or none: 1). The peak
// number of reservations at once is reached at some reservation's start, so this is 0 exactly
// when no resource was ever over its capacity; on a capacity-1 resource any overlap counts. The
// one placeholder is the longest reservation stored, in microseconds (maxSpanSQL): a reservation
// that starts earlier than that before another's start ends before it.
const overbookedSQL = `SELECT COUNT(*) FROM (
	SELECT r.id FROM reservations r
	JOIN reservations x ON x.resource_id = r.resource_id AND x.start_at <= r.start_at AND x.end_at > r.start_at
		AND x.start_at > r.start_at - INTERVAL ? MICROSECOND
	LEFT JOIN resources c ON c.id = r.resource_id
	WHERE (r.expires_at IS NULL OR r.expires_at > UTC_TIMESTAMP(6)) AND (x.expires_at IS NULL OR x.expires_at > UTC_TIMESTAMP(6))
	GROUP BY r.id, c.capacity
	HAVING COUNT(*) > GREATEST(COALESCE(c.capacity, 1), 1)) overbooked_rows`

const maxSpanSQL = `SELECT COALESCE(MAX(TIMESTAMPDIFF(MICROSECOND, start_at, end_at)), 0) FROM reservations`

// overbooked runs overbookedSQL on db.
func overbooked(ctx context.Context, db *sqlx.DB) (int, error) {
	var span int64
	if err := db.GetContext(ctx, &span, maxSpanSQL); err != nil {
		return 0, err
	}
	var n int
	return n, db.GetContext(ctx, &n, overbookedSQL, span)
}

// service is the full service over gRPC.
type service struct {
	conns  []*grpc.ClientConn
	next   chan int
	verify *sqlx.DB
	// consistency is how the reads ask to be answered: strong, ryw or bounded (--consistency).
	consistency string
	tokenOnce   sync.Once
	token       string // ryw: the token of the one write the reads name
	tokenErr    error
}

// The consistencies --consistency takes, and BOUNDED's bound.
var consistencies = []string{"strong", "ryw", "bounded"}

const boundedStaleness = time.Second

// readOptions are the reads' ReadOptions: READ_YOUR_WRITES names one write this run made first
// (so every read is one a client that just wrote makes).
func (s *service) readOptions(ctx context.Context) (*pb.ReadOptions, error) {
	switch s.consistency {
	case "ryw":
		s.tokenOnce.Do(func() {
			start := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
			resp, err := s.client().Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "bench", ResourceId: fmt.Sprintf("ryw-%d", time.Now().UnixNano()),
				Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
			s.token, s.tokenErr = resp.GetConsistencyToken(), err
		})
		return &pb.ReadOptions{Consistency: pb.Consistency_CONSISTENCY_READ_YOUR_WRITES, ConsistencyToken: s.token}, s.tokenErr
	case "bounded":
		return &pb.ReadOptions{Consistency: pb.Consistency_CONSISTENCY_BOUNDED, MaxStaleness: durationpb.New(boundedStaleness)}, nil
	}
	return nil, nil
}

func newService(ctx context.Context, addr, verifyDSN string) (target, error) {
	s := &service{next: make(chan int, 1)}
	s.next <- 0
	for range 4 { // a few connections, as a few client processes would have
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, conn)
	}
	if verifyDSN != "" {
		db, err := repo.Open(ctx, verifyDSN)
		if err != nil {
			return nil, fmt.Errorf("--verify-dsn: %w", err)
		}
		s.verify = db
	}
	return s, nil
}

func (s *service) name() string { return "service" }

func (s *service) statusDB() *sqlx.DB { return s.verify }

func (s *service) client() pb.ReservationServiceClient {
	i := <-s.next
	s.next <- (i + 1) % len(s.conns)
	return pb.NewReservationServiceClient(s.conns[i])
}

// grpcOutcome sorts a call's error: a refusal (FAILED_PRECONDITION whose ErrorInfo reason is
// RESERVATION_CONFLICT or POOL_FULL) with its reason, or a failure with its code (and reason).
func grpcOutcome(err error) (outcome, string) {
	st := status.Convert(err)
	if st.Code() == codes.OK {
		return ok, ""
	}
	reason := ""
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo {
			reason = info.GetReason()
		}
	}
	if st.Code() == codes.FailedPrecondition && (reason == reasonConflict || reason == reasonPoolFull) {
		return refused, reason
	}
	if reason != "" {
		return failed, st.Code().String() + "/" + reason
	}
	return failed, st.Code().String()
}

func (s *service) catalogue(ctx context.Context, rs []resourceSpec) (bool, error) {
	c := s.client()
	for _, r := range rs {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: r.id, PoolId: r.pool, Capacity: int32(r.capacity), Labels: r.labels}}); err != nil {
			return true, fmt.Errorf("PutResource %s: %w", r.id, err)
		}
	}
	return true, nil
}

func (s *service) reserve(ctx context.Context, b booking) (string, string, outcome, string) {
	resp, err := s.client().Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "bench", ResourceId: b.resource,
		PoolId: b.pool, Start: timestamppb.New(b.start), End: timestamppb.New(b.end)}})
	out, code := grpcOutcome(err)
	return resp.GetReservation().GetId(), resp.GetReservation().GetResourceId(), out, code
}

func (s *service) other(ctx context.Context, kind, id, resource string, start, end time.Time) (outcome, string, bool) {
	c := s.client()
	read, err := s.readOptions(ctx)
	if err != nil {
		out, code := grpcOutcome(err)
		return out, code, true
	}
	switch kind {
	case "confirm":
		_, err = c.Confirm(ctx, &pb.ConfirmRequest{Id: id})
	case "cancel":
		_, err = c.Cancel(ctx, &pb.CancelRequest{Id: id})
	case "get":
		if id == "" {
			return ok, "", false
		}
		_, err = c.Get(ctx, &pb.GetRequest{Id: id, Read: read})
	case "query":
		var stream grpc.ServerStreamingClient[pb.Reservation]
		stream, err = c.Query(ctx, &pb.QueryRequest{ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(end), Read: read})
		for err == nil {
			_, err = stream.Recv()
		}
		if err.Error() == "EOF" {
			err = nil
		}
	case "free":
		_, err = c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(end),
			MinDuration: durationpb.New(time.Hour), Read: read})
	case "search":
		_, err = c.SearchAvailability(ctx, &pb.SearchAvailabilityRequest{Selector: searchSelector(start), Start: timestamppb.New(start), End: timestamppb.New(end), Read: read})
	}
	out, code := grpcOutcome(err)
	return out, code, true
}

func (s *service) overbooked(ctx context.Context) (int, error) {
	if s.verify == nil {
		return -1, errors.New("no --verify-dsn: not checked")
	}
	return overbooked(ctx, s.verify)
}

// ids reads up to n stored reservation ids, for Get, through --verify-dsn.
func (s *service) ids(ctx context.Context, n int) ([]string, error) {
	if s.verify == nil {
		return nil, errors.New("no --verify-dsn")
	}
	var ids []string
	return ids, s.verify.SelectContext(ctx, &ids, "SELECT id FROM reservations ORDER BY RAND() LIMIT ?", n)
}

func (s *service) close() {
	for _, c := range s.conns {
		c.Close()
	}
	if s.verify != nil {
		s.verify.Close()
	}
}

// mysqlFloor runs the service's own transaction (repo.Store: lock the resource row, check for
// overlaps, insert the reservation, record the change) with no gRPC and no Redis.
type mysqlFloor struct {
	db    *sqlx.DB
	store *repo.Store
}

func newMySQLFloor(ctx context.Context, serverDSN string) (target, error) {
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		return nil, err
	}
	server, err := repo.Open(ctx, cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	defer server.Close()
	if _, err := server.ExecContext(ctx, "DROP DATABASE IF EXISTS rsvbench_floor"); err != nil {
		return nil, err
	}
	if _, err := server.ExecContext(ctx, "CREATE DATABASE rsvbench_floor"); err != nil {
		return nil, err
	}
	cfg.DBName = "rsvbench_floor"
	db, err := repo.Open(ctx, cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	if err := repo.Migrate(ctx, db.DB); err != nil {
		return nil, err
	}
	return mysqlFloorOn(db), nil
}

// mysqlFloorOn is the floor on a migrated database, which its close closes.
func mysqlFloorOn(db *sqlx.DB) *mysqlFloor {
	return &mysqlFloor{db: db, store: repo.New(db, repo.Options{Logger: slog.New(slog.DiscardHandler), GroupCommit: 1})}
}

func (m *mysqlFloor) name() string { return "mysql-floor" }

func (m *mysqlFloor) statusDB() *sqlx.DB { return m.db }

func (m *mysqlFloor) catalogue(ctx context.Context, rs []resourceSpec) (bool, error) {
	for _, r := range rs {
		if _, err := m.store.PutResource(ctx, &reservation.Resource{ID: r.id, PoolID: r.pool, Capacity: r.capacity, Labels: r.labels}, 0); err != nil {
			return true, fmt.Errorf("PutResource %s: %w", r.id, err)
		}
	}
	return true, nil
}

func (m *mysqlFloor) reserve(ctx context.Context, b booking) (string, string, outcome, string) {
	out, err := m.store.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "bench", ResourceID: b.resource, PoolID: b.pool,
		Start: b.start, End: b.end}))
	var e *reservation.Error
	switch code := reservation.ErrorCode(err); {
	case code == "":
		return out[0].ID, out[0].ResourceID, ok, ""
	case code == reservation.ECONFLICT:
		return "", "", refused, reasonConflict
	case errors.As(err, &e) && e.Reason == reservation.ReasonPoolFull:
		return "", "", refused, reasonPoolFull
	default:
		return "", "", failed, code
	}
}

// other runs the search workload's searches through the store, with no gRPC in front; the
// other kinds are not run on the floor.
func (m *mysqlFloor) other(ctx context.Context, kind, _, _ string, start, end time.Time) (outcome, string, bool) {
	if kind != "search" {
		return ok, "", false
	}
	_, err := m.store.SearchAvailability(ctx, reservation.SearchQuery{Selector: searchSelector(start), Start: start, End: end})
	if err != nil {
		return failed, reservation.ErrorCode(err), true
	}
	return ok, "", true
}

func (m *mysqlFloor) overbooked(ctx context.Context) (int, error) { return overbooked(ctx, m.db) }

func (m *mysqlFloor) close() { m.db.Close() }

// postgresFloor is the RFC's original design: an EXCLUDE USING gist constraint is the guard,
// and a trigger records each change.
type postgresFloor struct{ pool *pgxpool.Pool }

const pgSchema = `
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE reservations (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	user_id text NOT NULL,
	resource_id text NOT NULL,
	status smallint NOT NULL DEFAULT 1,
	timespan tstzrange NOT NULL,
	note text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT reservations_conflict EXCLUDE USING gist (resource_id WITH =, timespan WITH &&)
);
CREATE TABLE reservation_changes (
	id bigserial PRIMARY KEY,
	reservation_id uuid NOT NULL,
	op smallint NOT NULL
);
CREATE FUNCTION reservations_trigger() RETURNS trigger AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO reservation_changes (reservation_id, op) VALUES (NEW.id, 1);
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO reservation_changes (reservation_id, op) VALUES (NEW.id, 2);
	ELSE
		INSERT INTO reservation_changes (reservation_id, op) VALUES (OLD.id, 3);
	END IF;
	NOTIFY reservation_update;
	RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reservations_trigger AFTER INSERT OR UPDATE OR DELETE ON reservations FOR EACH ROW EXECUTE PROCEDURE reservations_trigger();
`

func newPostgresFloor(ctx context.Context, serverDSN string) (target, error) {
	admin, err := pgx.Connect(ctx, serverDSN)
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	admin.Exec(ctx, "DROP DATABASE IF EXISTS rsvbench_floor")
	if _, err := admin.Exec(ctx, "CREATE DATABASE rsvbench_floor"); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(serverDSN)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Database = "rsvbench_floor"
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, pgSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres schema: %w", err)
	}
	return &postgresFloor{pool: pool}, nil
}

func (p *postgresFloor) name() string { return "postgres-floor" }

// catalogue: the RFC's design has no catalogue (every resource holds one reservation at a time).
func (p *postgresFloor) catalogue(context.Context, []resourceSpec) (bool, error) { return false, nil }

func (p *postgresFloor) reserve(ctx context.Context, b booking) (string, string, outcome, string) {
	var id string
	err := p.pool.QueryRow(ctx, "INSERT INTO reservations (user_id, resource_id, timespan) VALUES ($1, $2, tstzrange($3, $4, '[)')) RETURNING id::text",
		"bench", b.resource, b.start, b.end).Scan(&id)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return id, b.resource, ok, ""
	case errors.As(err, &pe) && pe.Code == "23P01": // exclusion_violation
		return "", "", refused, reasonConflict
	default:
		return "", "", failed, "pg"
	}
}

func (p *postgresFloor) other(context.Context, string, string, string, time.Time, time.Time) (outcome, string, bool) {
	return ok, "", false
}

// overbooked counts overlapping pairs: every resource has capacity 1 here.
func (p *postgresFloor) overbooked(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT COUNT(*) FROM reservations a JOIN reservations b
		ON a.resource_id = b.resource_id AND a.id < b.id AND a.timespan && b.timespan`).Scan(&n)
	return n, err
}

func (p *postgresFloor) close() { p.pool.Close() }
