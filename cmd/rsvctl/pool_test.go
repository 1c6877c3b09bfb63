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
	if _, err := client.PutResource(context.Background(), &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room-101", PoolId: "deluxe-king"}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := rsvctl(t, addr, "resource", "put", "room-102", "--pool", "deluxe-king", "--name", "Room 102", "--label", "floor=1", "--time-zone", "Europe/Paris")
	if code != 0 || !strings.Contains(out, "Europe/Paris") || !strings.Contains(out, "floor=1") {
		t.Errorf("resource put: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "resource", "put", "room-9", "--capacity", "-2"); code != 2 || !strings.Contains(errOut, "--capacity") {
		t.Errorf("resource put --capacity -2: exit %d, %q; want 2 naming --capacity", code, errOut)
	}
	if out, _, code := rsvctl(t, addr, "resource", "get", "room-102", "-o", "json"); code != 0 || !strings.Contains(out, `"display_name":"Room 102"`) {
		t.Errorf("resource get -o json: exit %d, %q", code, out)
	}
	if out, _, code := rsvctl(t, addr, "resource", "list", "--pool", "deluxe-king"); code != 0 || strings.Count(out, "deluxe-king") != 2 {
		t.Errorf("resource list --pool: exit %d, %q; want both rooms", code, out)
	}
	for _, want := range []string{"room-101", "room-102"} {
		out, errOut, code := rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-01 15:00", "--for", "2d")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("reserve --pool: exit %d, %q %q; want %s assigned", code, out, errOut, want)
		}
	}
	_, errOut, code = rsvctl(t, addr, "reserve", "--user", "alice", "--pool", "deluxe-king", "--start", "2030-05-02 15:00", "--for", "1d")
	if code != 4 || !strings.Contains(errOut, "deluxe-king") {
		t.Errorf("reserve --pool of a full pool: exit %d, %q; want 4 naming the pool", code, errOut)
	}
	if _, errOut, code := rsvctl(t, addr, "reserve", "--pool", "p", "--resource", "r", "--start", "+1h", "--for", "1h"); code != 2 {
		t.Errorf("--pool with --resource: exit %d, %q; want 2", code, errOut)
	}
}
