package reservation

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Booking is one Reserve call: its reservations are made all or none.
type Booking struct {
	Reservations []*Reservation
	// Hold, when not zero, makes each reservation a PENDING hold that expires after Hold
	// unless confirmed before.
	Hold time.Duration
	// RequestID, when not empty, makes the call idempotent: a retry with the same id and the
	// same parameters gets the first call's outcome, and nothing is written again.
	RequestID string
	// Actor is who makes the booking, as History records it; "" records each reservation's
	// user. It is not one of the parameters a retry must repeat.
	Actor string
}

// Book is the Booking of rs, with no hold and no request id.
func Book(rs ...*Reservation) Booking { return Booking{Reservations: rs} }

// Fingerprint identifies the booking's parameters, after Normalize, so that a retry can be
// told from another call that reuses its request id.
func (b *Booking) Fingerprint() [32]byte {
	h := sha256.New()
	word := func(v int64) { h.Write(binary.BigEndian.AppendUint64(nil, uint64(v))) }
	text := func(s string) { word(int64(len(s))); h.Write([]byte(s)) }
	word(int64(b.Hold))
	word(int64(len(b.Reservations)))
	for _, r := range b.Reservations {
		text(r.UserID)
		text(r.ResourceID)
		word(int64(r.Status))
		word(r.Start.UnixMicro())
		word(r.End.UnixMicro())
		text(r.Note)
		if r.PoolID != "" && r.ResourceID == "" { // a pool booking; others hash as before pools
			text("pool:" + r.PoolID)
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Validate checks the hold and request id against their bounds; each reservation is checked
// on its own.
func (b *Booking) Validate(minHold, maxHold time.Duration) error {
	var v Violations
	if b.RequestID != "" {
		v.ID("request_id", b.RequestID)
	}
	if b.Hold != 0 && (b.Hold < minHold || b.Hold > maxHold) {
		v.Add("hold", fmt.Sprintf("must be between %s and %s, got %s", minHold, maxHold, b.Hold))
	}
	return v.Err()
}
