package repo

import (
	"context"
	"slices"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// Usurp makes l stamp without winning the election, as a leader that lost its lease without
// noticing would: it believes it leads, with the token of the lease's holder now.
func (l *Leader) Usurp(ctx context.Context) error {
	l.leading = true
	return l.db.GetContext(ctx, &l.lease.token, "SELECT token FROM reservation_leases WHERE name = ?", l.lease.name)
}

// ExecAll runs statements (query, args, query, args, ...) as the store's writes do: in one
// round trip.
func ExecAll(ctx context.Context, tx *sqlx.Tx, parts ...any) error {
	var stmts []stmt
	for i := 0; i < len(parts); i += 2 {
		stmts = append(stmts, stmt{parts[i].(string), parts[i+1].([]any)})
	}
	return execAll(ctx, tx, stmts...)
}

// FindInTheWay runs a write's overlap check for rs, under the locks, in a transaction of its
// own, and returns what it found for each.
func (s *Store) FindInTheWay(ctx context.Context, rs []*reservation.Reservation) (map[*reservation.Reservation][]*reservation.Reservation, error) {
	var keys []string
	for _, r := range rs {
		keys = append(keys, r.ResourceID)
	}
	slices.Sort(keys)
	var out blockers
	_, err := s.inWriteTx(ctx, slices.Compact(keys), func(w *writeTx) error {
		var err error
		out, err = w.findInTheWay(ctx, rs)
		return err
	})
	return out, err
}

// SplitHosts exposes the DSN's address list parsing.
func SplitHosts(dsn string) (string, []string, error) { return splitHosts(dsn) }
