package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "reservation/proto/reservation/v1"
)

// reserve --pool books the first free unit of a pool and shows it; a full pool is exit 4.
func TestReservePool(t *testing.T) {
	clean(t, "")
	addr := serve(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewReservationServiceClient(conn)
	for _, id := range []string{"room-101", "room-102"} {
		if _, err := client.PutResource(context.Background(), &pb.PutResourceRequest{Resource: &pb.Resource{Id: id, PoolId: "deluxe-king"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"room-101", "room-102"} {
		out, errOut, code := rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-01 15:00", "--for", "2d")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("reserve --pool: exit %d, %q %q; want %s assigned", code, out, errOut, want)
		}
	}
	_, errOut, code := rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-02 15:00", "--for", "1d")
	if code != 4 || !strings.Contains(errOut, "deluxe-king") {
		t.Errorf("reserve --pool of a full pool: exit %d, %q; want 4 naming the pool", code, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "reserve", "--pool", "p", "--resource", "r", "--start", "+1h", "--for", "1h"); code != 2 {
		t.Errorf("--pool with --resource: exit %d, %q; want 2", code, errOut)
	}
}
