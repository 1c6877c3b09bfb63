package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// What a replica's read index (package readindex) loads, in pages by primary key so that no
// statement holds anything for long: a load never blocks a write.

// LiveSince returns up to limit reservations that end after cut, with ids after after, by id:
// every one that is stored, lapsed holds included (the index judges expiry by its clock, as
// each read does).
func (s *Store) LiveSince(ctx context.Context, cut time.Time, after string, limit int) ([]*reservation.Reservation, error) {
	rs, err := selectRows(ctx, s.db, "SELECT "+columns+" FROM reservations WHERE id > ? AND end_at > ? ORDER BY id LIMIT ?", after, cut, limit)
	if err != nil {
		return nil, classify(fmt.Errorf("load reservations after %q: %w", after, err))
	}
	return rs, nil
}

// CatalogueMark is a summary of the catalogue that changes with every PutResource and every
// resource a first Reserve makes: the count of resources and the sum of their catalogue
// versions (each Put bumps one by 1). Equal marks read at two instants mean that no resource
// was put or made between them.
func (s *Store) CatalogueMark(ctx context.Context) (string, error) {
	var row struct {
		N   int64 `db:"n"`
		Sum int64 `db:"v"`
	}
	if err := sqlx.GetContext(ctx, s.db, &row, "SELECT COUNT(*) AS n, COALESCE(SUM(catalogue_version), 0) AS v FROM resources"); err != nil {
		return "", classify(fmt.Errorf("read the catalogue's mark: %w", err))
	}
	return fmt.Sprintf("%d/%d", row.N, row.Sum), nil
}
