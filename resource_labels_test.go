package reservation_test

import (
	"strings"
	"testing"

	"reservation"
)

// TestValidateNamesTheFirstBadLabel: of several bad labels, Validate names the first by key,
// every time (it iterated the map, and named one at random).
func TestValidateNamesTheFirstBadLabel(t *testing.T) {
	long := strings.Repeat("v", reservation.MaxLabelLen+1)
	r := &reservation.Resource{ID: "room-1", Labels: map[string]string{"d": long, "b": long, "ok": "fine", "c": long, "e": long}}
	for range 50 {
		err := r.Validate("resource.")
		if err == nil || !strings.Contains(err.Error(), `got key "b"`) {
			t.Fatalf("Validate: %v; want the first bad label by key, \"b\"", err)
		}
	}
}
