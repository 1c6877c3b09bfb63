package reservation

import (
	"strings"
	"testing"
)

// A token's opaque form reads back as what it names; tokens joined by commas merge; anything
// else is refused.
func TestConsistencyTokenRoundTrip(t *testing.T) {
	tok := ConsistencyToken{
		Reservations: []Written{{"01a251ba-40f8-7515-a86d-07c78a895852", 3}, {"not-a-uuid", 1}},
		Resources:    []Written{{"room-1", 7}},
	}
	got, err := ParseConsistencyToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != tok.String() || len(got.Reservations) != 2 || got.Reservations[0] != tok.Reservations[0] || got.Resources[0] != tok.Resources[0] {
		t.Fatalf("got %+v, want %+v", got, tok)
	}
	two, err := ParseConsistencyToken(tok.String() + "," + TokenOf(nil, &Resource{ID: "r", Version: 2}).String())
	if err != nil || len(two.Resources) != 2 {
		t.Fatalf("merged: %+v, %v", two, err)
	}
	s := tok.String()
	for _, bad := range []string{"", "t1.", "t2." + s[3:], s[:len(s)-2], s + "AA", "t1.!!", strings.Repeat(s+",", MaxTokenEntries)} {
		if _, err := ParseConsistencyToken(bad); err == nil {
			t.Errorf("%.40q was accepted", bad)
		}
	}
}
