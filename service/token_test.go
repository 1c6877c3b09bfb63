package service

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"reservation"
)

func TestPageTokenRoundTrip(t *testing.T) {
	f := &reservation.Filter{ResourceID: "r", Start: time.Unix(0, 0)}
	last := &reservation.Reservation{ID: uuid.NewString(), Start: time.Date(1500, 1, 2, 3, 4, 5, 6000, time.UTC)}
	tok, err := encodeToken(f, last)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := decodeToken(f, tok)
	if !ok || c.ID != last.ID || !c.Start.Equal(last.Start) {
		t.Fatalf("decoded %+v (%v), want the position of %+v", c, ok, last)
	}
	other := *f
	other.Desc = true
	if _, ok := decodeToken(&other, tok); ok {
		t.Error("a token decoded for another filter")
	}
	for _, bad := range []string{"", tok[:len(tok)-1], tok + "A", "!" + tok[1:], "AA" + tok[2:]} {
		if _, ok := decodeToken(f, bad); ok {
			t.Errorf("malformed token %q decoded", bad)
		}
	}
	if _, err := encodeToken(f, &reservation.Reservation{ID: "not-a-uuid"}); err == nil {
		t.Error("a token was made for an id that is not a UUID")
	}
}
