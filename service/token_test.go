package service

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

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

func TestDefaultDeadline(t *testing.T) {
	var got time.Time
	h := func(ctx context.Context, _ any) (any, error) { got, _ = ctx.Deadline(); return nil, nil }
	intercept := DefaultDeadline(time.Minute)
	intercept(context.Background(), nil, &grpc.UnaryServerInfo{}, h)
	if d := time.Until(got); d < 59*time.Second || d > time.Minute {
		t.Errorf("a call without a deadline got one %s away, want 1m", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	intercept(ctx, nil, &grpc.UnaryServerInfo{}, h)
	if d := time.Until(got); d > time.Second {
		t.Errorf("the caller's deadline was replaced by one %s away", d)
	}
}
