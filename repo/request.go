package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"reservation"
)

// request is a Reserve call made with a request id.
type request struct {
	id          string
	fingerprint [32]byte
	out         *outcome // what the first call with this id came to, once found
	// A series' request (series.go) saves its id and the occurrences it skipped with the
	// reservations; when rounds, a conflict is not its outcome: the next round is.
	seriesID string
	skipped  func(made []*reservation.Reservation) []reservation.SkippedOccurrence
	rounds   bool
}

// made is the outcome of req's call that made rs.
func (r *request) made(rs []*reservation.Reservation) outcome {
	o := outcome{Reservations: rs, SeriesID: r.seriesID}
	if r.skipped != nil {
		o.Skipped = r.skipped(rs)
	}
	return o
}

// outcome is what a call came to: the reservations made, or the conflict met; for a series,
// its id and the occurrences skipped too.
type outcome struct {
	Reservations []*reservation.Reservation
	Conflict     *reservation.Error
	SeriesID     string
	Skipped      []reservation.SkippedOccurrence
}

func (r *request) result() ([]*reservation.Reservation, error) {
	if r.out.Conflict != nil {
		return nil, r.out.Conflict
	}
	return r.out.Reservations, nil
}

// lookup finds the outcome of an earlier call with req's id, and reports whether there was
// one. An id used with other parameters is EINVALID; one older than the retention is
// forgotten.
func (s *Store) lookup(ctx context.Context, q sqlx.ExtContext, req *request, now time.Time) (bool, error) {
	var got struct {
		Fingerprint []byte    `db:"fingerprint"`
		Outcome     []byte    `db:"outcome"`
		CreatedAt   time.Time `db:"created_at"`
	}
	err := sqlx.GetContext(ctx, q, &got, "SELECT fingerprint, outcome, created_at FROM reservation_requests WHERE id = ?", req.id)
	switch {
	case isNoRows(err):
		return false, nil
	case err != nil:
		return false, classify(fmt.Errorf("look up request %q: %w", req.id, err))
	case got.CreatedAt.Before(now.Add(-s.opts.RequestRetention)):
		_, err := q.ExecContext(ctx, "DELETE FROM reservation_requests WHERE id = ? AND created_at = ?", req.id, got.CreatedAt)
		return false, classify(err)
	case !bytes.Equal(got.Fingerprint, req.fingerprint[:]):
		return false, &reservation.Error{Code: reservation.EINVALID,
			Message: fmt.Sprintf("request_id %q was used by a call with other parameters", req.id),
			Fields:  reservation.Violations{{Field: "request_id", Description: "was used by a call with other parameters: a retry must repeat them exactly"}}}
	}
	var o storedOutcome
	if err := json.Unmarshal(got.Outcome, &o); err != nil {
		return false, fmt.Errorf("decode outcome of request %q: %w", req.id, err)
	}
	req.out = o.outcome()
	return true, nil
}

// saveOutcome records what a call with a request id came to. A concurrent call with the same
// id that saved first makes it fail with a duplicate key.
func saveOutcome(ctx context.Context, e sqlx.ExecerContext, req *request, o outcome, now time.Time) error {
	st, err := outcomeStmt(req, o, now)
	if err != nil {
		return err
	}
	if _, err = e.ExecContext(ctx, st.query, st.args...); err != nil {
		return fmt.Errorf("save outcome of request %q: %w", req.id, err)
	}
	return nil
}

// outcomeStmt is the statement that saves o as the outcome of req's call: in the write's
// transaction and round trip, or on its own (saveOutcome).
func outcomeStmt(req *request, o outcome, now time.Time) (stmt, error) {
	b, err := json.Marshal(toStored(o))
	if err != nil {
		return stmt{}, fmt.Errorf("encode outcome of request %q: %w", req.id, err)
	}
	return stmt{"INSERT INTO reservation_requests (id, fingerprint, outcome, created_at) VALUES (?, ?, ?, ?)",
		[]any{req.id, req.fingerprint[:], b, now}}, nil
}

func isDupKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errDupKey
}

// storedOutcome is an outcome as reservation_requests keeps it, in JSON.
type storedOutcome struct {
	Reservations []row                           `json:"reservations,omitempty"`
	Conflict     *storedConflict                 `json:"conflict,omitempty"`
	SeriesID     string                          `json:"series_id,omitempty"`
	Skipped      []reservation.SkippedOccurrence `json:"skipped,omitempty"`
}

type storedConflict struct {
	Message   string `json:"message"`
	Truncated bool   `json:"truncated"`
	Conflicts []struct {
		Index    int `json:"index"`
		Existing row `json:"existing"`
	} `json:"conflicts"`
}

func toStored(o outcome) storedOutcome {
	s := storedOutcome{SeriesID: o.SeriesID, Skipped: o.Skipped}
	for _, r := range o.Reservations {
		s.Reservations = append(s.Reservations, toRow(r))
	}
	if e := o.Conflict; e != nil {
		s.Conflict = &storedConflict{Message: e.Message, Truncated: e.Truncated}
		for _, c := range e.Conflicts {
			s.Conflict.Conflicts = append(s.Conflict.Conflicts, struct {
				Index    int `json:"index"`
				Existing row `json:"existing"`
			}{c.Index, toRow(c.Existing)})
		}
	}
	return s
}

func (s *storedOutcome) outcome() *outcome {
	o := outcome{SeriesID: s.SeriesID, Skipped: s.Skipped}
	for i := range s.Reservations {
		o.Reservations = append(o.Reservations, s.Reservations[i].reservation())
	}
	if c := s.Conflict; c != nil {
		o.Conflict = &reservation.Error{Code: reservation.ECONFLICT, Message: c.Message, Truncated: c.Truncated}
		for _, x := range c.Conflicts {
			o.Conflict.Conflicts = append(o.Conflict.Conflicts, reservation.Conflict{Index: x.Index, Existing: x.Existing.reservation()})
		}
	}
	return &o
}
