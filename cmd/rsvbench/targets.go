package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
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

// overlapSQL counts overlapping pairs of a MySQL reservations table.
const overlapSQL = `SELECT COUNT(*) FROM reservations a JOIN reservations b
	ON a.resource_id = b.resource_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at
	AND (a.expires_at IS NULL OR a.expires_at > UTC_TIMESTAMP(6)) AND (b.expires_at IS NULL OR b.expires_at > UTC_TIMESTAMP(6))`

// service is the full service over gRPC.
type service struct {
	conns  []*grpc.ClientConn
	next   chan int
	verify *sqlx.DB
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

func (s *service) client() pb.ReservationServiceClient {
	i := <-s.next
	s.next <- (i + 1) % len(s.conns)
	return pb.NewReservationServiceClient(s.conns[i])
}

func grpcOutcome(err error) (outcome, string) {
	switch code := status.Code(err); code {
	case codes.OK:
		return ok, ""
	case codes.FailedPrecondition:
		return conflict, ""
	default:
		return failed, code.String()
	}
}

func (s *service) reserve(ctx context.Context, resource string, start, end time.Time) (string, outcome, string) {
	resp, err := s.client().Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "bench", ResourceId: resource,
		Start: timestamppb.New(start), End: timestamppb.New(end)}})
	out, code := grpcOutcome(err)
	return resp.GetReservation().GetId(), out, code
}

func (s *service) other(ctx context.Context, kind, id, resource string, start, end time.Time) (outcome, string, bool) {
	c := s.client()
	var err error
	switch kind {
	case "confirm":
		_, err = c.Confirm(ctx, &pb.ConfirmRequest{Id: id})
	case "cancel":
		_, err = c.Cancel(ctx, &pb.CancelRequest{Id: id})
	case "get":
		if id == "" {
			return ok, "", false
		}
		_, err = c.Get(ctx, &pb.GetRequest{Id: id})
	case "query":
		var stream grpc.ServerStreamingClient[pb.Reservation]
		stream, err = c.Query(ctx, &pb.QueryRequest{ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(end)})
		for err == nil {
			_, err = stream.Recv()
		}
		if err.Error() == "EOF" {
			err = nil
		}
	case "free":
		_, err = c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(end),
			MinDuration: durationpb.New(time.Hour)})
	}
	out, code := grpcOutcome(err)
	return out, code, true
}

func (s *service) overlaps(ctx context.Context) (int, error) {
	if s.verify == nil {
		return -1, errors.New("no --verify-dsn: not checked")
	}
	var n int
	return n, s.verify.GetContext(ctx, &n, overlapSQL)
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
	return &mysqlFloor{db: db, store: repo.New(db, repo.Options{Logger: slog.New(slog.DiscardHandler), GroupCommit: 1})}, nil
}

func (m *mysqlFloor) name() string { return "mysql-floor" }

func (m *mysqlFloor) reserve(ctx context.Context, resource string, start, end time.Time) (string, outcome, string) {
	out, err := m.store.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "bench", ResourceID: resource, Start: start, End: end}))
	switch reservation.ErrorCode(err) {
	case "":
		return out[0].ID, ok, ""
	case reservation.ECONFLICT:
		return "", conflict, ""
	default:
		return "", failed, reservation.ErrorCode(err)
	}
}

func (m *mysqlFloor) other(context.Context, string, string, string, time.Time, time.Time) (outcome, string, bool) {
	return ok, "", false
}

func (m *mysqlFloor) overlaps(ctx context.Context) (int, error) {
	var n int
	return n, m.db.GetContext(ctx, &n, overlapSQL)
}

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

func (p *postgresFloor) reserve(ctx context.Context, resource string, start, end time.Time) (string, outcome, string) {
	var id string
	err := p.pool.QueryRow(ctx, "INSERT INTO reservations (user_id, resource_id, timespan) VALUES ($1, $2, tstzrange($3, $4, '[)')) RETURNING id::text",
		"bench", resource, start, end).Scan(&id)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return id, ok, ""
	case errors.As(err, &pe) && pe.Code == "23P01": // exclusion_violation
		return "", conflict, ""
	default:
		return "", failed, "pg"
	}
}

func (p *postgresFloor) other(context.Context, string, string, string, time.Time, time.Time) (outcome, string, bool) {
	return ok, "", false
}

func (p *postgresFloor) overlaps(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT COUNT(*) FROM reservations a JOIN reservations b
		ON a.resource_id = b.resource_id AND a.id < b.id AND a.timespan && b.timespan`).Scan(&n)
	return n, err
}

func (p *postgresFloor) close() { p.pool.Close() }
