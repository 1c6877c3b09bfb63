package reservation_test

import (
	"fmt"
	"testing"
	"time"

	"reservation"
)

// An edit's window is checked as the edit leaves it, the stored times filling in what it does
// not set, and a wrong one names the field the edit changes.
func TestEditCheckWindow(t *testing.T) {
	stored := valid() // t0 to t0+1h
	h := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Hour))) }
	for _, tc := range []struct {
		name string
		e    reservation.Edit
		want []string
	}{
		{"a later start alone, before the stored end", reservation.Edit{Start: h(0.5)}, nil},
		{"a start alone at the stored end", reservation.Edit{Start: h(1)}, []string{"start"}},
		{"an end alone at the stored start", reservation.Edit{End: h(0)}, []string{"end"}},
		{"both, end before start", reservation.Edit{Start: h(3), End: h(2)}, []string{"end"}},
		{"both, shifted over the stored window", reservation.Edit{Start: h(0.5), End: h(1.5)}, nil},
		{"another resource alone", reservation.Edit{ResourceID: "s"}, nil},
		{"longer than allowed, end moved", reservation.Edit{End: h(3), MaxDuration: 2 * time.Hour}, []string{"end"}},
		{"exactly as long as allowed", reservation.Edit{End: h(2), MaxDuration: 2 * time.Hour}, nil},
		{"longer than allowed, start moved", reservation.Edit{Start: h(-2), MaxDuration: time.Hour}, []string{"start"}},
		{"a start not storable", reservation.Edit{Start: time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC)}, []string{"start"}},
	} {
		err := tc.e.CheckWindow(tc.e.Apply(stored))
		if got := fields(err); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: fields %v (%v), want %v", tc.name, got, err, tc.want)
		}
		if err != nil && reservation.ErrorCode(err) != reservation.EINVALID {
			t.Errorf("%s: code %s, want %s", tc.name, reservation.ErrorCode(err), reservation.EINVALID)
		}
	}
}
