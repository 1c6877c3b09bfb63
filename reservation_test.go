package reservation_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"reservation"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func valid() *reservation.Reservation {
	return &reservation.Reservation{UserID: "u", ResourceID: "r", Start: t0, End: t0.Add(time.Hour)}
}

func fields(err error) []string {
	e, _ := err.(*reservation.Error)
	if e == nil {
		return nil
	}
	var out []string
	for _, f := range e.Fields {
		out = append(out, f.Field)
	}
	slices.Sort(out)
	return out
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(r *reservation.Reservation)
		fields []string
	}{
		{"valid", func(*reservation.Reservation) {}, nil},
		{"64-byte ids", func(r *reservation.Reservation) { r.UserID = strings.Repeat("é", 32) }, nil},
		{"65-byte id", func(r *reservation.Reservation) { r.ResourceID = strings.Repeat("a", 65) }, []string{"resource_id"}},
		{"invalid UTF-8", func(r *reservation.Reservation) { r.UserID, r.Note = "a\xc3", "\xff" }, []string{"note", "user_id"}},
		{"control character", func(r *reservation.Reservation) { r.ResourceID = "a\tb" }, []string{"resource_id"}},
		{"missing everything", func(r *reservation.Reservation) { *r = reservation.Reservation{} }, []string{"end", "resource_id", "start", "user_id"}},
		{"empty window", func(r *reservation.Reservation) { r.End = r.Start }, []string{"end"}},
		{"unknown status", func(r *reservation.Reservation) { r.Status = -1 }, []string{"status"}},
		{"year 10000", func(r *reservation.Reservation) { r.End = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"end"}},
	}
	for _, tc := range cases {
		r := valid()
		tc.edit(r)
		err := r.Validate()
		if got := fields(err); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v, want %v (%v)", tc.name, got, tc.fields, err)
		}
		if err != nil && reservation.ErrorCode(err) != reservation.EINVALID {
			t.Errorf("%s: code %q, want %q", tc.name, reservation.ErrorCode(err), reservation.EINVALID)
		}
	}
}

func TestNormalize(t *testing.T) {
	r := &reservation.Reservation{Start: time.Date(2030, 1, 1, 13, 0, 0, 999, time.FixedZone("CET", 3600))}
	r.Normalize()
	if r.Status != reservation.StatusPending || r.Start.Location() != time.UTC || !r.Start.Equal(t0) {
		t.Errorf("normalized %+v, want PENDING at %v UTC", r, t0)
	}
}

func TestOverlaps(t *testing.T) {
	a := valid()
	for _, tc := range []struct {
		from, to time.Duration
		want     bool
	}{
		{-time.Hour, 0, false},
		{time.Hour, 2 * time.Hour, false},
		{-time.Hour, time.Microsecond, true},
		{time.Hour - time.Microsecond, 2 * time.Hour, true},
		{10 * time.Minute, 20 * time.Minute, true},
	} {
		b := valid()
		b.Start, b.End = t0.Add(tc.from), t0.Add(tc.to)
		if a.Overlaps(b) != tc.want || b.Overlaps(a) != tc.want {
			t.Errorf("[%v, %v) overlaps [0, 1h): %v, want %v", tc.from, tc.to, !tc.want, tc.want)
		}
		b.ResourceID = "other"
		if a.Overlaps(b) {
			t.Errorf("reservations of different resources overlap")
		}
	}
}

func TestErrorCode(t *testing.T) {
	err := reservation.Errorf(reservation.ENOTFOUND, "reservation %q not found", "x")
	if got := reservation.ErrorCode(fmt.Errorf("context: %w", err)); got != reservation.ENOTFOUND {
		t.Errorf("code through a wrap %q, want %q", got, reservation.ENOTFOUND)
	}
	if reservation.ErrorCode(nil) != "" || reservation.ErrorCode(errors.New("plain")) != reservation.EINTERNAL {
		t.Error("nil must have no code and a plain error EINTERNAL")
	}
}
