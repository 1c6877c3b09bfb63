package reservation

import (
	"context"
	"time"
)

// SeriesMode says what ReserveSeries does with an occurrence that is not free.
type SeriesMode int

// The modes, numbered as on the wire.
const (
	SeriesAllOrNothing  SeriesMode = 1 // every occurrence is made, or none (also for 0)
	SeriesSkipConflicts SeriesMode = 2 // the free occurrences are made; the others are skipped
)

// DefaultSeriesMax bounds the occurrences of one series (reservationd's --series-max).
const DefaultSeriesMax = 500

// Series is one ReserveSeries call: First repeated as Rule says, in TimeZone.
type Series struct {
	// First is the first occurrence: user, resource or pool, status, note and window.
	First *Reservation
	// Rule is an RFC 5545 RRULE (the subset ParseRule reads).
	Rule string
	// TimeZone is the IANA zone whose wall-clock time the occurrences keep across DST.
	TimeZone string
	// Exdates are occurrence starts to leave out.
	Exdates []time.Time
	Mode    SeriesMode
	// RequestID and Hold are as in Booking.
	RequestID string
	Hold      time.Duration
	// Actor is who makes the series, as History records it ("" records each reservation's user).
	Actor string
}

// SeriesOutcome is what ReserveSeries made: the series id, the reservations in order of start,
// and, in SeriesSkipConflicts mode, the occurrences skipped.
type SeriesOutcome struct {
	ID           string
	Reservations []*Reservation
	Skipped      []SkippedOccurrence
}

// SkippedOccurrence is an occurrence SeriesSkipConflicts left out: its window, the
// reservations in its way (none when a rule or a full pool refused it) and why.
type SkippedOccurrence struct {
	Start, End  time.Time
	Conflicting []string // ids
	Reason      string
}

// SeriesBooker makes and cancels series; repo.Store implements it.
type SeriesBooker interface {
	// ReserveSeries expands s and makes its occurrences as s.Mode says.
	ReserveSeries(ctx context.Context, s Series) (*SeriesOutcome, error)
	// CancelSeries cancels the occurrences of series id that start at or after from (every one
	// when from is zero) and returns them as they were removed. ref.ID is ignored; ref.Owner,
	// Actor and Reason apply to each occurrence.
	CancelSeries(ctx context.Context, id string, from time.Time, ref Ref) ([]*Reservation, error)
}
